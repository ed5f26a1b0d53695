//! Digests over Buffers: one-shot (sync and off-thread) and incremental.

use crate::error::{to_js, Result};
use crate::store::{status, to_napi};
use damselfly_core::digest::{self, Algorithm, Hasher};
use napi::bindgen_prelude::{Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;

/// `alg:value` digest of `data` ("crc32" gives Dragonfly's `crc32:<decimal>`).
#[napi]
pub fn digest(algorithm: String, data: Buffer) -> Result<String> {
    let alg = Algorithm::parse(&algorithm).map_err(to_js)?;
    Ok(digest::digest(alg, &data))
}

/// Same as `digest`, computed on a worker thread (not the libuv pool).
#[napi(ts_return_type = "Promise<string>")]
pub fn digest_async(env: &Env, algorithm: String, data: Buffer) -> Result<PromiseRaw<'_, String>> {
    let alg = Algorithm::parse(&algorithm).map_err(to_js)?;
    env.spawn_future(async move {
        tokio::task::spawn_blocking(move || digest::digest(alg, &data)).await.map_err(|e| {
            to_napi(damselfly_core::CoreError::new(damselfly_core::ErrorCode::Io, format!("worker task failed: {e}")))
        })
    })
    .map_err(status)
}

/// Checks `data` against an `alg:value` digest; throws DF_DIGEST_MISMATCH when it differs.
#[napi]
pub fn verify_digest(expected: String, data: Buffer) -> Result<()> {
    digest::verify(&expected, &data).map_err(to_js)
}

/// Incremental hasher for pieces that arrive in chunks.
#[napi]
pub struct DigestHasher {
    inner: Option<Hasher>,
}

#[napi]
impl DigestHasher {
    #[napi(constructor)]
    pub fn new(algorithm: String) -> Result<Self> {
        let alg = Algorithm::parse(&algorithm).map_err(to_js)?;
        Ok(Self { inner: Some(Hasher::new(alg)) })
    }

    #[napi]
    pub fn update(&mut self, data: Buffer) -> Result<()> {
        match self.inner.as_mut() {
            Some(h) => {
                h.update(&data);
                Ok(())
            }
            None => Err(finished()),
        }
    }

    /// Finishes and returns `alg:value`; the hasher cannot be used afterwards.
    #[napi]
    pub fn digest(&mut self) -> Result<String> {
        self.inner.take().map(Hasher::finish).ok_or_else(finished)
    }
}

fn finished() -> napi::Error<crate::error::Code> {
    to_js(damselfly_core::CoreError::new(damselfly_core::ErrorCode::InvalidArgument, "hasher already finished"))
}
