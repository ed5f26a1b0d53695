//! Per-piece transforms: zstd compression and AES-256-GCM sealing.

use crate::error::{CoreError, ErrorCode, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

/// Compresses `input` at `level` (1..=19).
pub fn zstd_compress(input: &[u8], level: i32) -> Result<Vec<u8>> {
    if !(1..=19).contains(&level) {
        return Err(CoreError::new(ErrorCode::InvalidArgument, format!("zstd level {level} is outside 1..=19")));
    }
    zstd::bulk::compress(input, level).map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd compress: {e}")))
}

/// Decompresses `input`, refusing output larger than `max_len` (a piece never grows past
/// its declared length, so a bomb is cut off early).
pub fn zstd_decompress(input: &[u8], max_len: usize) -> Result<Vec<u8>> {
    zstd::bulk::decompress(input, max_len)
        .map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd decompress: {e}")))
}

fn gcm_key(key: &[u8]) -> Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| CoreError::new(ErrorCode::InvalidArgument, "AES-256-GCM key must be 32 bytes"))?;
    Ok(LessSafeKey::new(unbound))
}

fn gcm_nonce(nonce: &[u8]) -> Result<Nonce> {
    Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| CoreError::new(ErrorCode::InvalidArgument, "AES-256-GCM nonce must be 12 bytes"))
}

/// Seals `plain`; the output is ciphertext followed by the 16-byte tag.
pub fn aes_gcm_seal(key: &[u8], nonce: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let key = gcm_key(key)?;
    let mut out = Vec::with_capacity(plain.len() + AES_256_GCM.tag_len());
    out.extend_from_slice(plain);
    key.seal_in_place_append_tag(gcm_nonce(nonce)?, Aad::empty(), &mut out)
        .map_err(|_| CoreError::new(ErrorCode::Codec, "AES-256-GCM seal failed"))?;
    Ok(out)
}

/// Opens ciphertext+tag; no byte is returned unless the tag verifies.
pub fn aes_gcm_open(key: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let key = gcm_key(key)?;
    let mut buf = sealed.to_vec();
    let plain_len = key
        .open_in_place(gcm_nonce(nonce)?, Aad::empty(), &mut buf)
        .map_err(|_| CoreError::new(ErrorCode::Auth, "AES-256-GCM tag does not verify"))?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Nonce for piece `number` of `task_id`: 8 bytes of SHA-256(task id) then the piece number
/// (u32 big-endian). Unique per (task, piece) under one key; a task's content is fixed by its
/// id, so re-sealing the same piece reproduces the same ciphertext instead of reusing a nonce
/// over different plaintext.
pub fn piece_nonce(task_id: &str, number: u32) -> [u8; 12] {
    let h = crate::digest::sha256_bytes(task_id.as_bytes());
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&h[..8]);
    n[8..].copy_from_slice(&number.to_be_bytes());
    n
}

/// Seals one piece with the nonce derived from (task id, piece number); the piece number is
/// also bound as associated data so a ciphertext cannot be replayed as another piece.
pub fn seal_piece(key: &[u8], task_id: &str, number: u32, plain: &[u8]) -> Result<Vec<u8>> {
    let k = gcm_key(key)?;
    let mut out = Vec::with_capacity(plain.len() + AES_256_GCM.tag_len());
    out.extend_from_slice(plain);
    let aad = number.to_be_bytes();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(piece_nonce(task_id, number)), Aad::from(aad), &mut out)
        .map_err(|_| CoreError::new(ErrorCode::Codec, "AES-256-GCM seal failed"))?;
    Ok(out)
}

/// Opens a sealed piece; the tag is verified before any plaintext is returned.
pub fn open_piece(key: &[u8], task_id: &str, number: u32, sealed: &[u8]) -> Result<Vec<u8>> {
    let k = gcm_key(key)?;
    let mut buf = sealed.to_vec();
    let aad = number.to_be_bytes();
    let plain_len = k
        .open_in_place(Nonce::assume_unique_for_key(piece_nonce(task_id, number)), Aad::from(aad), &mut buf)
        .map_err(|_| CoreError::new(ErrorCode::Auth, format!("AES-256-GCM tag of piece {number} does not verify")))?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// An AES-256-GCM key expanded once, for pieces sealed in place with their tag kept apart
/// (seal.rs: the ciphertext keeps the piece's length and offset, the tag goes to its record).
/// Same nonce and associated data as `seal_piece`, under the nonce identity the caller gives.
pub struct PieceKey(LessSafeKey);

impl PieceKey {
    pub fn new(key: &[u8]) -> Result<Self> {
        gcm_key(key).map(Self)
    }

    /// Encrypts `buf` in place as piece `number`; returns its 16-byte tag.
    pub fn seal_in_place(&self, nonce_id: &str, number: u32, buf: &mut [u8]) -> Result<[u8; 16]> {
        let nonce = Nonce::assume_unique_for_key(piece_nonce(nonce_id, number));
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(number.to_be_bytes()), buf)
            .map_err(|_| CoreError::new(ErrorCode::Codec, "AES-256-GCM seal failed"))?;
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `buf` in place as piece `number`; DF_AUTH if `tag` does not verify (the bytes
    /// are then not plaintext and must not be used).
    pub fn open_in_place(&self, nonce_id: &str, number: u32, buf: &mut [u8], tag: &[u8; 16]) -> Result<()> {
        let nonce = Nonce::assume_unique_for_key(piece_nonce(nonce_id, number));
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(number.to_be_bytes()), Tag::from(*tag), buf, 0..)
            .map(drop)
            .map_err(|_| CoreError::new(ErrorCode::Auth, format!("AES-256-GCM tag of piece {number} does not verify")))
    }
}

/// Seals several pieces at once, spread over the cores (GCM of one piece is sequential, so
/// parallelism comes from independent pieces).
pub fn seal_pieces(key: &[u8], task_id: &str, pieces: &[(u32, &[u8])]) -> Result<Vec<Vec<u8>>> {
    use rayon::prelude::*;
    pieces.par_iter().map(|(n, p)| seal_piece(key, task_id, *n, p)).collect()
}

/// Opens several pieces at once; fails as a whole if any tag does not verify.
pub fn open_pieces(key: &[u8], task_id: &str, pieces: &[(u32, &[u8])]) -> Result<Vec<Vec<u8>>> {
    use rayon::prelude::*;
    pieces.par_iter().map(|(n, p)| open_piece(key, task_id, *n, p)).collect()
}

thread_local! {
    static ZSTD_C: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses one piece with a per-thread reusable context (creating a context per call costs
/// more than compressing a small piece). `workers` > 0 splits the piece into jobs compressed
/// on that many extra threads; the output stays one standard zstd frame.
pub fn zstd_compress_piece(input: &[u8], level: i32, workers: u32) -> Result<Vec<u8>> {
    with_compressor(level, workers, |c| c.compress(input))
}

/// Decompresses one piece (one or more concatenated frames) with a per-thread context,
/// refusing output beyond `max_len`.
pub fn zstd_decompress_piece(input: &[u8], max_len: usize) -> Result<Vec<u8>> {
    let codec = |e: std::io::Error| CoreError::new(ErrorCode::Codec, format!("zstd decompress: {e}"));
    ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(codec)?),
        };
        d.decompress(input, max_len).map_err(codec)
    })
}

/// Seals one piece into `out` (exactly `plain.len() + 16` bytes): no allocation, so a caller
/// that reuses its output buffers never pays for fresh pages.
pub fn seal_piece_into(key: &[u8], task_id: &str, number: u32, plain: &[u8], out: &mut [u8]) -> Result<()> {
    let tag_len = AES_256_GCM.tag_len();
    if out.len() != plain.len() + tag_len {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("output must be {} bytes (piece + 16-byte tag), got {}", plain.len() + tag_len, out.len()),
        ));
    }
    let k = gcm_key(key)?;
    let (body, tag_out) = out.split_at_mut(plain.len());
    body.copy_from_slice(plain);
    let tag = k
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(piece_nonce(task_id, number)),
            Aad::from(number.to_be_bytes()),
            body,
        )
        .map_err(|_| CoreError::new(ErrorCode::Codec, "AES-256-GCM seal failed"))?;
    tag_out.copy_from_slice(tag.as_ref());
    Ok(())
}

/// Seals several pieces into caller-provided outputs, in parallel over the cores.
pub fn seal_pieces_into(key: &[u8], task_id: &str, pieces: &[(u32, &[u8])], outs: &mut [&mut [u8]]) -> Result<()> {
    use rayon::prelude::*;
    if pieces.len() != outs.len() {
        return Err(CoreError::new(ErrorCode::InvalidArgument, "one output buffer per piece is needed"));
    }
    pieces.par_iter().zip(outs.par_iter_mut()).try_for_each(|((n, p), o)| seal_piece_into(key, task_id, *n, p, o))
}

/// Compresses into `out` and returns the compressed size (DF_CODEC if `out` is too small;
/// `zstd_compress_bound` gives a size that always fits).
pub fn zstd_compress_into(input: &[u8], level: i32, workers: u32, out: &mut [u8]) -> Result<usize> {
    with_compressor(level, workers, |c| c.compress_to_buffer(input, out))
}

pub fn zstd_compress_bound(len: usize) -> usize {
    zstd::zstd_safe::compress_bound(len)
}

/// Decompresses into `out` and returns the decompressed size; output larger than `out` fails.
pub fn zstd_decompress_into(input: &[u8], out: &mut [u8]) -> Result<usize> {
    let codec = |e: std::io::Error| CoreError::new(ErrorCode::Codec, format!("zstd decompress: {e}"));
    ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(codec)?),
        };
        d.decompress_to_buffer(input, out).map_err(codec)
    })
}

fn with_compressor<T>(
    level: i32,
    workers: u32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> Result<T> {
    if !(1..=19).contains(&level) {
        return Err(CoreError::new(ErrorCode::InvalidArgument, format!("zstd level {level} is outside 1..=19")));
    }
    let codec = |e: std::io::Error| CoreError::new(ErrorCode::Codec, format!("zstd compress: {e}"));
    ZSTD_C.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(level).map_err(codec)?),
        };
        c.set_compression_level(level).map_err(codec)?;
        c.set_parameter(zstd::zstd_safe::CParameter::NbWorkers(workers)).map_err(codec)?;
        if workers > 0 {
            // Jobs of 1 MiB (the minimum worth a thread) so a 4 MiB piece has work for every core.
            c.set_parameter(zstd::zstd_safe::CParameter::JobSize(1 << 20)).map_err(codec)?;
        }
        f(c).map_err(codec)
    })
}

/// Streaming zstd compression of one piece that arrives in chunks: each `push` returns the
/// compressed bytes ready so far, `finish` the rest; the result is one standard frame.
pub struct ZstdStreamEncoder {
    inner: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
}

impl ZstdStreamEncoder {
    pub fn new(level: i32) -> Result<Self> {
        if !(1..=19).contains(&level) {
            return Err(CoreError::new(ErrorCode::InvalidArgument, format!("zstd level {level} is outside 1..=19")));
        }
        let e = zstd::stream::write::Encoder::new(Vec::new(), level)
            .map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd encoder: {e}")))?;
        Ok(Self { inner: Some(e) })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        use std::io::Write;
        let e = self.inner.as_mut().ok_or_else(stream_finished)?;
        e.write_all(chunk).map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd compress: {e}")))?;
        Ok(std::mem::take(e.get_mut()))
    }

    pub fn finish(&mut self) -> Result<Vec<u8>> {
        let e = self.inner.take().ok_or_else(stream_finished)?;
        e.finish().map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd compress: {e}")))
    }
}

/// Streaming zstd decompression of one piece whose length is known: output beyond it is
/// refused as soon as it appears, and `finish` fails unless exactly that many bytes came out.
pub struct ZstdStreamDecoder {
    inner: Option<zstd::stream::write::Decoder<'static, Vec<u8>>>,
    produced: usize,
    expected: usize,
}

impl ZstdStreamDecoder {
    pub fn new(expected_len: usize) -> Result<Self> {
        let d = zstd::stream::write::Decoder::new(Vec::new())
            .map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd decoder: {e}")))?;
        Ok(Self { inner: Some(d), produced: 0, expected: expected_len })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        use std::io::Write;
        let d = self.inner.as_mut().ok_or_else(stream_finished)?;
        d.write_all(chunk).map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd decompress: {e}")))?;
        let out = std::mem::take(d.get_mut());
        self.produced += out.len();
        if self.produced > self.expected {
            self.inner = None;
            return Err(CoreError::new(
                ErrorCode::Codec,
                format!("zstd output exceeds the piece length {}", self.expected),
            ));
        }
        Ok(out)
    }

    pub fn finish(&mut self) -> Result<Vec<u8>> {
        use std::io::Write;
        let mut d = self.inner.take().ok_or_else(stream_finished)?;
        d.flush().map_err(|e| CoreError::new(ErrorCode::Codec, format!("zstd decompress: {e}")))?;
        let out = d.into_inner();
        self.produced += out.len();
        if self.produced != self.expected {
            return Err(CoreError::new(
                ErrorCode::Codec,
                format!("zstd stream produced {} bytes, the piece has {}", self.produced, self.expected),
            ));
        }
        Ok(out)
    }
}

fn stream_finished() -> CoreError {
    CoreError::new(ErrorCode::InvalidArgument, "zstd stream already finished")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn mixed(len: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Half text-like, half noise: compressible but not trivially.
                if (i / 4096) % 2 == 0 {
                    b"the quick brown fox jumps over the lazy dog "[i % 44]
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn piece_seal_roundtrip_and_tamper_detection() {
        let key = [3u8; 32];
        let plain = mixed(100_000);
        let sealed = seal_piece(&key, TID, 5, &plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + 16);
        assert_eq!(open_piece(&key, TID, 5, &sealed).unwrap(), plain);
        // Wrong piece number, wrong task, flipped bit, truncated: all refused with DF_AUTH.
        assert_eq!(open_piece(&key, TID, 6, &sealed).unwrap_err().code, ErrorCode::Auth);
        assert_eq!(open_piece(&key, &TID.replace('0', "1"), 5, &sealed).unwrap_err().code, ErrorCode::Auth);
        let mut bad = sealed.clone();
        bad[1234] ^= 0x80;
        assert_eq!(open_piece(&key, TID, 5, &bad).unwrap_err().code, ErrorCode::Auth);
        assert_eq!(open_piece(&key, TID, 5, &sealed[..sealed.len() - 1]).unwrap_err().code, ErrorCode::Auth);
        assert_eq!(seal_piece(&[0u8; 31], TID, 5, &plain).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_ne!(piece_nonce(TID, 1), piece_nonce(TID, 2));
    }

    #[test]
    fn into_variants_match_allocating_ones() {
        let key = [4u8; 32];
        let a = mixed(50_000);
        let b = mixed(777);
        let mut oa = vec![0u8; a.len() + 16];
        let mut ob = vec![0u8; b.len() + 16];
        seal_pieces_into(&key, TID, &[(1, &a), (2, &b)], &mut [&mut oa, &mut ob]).unwrap();
        assert_eq!(oa, seal_piece(&key, TID, 1, &a).unwrap());
        assert_eq!(ob, seal_piece(&key, TID, 2, &b).unwrap());
        let mut short = vec![0u8; a.len()];
        assert_eq!(seal_piece_into(&key, TID, 1, &a, &mut short).unwrap_err().code, ErrorCode::InvalidArgument);
        let data = mixed(1 << 20);
        let mut c = vec![0u8; zstd_compress_bound(data.len())];
        let n = zstd_compress_into(&data, 3, 0, &mut c).unwrap();
        let mut d = vec![0u8; data.len()];
        assert_eq!(zstd_decompress_into(&c[..n], &mut d).unwrap(), data.len());
        assert_eq!(d, data);
        let mut small = vec![0u8; 10];
        assert_eq!(zstd_decompress_into(&c[..n], &mut small).unwrap_err().code, ErrorCode::Codec);
    }

    #[test]
    fn zstd_streams_roundtrip_in_chunks_and_bound_output() {
        let data = mixed(2 << 20);
        let mut enc = ZstdStreamEncoder::new(3).unwrap();
        let mut packed = Vec::new();
        for c in data.chunks(100_000) {
            packed.extend(enc.push(c).unwrap());
        }
        packed.extend(enc.finish().unwrap());
        assert_eq!(zstd_decompress(&packed, data.len()).unwrap(), data, "one standard frame");
        let mut dec = ZstdStreamDecoder::new(data.len()).unwrap();
        let mut out = Vec::new();
        for c in packed.chunks(7_777) {
            out.extend(dec.push(c).unwrap());
        }
        out.extend(dec.finish().unwrap());
        assert_eq!(out, data);
        // Truncated input does not pass as a whole piece; a bomb is cut off.
        let mut dec = ZstdStreamDecoder::new(data.len()).unwrap();
        let _ = dec.push(&packed[..packed.len() / 2]).unwrap();
        assert_eq!(dec.finish().unwrap_err().code, ErrorCode::Codec);
        let mut small = ZstdStreamDecoder::new(1000).unwrap();
        assert_eq!(small.push(&packed).unwrap_err().code, ErrorCode::Codec);
        assert_eq!(enc.push(b"x").unwrap_err().code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn batch_seal_matches_single() {
        let key = [9u8; 32];
        let a = mixed(70_000);
        let b = mixed(1000);
        let out = seal_pieces(&key, TID, &[(0, &a), (1, &b)]).unwrap();
        assert_eq!(out[0], seal_piece(&key, TID, 0, &a).unwrap());
        let back = open_pieces(&key, TID, &[(0, &out[0]), (1, &out[1])]).unwrap();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn zstd_levels_and_workers_roundtrip() {
        let data = mixed(3 << 20);
        for level in [1, 3, 9, 19] {
            for workers in [0, 2] {
                if level == 19 && workers == 2 {
                    continue;
                }
                let c = zstd_compress_piece(&data, level, workers).unwrap();
                assert!(c.len() < data.len());
                assert_eq!(zstd_decompress_piece(&c, data.len()).unwrap(), data, "level {level} workers {workers}");
                // Standard frames: the plain zstd decoder reads them too.
                assert_eq!(zstd_decompress(&c, data.len()).unwrap(), data);
            }
        }
        assert_eq!(zstd_compress_piece(&data, 0, 0).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(zstd_compress_piece(&data, 20, 0).unwrap_err().code, ErrorCode::InvalidArgument);
        let c = zstd_compress_piece(&data, 3, 0).unwrap();
        assert_eq!(zstd_decompress_piece(&c, 1000).unwrap_err().code, ErrorCode::Codec, "bomb cut off");
        assert_eq!(zstd_decompress_piece(&data[..100], data.len()).unwrap_err().code, ErrorCode::Codec);
    }
}
