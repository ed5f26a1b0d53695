// Property: the task id a preheat makes the seed peer compute equals the id a later pull of the
// same URL computes (dfget, Dragonfly's default filtered query params), whatever the signed-URL
// parameters are — so preheated content is served from P2P.
import { describe, expect, it } from "vitest";
import { taskIdFromUrl } from "../../src/common/ids.js";
import { DEFAULT_FILTERED_QUERY_PARAMS, parsePreheatArgs } from "../../src/manager/jobs/args.js";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("preheat and pull agree on task ids", () => {
  it("for 500 random signed URLs", () => {
    const r = rng(42);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)] as T;
    const name = () => Array.from({ length: 1 + Math.floor(r() * 8) }, () => "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(r() * 36)]).join("");
    const word = () => Array.from({ length: 1 + Math.floor(r() * 8) }, () => "abcdefghijklmnopqrstuvwxyz0123456789-_.~%20"[Math.floor(r() * 41)]).join("");
    for (let i = 0; i < 500; i++) {
      const kept = Array.from({ length: Math.floor(r() * 3) }, () => [`k${name()}`, word()] as const);
      const signed = Array.from({ length: 1 + Math.floor(r() * 4) }, () => pick(DEFAULT_FILTERED_QUERY_PARAMS));
      const base = `https://${name()}.example.com/${name()}/${name()}.bin`;
      const query = (values: () => string) => [...kept.map(([k, v]) => `${k}=${v}`), ...signed.map((k) => `${k}=${values()}`)];
      const preheatUrl = `${base}?${query(word).join("&")}`;
      // The puller's URL carries other signature values, in another order.
      const pullUrl = `${base}?${query(word).reverse().join("&")}`;
      const tag = r() < 0.3 ? word() : "";
      const args = parsePreheatArgs({ type: "file", url: preheatUrl, tag, filtered_query_params: "" });
      const preheatId = taskIdFromUrl({ url: args.url, tag: args.tag || undefined, filteredQueryParams: args.filtered_query_params.split("&") });
      const pullId = taskIdFromUrl({ url: pullUrl, tag: tag || undefined, filteredQueryParams: DEFAULT_FILTERED_QUERY_PARAMS });
      expect(preheatId, `${preheatUrl} vs ${pullUrl}`).toBe(pullId);
    }
  });
});
