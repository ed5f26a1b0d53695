// Fuzzing the proxy's request parsing with fast-check (issue 21): the X-Dragonfly-* headers,
// the registry/upstream choice of a request (X-Dragonfly-Registry, `?ns=`, tunnels, absolute
// URLs) and Range. Whatever a client sends, the proxy either decides or refuses with its own
// ProxyRequestError naming what was wrong; nothing else may escape (a TypeError here would be
// a 502 with a stack trace's message instead of a 400 naming the header). Inputs per property:
// DAMSELFLY_FUZZ_CASES (`npm run fuzz -- --cases 1000000` for the dedicated run).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MIN_PIECE_LENGTH } from "../../src/common/piece.js";
import { H, parsePieceLength, ProxyRequestError, readDragonflyHeaders } from "../../src/daemon/proxy/headers.js";
import { parseRange } from "../../src/daemon/proxy/range.js";
import { isLoopbackHost, parseConfiguredRegistries, RegistrySchemes, type Scheme } from "../../src/daemon/proxy/registry-scheme.js";
import { requestTarget } from "../../src/daemon/proxy/target.js";

/** Unset: a few seconds per property on 2 cores, so `npm test` runs them in CI. */
const CASES = (() => {
  const v = process.env.DAMSELFLY_FUZZ_CASES;
  if (v === undefined) return 5_000;
  if (!/^\d+$/.test(v)) throw new Error(`DAMSELFLY_FUZZ_CASES=${JSON.stringify(v)} is not a whole number`);
  return Number(v);
})();
/** Generous: the dedicated run's million inputs take minutes on a shared host. */
const TIMEOUT_MS = 30_000 + CASES * 2;

/** Runs one property for CASES inputs and prints the count that `scripts/fuzz.mjs` reports. */
async function fuzz<T>(name: string, arb: fc.Arbitrary<T>, check: (input: T) => Promise<void> | void): Promise<void> {
  let ran = 0;
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(arb, async (input) => {
      ran++;
      await check(input);
    }),
    { numRuns: CASES },
  );
  console.log(`fuzz ${name}: ${ran} inputs in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Fails a property whose inputs never reached one of its outcomes (then it tests only the other). */
function reached(outcomes: Record<string, number>): void {
  console.log(`fuzz reached ${JSON.stringify(outcomes)}`);
  if (CASES < 1000) return;
  for (const [what, n] of Object.entries(outcomes)) expect(n, `no input reached: ${what}`).toBeGreaterThan(0);
}

/** The refusal `f` threw, or undefined when it returned; anything but a ProxyRequestError fails. */
async function refusalOf(f: () => unknown): Promise<ProxyRequestError | undefined> {
  try {
    await f();
    return undefined;
  } catch (e) {
    if (!(e instanceof ProxyRequestError)) throw new Error(`threw ${String(e)} instead of a ProxyRequestError`, { cause: e });
    return e;
  }
}

const REQUEST_HEADERS = Object.values(H).filter((h) => h === h.toLowerCase());

/** Values near the accepted ones (booleans, priorities, sizes), and anything. */
const headerText = fc.oneof(
  fc.constantFrom("true", "false", "TRUE", " false ", "yes", "1", "0", "6", "7", "-1", " 3 ", "4mib", "64MiB", "65mib", "3.9mib", "8 MiB", "4194304", "1e3", "", ","),
  fc.string({ maxLength: 24 }),
  fc.string({ unit: "binary", maxLength: 24 }),
);
const headerValue = fc.oneof({ weight: 4, arbitrary: headerText }, { weight: 1, arbitrary: fc.array(headerText, { minLength: 1, maxLength: 3 }) });
const dragonflyHeaders = fc.dictionary(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...REQUEST_HEADERS) }, { weight: 1, arbitrary: fc.constantFrom("host", "x-other", "range") }), headerValue, { maxKeys: 6 });

/** A refusal must name a header the request carried (the client must learn which one). */
function namesPresentHeader(e: ProxyRequestError, headers: Record<string, unknown>): boolean {
  return Object.keys(headers).some((k) => k.startsWith("x-dragonfly-") && e.message.includes(k));
}

describe("fuzz: X-Dragonfly-* request headers", () => {
  it(
    "readDragonflyHeaders decides or refuses naming the header",
    async () => {
      const seen = { decided: 0, refused: 0 };
      await fuzz("proxy readDragonflyHeaders", fc.tuple(dragonflyHeaders, fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 })), async ([headers, defaults]) => {
        let options: ReturnType<typeof readDragonflyHeaders> | undefined;
        const e = await refusalOf(() => (options = readDragonflyHeaders(headers, defaults)));
        seen[e ? "refused" : "decided"]++;
        if (e) {
          expect([400, 403]).toContain(e.statusCode);
          expect(namesPresentHeader(e, headers), e.message).toBe(true);
          return;
        }
        expect(options).toBeDefined();
        if (!options) return;
        expect(Number.isInteger(options.priority) && options.priority >= 0 && options.priority <= 6).toBe(true);
        if (options.pieceLength !== undefined) expect(options.pieceLength >= MIN_PIECE_LENGTH && options.pieceLength <= 64 << 20).toBe(true);
        expect(headers[H.outputPath]).toBeUndefined();
      });
      reached(seen);
    },
    TIMEOUT_MS,
  );

  it(
    "parsePieceLength returns a size in 4 MiB–64 MiB or refuses naming the header",
    async () => {
      const unit = fc.constantFrom("", " ", "b", "k", "kb", "kib", "m", "MiB", " mb", "g", "GiB", "tib", "x");
      const number = fc.oneof(fc.integer({ min: 0, max: 80 }), fc.double({ min: 0, max: 1e12, noNaN: true }), fc.integer({ min: 0, max: 2 ** 27 }));
      const text = fc.oneof(fc.string({ maxLength: 16 }), fc.tuple(number, unit).map(([n, u]) => `${n}${u}`));
      const seen = { decided: 0, refused: 0 };
      await fuzz("proxy parsePieceLength", text, async (t) => {
        let n: number | undefined;
        const e = await refusalOf(() => (n = parsePieceLength(t)));
        seen[e ? "refused" : "decided"]++;
        if (e) expect(e.message).toContain(H.pieceLength);
        else expect(Number.isSafeInteger(n) && n !== undefined && n >= MIN_PIECE_LENGTH && n <= 64 << 20).toBe(true);
      });
      reached(seen);
    },
    TIMEOUT_MS,
  );
});

/** Registry addresses as clients name them: host[:port][/prefix], URLs, and junk. */
const registryName = fc.oneof(
  fc.tuple(fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((a) => `[${a}]`), fc.constantFrom("127.0.0.1", "localhost", "10.0.0.5", "down.example", "[::1]")), fc.option(fc.integer({ min: 0, max: 70_000 })), fc.option(fc.webPath()))
    .map(([h, port, path]) => `${h}${port === null ? "" : `:${port}`}${path ?? ""}`),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.constantFrom("http://10.0.0.5:5000", "ftp://x", "https://u:p@r.example", "http://", "://", "a b", "[::1", "h:99999"),
  fc.string({ maxLength: 32 }),
);

/** Paths of registry requests, sometimes with containerd's `?ns=`. */
const originForm = fc.tuple(fc.webPath(), fc.option(registryName)).map(([p, ns]) => `/${p.replace(/^\/+/, "")}${ns === null ? "" : `?ns=${encodeURIComponent(ns)}`}`);
const requestTargetText = fc.oneof(originForm, fc.webUrl({ withQueryParameters: true }), fc.constantFrom("*", "ftp://x/y", "http://[::1", "//x"), fc.string({ maxLength: 40 }));

/**
 * A scheme probe without a network: the answer follows from the name, so properties are
 * deterministic; `down.` hosts are unreachable (the 502 refusal), other hosts alternate.
 */
function probe(origin: string): Promise<Scheme> {
  const host = new URL(origin).hostname;
  if (host.startsWith("down.")) return Promise.reject(new Error(`connect ECONNREFUSED ${origin}`));
  return Promise.resolve(isLoopbackHost(host) || origin.length % 2 === 0 ? "http:" : "https:");
}

describe("fuzz: upstream choice of a proxied request", () => {
  const mirror = new URL("https://mirror.example.com");
  const configured = parseConfiguredRegistries(["http://10.0.0.5:5000", "https://harbor.example.com/proxy-cache"]);
  const schemes = new RegistrySchemes({ configured: [...configured, mirror], probe });
  const input = fc.record({
    raw: requestTargetText,
    registry: fc.option(fc.oneof({ weight: 4, arbitrary: registryName }, { weight: 1, arbitrary: fc.array(registryName, { minLength: 2, maxLength: 2 }) })),
    tunnel: fc.option(fc.record({ host: fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6()), port: fc.integer({ min: 1, max: 65535 }) }), { freq: 4 }),
  });

  it(
    "requestTarget routes to an http(s) upstream or refuses naming the header or parameter",
    async () => {
      const seen = { "configured upstream": 0, "client-chosen upstream": 0, "refused (400)": 0, "refused (502)": 0 };
      await fuzz("proxy requestTarget", input, async ({ raw, registry, tunnel }) => {
        const headers = registry === null ? {} : { [H.registry]: registry };
        let target: Awaited<ReturnType<typeof requestTarget>> | undefined;
        const e = await refusalOf(async () => (target = await requestTarget(raw, headers, tunnel ?? undefined, schemes, mirror)));
        if (e) seen[e.statusCode === 502 ? "refused (502)" : "refused (400)"]++;
        else if (target) seen[target.chosen ? "client-chosen upstream" : "configured upstream"]++;
        if (e) {
          expect([400, 502]).toContain(e.statusCode);
          // The source of the bad value: the registry header, the `ns` parameter, or the target itself.
          const named = tunnel === null && raw.startsWith("/") ? (registry !== null ? H.registry : "ns query parameter") : undefined;
          if (named) expect(e.message, e.message).toContain(named);
          else expect(e.message).toMatch(/request target|inside a tunnel/);
          return;
        }
        expect(target).toBeDefined();
        if (!target) return;
        expect(["http:", "https:"]).toContain(target.url.protocol);
        // An upstream the client did not choose is one the operator configured.
        if (!target.chosen) expect([...configured, mirror].map((c) => c.origin)).toContain(target.url.origin);
      });
      reached(seen);
    },
    TIMEOUT_MS,
  );
});

describe("fuzz: Range", () => {
  it(
    "parseRange never throws and stays inside the content",
    async () => {
      const header = fc.option(fc.oneof(fc.tuple(fc.option(fc.nat()), fc.option(fc.nat())).map(([a, b]) => `bytes=${a ?? ""}-${b ?? ""}`), fc.string({ maxLength: 30 })));
      await fuzz("proxy parseRange", fc.tuple(header, fc.nat()), ([h, size]) => {
        const r = parseRange(h ?? undefined, size);
        if (r.kind === "range") expect(r.start >= 0 && r.start <= r.end && r.end < size).toBe(true);
      });
    },
    TIMEOUT_MS,
  );
});
