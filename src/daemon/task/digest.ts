// Whole-content digests as Dragonfly writes them: `alg:hex`.
export const DIGEST_ALGORITHMS = ["sha256", "sha512", "blake3", "crc32", "md5", "sha1"] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];
const HEX_LENGTH: Record<DigestAlgorithm, number | undefined> = { sha256: 64, sha512: 128, blake3: 64, md5: 32, sha1: 40, crc32: undefined };

export function parseDigest(text: string): { algorithm: DigestAlgorithm; hex: string } {
  const m = /^([a-z0-9]+):([0-9a-fA-F]+)$/.exec(text.trim());
  if (!m?.[1] || !m[2]) throw new TypeError(`invalid digest "${text}": expected <algorithm>:<hex>, e.g. sha256:…`);
  const algorithm = m[1] as DigestAlgorithm;
  if (!DIGEST_ALGORITHMS.includes(algorithm)) throw new TypeError(`unsupported digest algorithm "${m[1]}" (supported: ${DIGEST_ALGORITHMS.join(", ")})`);
  const want = HEX_LENGTH[algorithm];
  if (want !== undefined && m[2].length !== want) throw new TypeError(`invalid ${algorithm} digest: expected ${want} hex characters, got ${m[2].length}`);
  return { algorithm, hex: m[2].toLowerCase() };
}
