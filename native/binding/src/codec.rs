//! Codec calls over whole pieces (Buffer in, Buffer out).

use crate::error::{to_js, Result};
use damselfly_core::codec;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

#[napi]
pub fn zstd_compress(input: Buffer, level: i32) -> Result<Buffer> {
    codec::zstd_compress(&input, level).map(Buffer::from).map_err(to_js)
}

#[napi]
pub fn zstd_decompress(input: Buffer, max_len: u32) -> Result<Buffer> {
    codec::zstd_decompress(&input, max_len as usize).map(Buffer::from).map_err(to_js)
}

#[napi]
pub fn aes_gcm_seal(key: Buffer, nonce: Buffer, plain: Buffer) -> Result<Buffer> {
    codec::aes_gcm_seal(&key, &nonce, &plain).map(Buffer::from).map_err(to_js)
}

#[napi]
pub fn aes_gcm_open(key: Buffer, nonce: Buffer, sealed: Buffer) -> Result<Buffer> {
    codec::aes_gcm_open(&key, &nonce, &sealed).map(Buffer::from).map_err(to_js)
}
