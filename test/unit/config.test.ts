import { Type } from "@sinclair/typebox";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, parseDuration } from "../../src/common/config.js";

const Schema = Type.Object(
  {
    server: Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535, default: 8002 }) }, { additionalProperties: false, default: {} }),
    scheduler: Type.Object({ algorithm: Type.Union([Type.Literal("default"), Type.Literal("bandwidth")], { default: "default" }) }, { additionalProperties: false, default: {} }),
  },
  { additionalProperties: false },
);

describe("config", () => {
  it("fills defaults from the schema", () => {
    expect(parseConfig(Schema, "")).toEqual({ server: { port: 8002 }, scheduler: { algorithm: "default" } });
  });
  it("names an unknown key", () => {
    expect(() => parseConfig(Schema, "server:\n  prot: 1\n", "s.yaml")).toThrow(new ConfigError("s.yaml: server.prot: unknown key"));
  });
  it("names a bad value", () => {
    expect(() => parseConfig(Schema, "server:\n  port: 70000\n", "s.yaml")).toThrow(/s\.yaml: server\.port: /);
    expect(() => parseConfig(Schema, "scheduler:\n  algorithm: nope\n", "s.yaml")).toThrow(/scheduler\.algorithm/);
  });
  it("reports broken YAML", () => {
    expect(() => parseConfig(Schema, "server: [", "s.yaml")).toThrow(/s\.yaml: invalid YAML/);
  });
  it("parses Go durations", () => {
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(() => parseDuration("5 minutes")).toThrow(/invalid duration/);
  });
});
