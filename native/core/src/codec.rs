//! Per-piece transforms: zstd compression and AES-256-GCM sealing.

use crate::error::{CoreError, ErrorCode, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

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
