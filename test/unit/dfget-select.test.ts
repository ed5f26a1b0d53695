// dfget -r's --include-files / --exclude-files (issue 23): globs over each entry's path relative
// to the directory URL; Dragonfly's literal forms (a file, "dir/" for a subtree) select what
// Dragonfly's dfget selects; excludes apply after includes; a pattern that matches no file, or a
// selection that leaves none, refuses the download naming it; a pattern that is not a plain
// relative path is refused before anything is listed.
import { describe, expect, it } from "vitest";
import { checkSelection, selectEntries } from "../../src/cli/dfget-select.js";

const DIR = "s3://b/models/";
const files = ["config.json", ".gitattributes", "model-00001.safetensors", "model-00002.safetensors", "tokenizer/vocab.txt", "tokenizer/merges.txt", "tokenizer/extra/special.json", "onnx/model.onnx"];
const dirs = ["tokenizer", "tokenizer/extra", "onnx", "empty"];
const pick = (include: string[], exclude: string[] = []) => {
  const r = selectEntries(files, dirs, { include, exclude }, DIR);
  return { files: [...r.files].sort(), dirs: [...r.dirs].sort() };
};

describe("dfget -r file selection", () => {
  it("Dragonfly's forms: a file, and a directory with its whole subtree", () => {
    expect(pick(["config.json", "tokenizer/vocab.txt"])).toEqual({ files: ["config.json", "tokenizer/vocab.txt"], dirs: ["tokenizer"] });
    expect(pick(["tokenizer/"])).toEqual({ files: ["tokenizer/extra/special.json", "tokenizer/merges.txt", "tokenizer/vocab.txt"], dirs: ["tokenizer", "tokenizer/extra"] });
  });

  it("globs: * within a segment, ** across segments, braces, dot files like others", () => {
    expect(pick(["*.json"]).files).toEqual(["config.json"]);
    expect(pick(["**/*.json"]).files).toEqual(["config.json", "tokenizer/extra/special.json"]);
    expect(pick(["model-*.safetensors", "{onnx,tokenizer/extra}/*"]).files).toEqual(["model-00001.safetensors", "model-00002.safetensors", "onnx/model.onnx", "tokenizer/extra/special.json"]);
    expect(pick(["*"]).files).toEqual([".gitattributes", "config.json", "model-00001.safetensors", "model-00002.safetensors"]);
    // A pattern without a trailing "/" names files: `*` keeps no directory, and none of their files.
    expect(pick(["*"]).dirs).toEqual([]);
  });

  it("excludes apply after includes, and alone to the whole listing", () => {
    expect(pick(["**/*.json"], ["tokenizer/"]).files).toEqual(["config.json"]);
    expect(pick([], ["*.safetensors", "onnx/", ".*"])).toEqual({ files: ["config.json", "tokenizer/extra/special.json", "tokenizer/merges.txt", "tokenizer/vocab.txt"], dirs: ["empty", "tokenizer", "tokenizer/extra"] });
    expect(pick(["tokenizer/"], ["**/special.json"]).dirs).toEqual(["tokenizer"]);
  });

  it("an empty directory of the listing is named by a directory pattern", () => {
    expect(pick(["empty/"])).toEqual({ files: [], dirs: ["empty"] });
    expect(pick([], ["empty/"]).dirs).toEqual(["onnx", "tokenizer", "tokenizer/extra"]);
    expect(pick(["**/*.json"]).dirs).toEqual(["tokenizer", "tokenizer/extra"]);
  });

  it("a pattern that matches no file refuses the download, naming it", () => {
    expect(() => pick(["*.bin"])).toThrow(`${DIR}: --include-files "*.bin" matches no file; nothing was downloaded`);
    expect(() => pick(["config.json"], ["*.bin"])).toThrow(`--exclude-files "*.bin" matches no file`);
    // A directory named without its "/": said how to name it.
    expect(() => pick(["tokenizer"])).toThrow(`--include-files "tokenizer" matches no file (it is a directory: "tokenizer/" selects everything below it)`);
    expect(() => pick(["absent/"])).toThrow(`--include-files "absent/" matches no file`);
  });

  it("a selection that leaves no file refuses the download", () => {
    expect(() => pick(["*.json"], ["config.json"])).toThrow(`${DIR}: --exclude-files leaves none of the 1 file(s) --include-files selects; nothing was downloaded`);
    expect(() => pick([], ["*", "*/"])).toThrow(`${DIR}: --exclude-files leaves none of the 8 file(s) listed; nothing was downloaded`);
  });

  it.each([
    ["", "is empty"],
    ["/etc/passwd", "starts with /"],
    ["../x", '"." or ".."'],
    ["a/./b", '"." or ".."'],
    ["a//b", "empty"],
  ])("refuses the pattern %j before listing", (pattern, why) => {
    expect(() => checkSelection({ include: [pattern], exclude: [] })).toThrow(`--include-files "${pattern}"`);
    expect(() => checkSelection({ include: [pattern], exclude: [] })).toThrow(why);
    expect(() => checkSelection({ include: [], exclude: [pattern] })).toThrow(`--exclude-files "${pattern}"`);
  });
});
