//! Codec calls over whole pieces (Buffer in, Buffer out), sync and off-thread variants. An
//! optional output Buffer selects the allocation-free form of a call rather than a second
//! export, so the binding surface stays small.

use crate::error::{to_js, Result};
use crate::store::off_thread;
use damselfly_core::{codec, CoreError, ErrorCode};
use napi::bindgen_prelude::{Buffer, Either, PromiseRaw, Undefined};
use napi::Env;
use napi_derive::napi;

/// Compresses one piece; with `out` (sized by the facade's `zstdCompressBound`) it writes there
/// and returns the compressed length instead of a new Buffer, so a caller that reuses its
/// buffers pays no fresh pages per piece.
#[napi(ts_return_type = "Buffer | number")]
pub fn zstd_compress(
    input: Buffer,
    level: i32,
    workers: Option<u32>,
    out: Option<Buffer>,
) -> Result<Either<Buffer, u32>> {
    let workers = workers.unwrap_or(0);
    match out {
        None => codec::zstd_compress_piece(&input, level, workers).map(|v| Either::A(v.into())),
        Some(mut out) => codec::zstd_compress_into(&input, level, workers, &mut out).map(|n| Either::B(n as u32)),
    }
    .map_err(to_js)
}

/// Decompresses one piece. `limit` is either the most bytes it may yield (a new Buffer is
/// returned) or the Buffer to fill (the decompressed length is returned); DF_CODEC past either.
#[napi(ts_return_type = "Buffer | number")]
pub fn zstd_decompress(input: Buffer, limit: Either<u32, Buffer>) -> Result<Either<Buffer, u32>> {
    match limit {
        Either::A(max_len) => codec::zstd_decompress_piece(&input, max_len as usize).map(|v| Either::A(v.into())),
        Either::B(mut out) => codec::zstd_decompress_into(&input, &mut out).map(|n| Either::B(n as u32)),
    }
    .map_err(to_js)
}

#[napi(ts_return_type = "Promise<Buffer>")]
pub fn zstd_compress_async(
    env: &Env,
    input: Buffer,
    level: i32,
    workers: Option<u32>,
) -> Result<PromiseRaw<'_, Buffer>> {
    off_thread(env, move || codec::zstd_compress_piece(&input, level, workers.unwrap_or(0)).map(Buffer::from))
}

#[napi(ts_return_type = "Promise<Buffer>")]
pub fn zstd_decompress_async(env: &Env, input: Buffer, max_len: u32) -> Result<PromiseRaw<'_, Buffer>> {
    off_thread(env, move || codec::zstd_decompress_piece(&input, max_len as usize).map(Buffer::from))
}

#[napi]
pub fn aes_gcm_seal(key: Buffer, nonce: Buffer, plain: Buffer) -> Result<Buffer> {
    codec::aes_gcm_seal(&key, &nonce, &plain).map(Buffer::from).map_err(to_js)
}

#[napi]
pub fn aes_gcm_open(key: Buffer, nonce: Buffer, sealed: Buffer) -> Result<Buffer> {
    codec::aes_gcm_open(&key, &nonce, &sealed).map(Buffer::from).map_err(to_js)
}

/// Seals one piece into a new Buffer, or into `out` (piece length + 16 bytes) when given.
#[napi(ts_return_type = "Buffer | undefined")]
pub fn seal_piece(
    key: Buffer,
    task_id: String,
    number: u32,
    plain: Buffer,
    out: Option<Buffer>,
) -> Result<Either<Buffer, Undefined>> {
    match out {
        None => codec::seal_piece(&key, &task_id, number, &plain).map(|v| Either::A(v.into())),
        Some(mut out) => codec::seal_piece_into(&key, &task_id, number, &plain, &mut out).map(Either::B),
    }
    .map_err(to_js)
}

#[napi]
pub fn open_piece(key: Buffer, task_id: String, number: u32, sealed: Buffer) -> Result<Buffer> {
    codec::open_piece(&key, &task_id, number, &sealed).map(Buffer::from).map_err(to_js)
}

fn pairs(numbers: &[u32], pieces: &[Buffer]) -> damselfly_core::error::Result<()> {
    if numbers.len() != pieces.len() {
        return Err(CoreError::new(ErrorCode::InvalidArgument, "numbers and pieces differ in length"));
    }
    Ok(())
}

/// Seals several pieces on all cores; resolves to the sealed pieces in order, or, with `outs`
/// (one Buffer per piece, untouched until it settles), fills those and resolves to nothing.
#[napi(ts_return_type = "Promise<Buffer[] | undefined>")]
pub fn seal_pieces(
    env: &Env,
    key: Buffer,
    task_id: String,
    numbers: Vec<u32>,
    pieces: Vec<Buffer>,
    outs: Option<Vec<Buffer>>,
) -> Result<PromiseRaw<'_, Either<Vec<Buffer>, Undefined>>> {
    pairs(&numbers, &pieces).map_err(to_js)?;
    off_thread(env, move || {
        let list: Vec<(u32, &[u8])> = numbers.iter().copied().zip(pieces.iter().map(|b| &b[..])).collect();
        match outs {
            None => {
                codec::seal_pieces(&key, &task_id, &list).map(|v| Either::A(v.into_iter().map(Buffer::from).collect()))
            }
            Some(mut outs) => {
                let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|b| &mut b[..]).collect();
                codec::seal_pieces_into(&key, &task_id, &list, &mut views).map(Either::B)
            }
        }
    })
}

/// Opens several sealed pieces on all cores; rejects with DF_AUTH if any tag fails.
#[napi(ts_return_type = "Promise<Buffer[]>")]
pub fn open_pieces(
    env: &Env,
    key: Buffer,
    task_id: String,
    numbers: Vec<u32>,
    pieces: Vec<Buffer>,
) -> Result<PromiseRaw<'_, Vec<Buffer>>> {
    pairs(&numbers, &pieces).map_err(to_js)?;
    off_thread(env, move || {
        let list: Vec<(u32, &[u8])> = numbers.iter().copied().zip(pieces.iter().map(|b| &b[..])).collect();
        codec::open_pieces(&key, &task_id, &list).map(|v| v.into_iter().map(Buffer::from).collect())
    })
}

/// Streaming zstd compression of one piece arriving in chunks (one standard frame).
#[napi]
pub struct ZstdEncoder {
    inner: codec::ZstdStreamEncoder,
}

#[napi]
impl ZstdEncoder {
    #[napi(constructor)]
    pub fn new(level: i32) -> Result<Self> {
        Ok(Self { inner: codec::ZstdStreamEncoder::new(level).map_err(to_js)? })
    }

    /// Compressed bytes ready so far (may be empty).
    #[napi]
    pub fn push(&mut self, chunk: Buffer) -> Result<Buffer> {
        self.inner.push(&chunk).map(Buffer::from).map_err(to_js)
    }

    #[napi]
    pub fn finish(&mut self) -> Result<Buffer> {
        self.inner.finish().map(Buffer::from).map_err(to_js)
    }
}

/// Streaming zstd decompression of one piece of known length.
#[napi]
pub struct ZstdDecoder {
    inner: codec::ZstdStreamDecoder,
}

#[napi]
impl ZstdDecoder {
    #[napi(constructor)]
    pub fn new(expected_length: u32) -> Result<Self> {
        Ok(Self { inner: codec::ZstdStreamDecoder::new(expected_length as usize).map_err(to_js)? })
    }

    /// Decompressed bytes ready so far; DF_CODEC once the output would pass the piece length.
    #[napi]
    pub fn push(&mut self, chunk: Buffer) -> Result<Buffer> {
        self.inner.push(&chunk).map(Buffer::from).map_err(to_js)
    }

    /// The rest; DF_CODEC unless exactly the piece length came out.
    #[napi]
    pub fn finish(&mut self) -> Result<Buffer> {
        self.inner.finish().map(Buffer::from).map_err(to_js)
    }
}
