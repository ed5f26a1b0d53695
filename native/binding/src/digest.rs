//! Digests over Buffers: one-shot (on the calling thread) and incremental (either thread).

use crate::error::{to_js, Result};
use crate::store::off_thread;
use damselfly_core::digest::{self, Algorithm, Hasher};
use napi::bindgen_prelude::{Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use std::sync::{Arc, Mutex};

/// `alg:value` digest of `data` ("crc32" gives Dragonfly's `crc32:<decimal>`). With `expected`
/// (`alg:value`) it also checks `data` against it: DF_DIGEST_MISMATCH when it differs. Hashing
/// off the JS thread is `DigestHasher.updateAsync`, so no one-shot async twin is exported.
#[napi]
pub fn digest(algorithm: String, data: Buffer, expected: Option<String>) -> Result<String> {
    let got = digest::digest(Algorithm::parse(&algorithm).map_err(to_js)?, &data);
    match expected {
        None => Ok(got),
        Some(expected) => digest::check(&expected, got).map_err(to_js),
    }
}

/// Incremental hasher for pieces that arrive in chunks.
#[napi]
pub struct DigestHasher {
    inner: Arc<Mutex<Option<Hasher>>>,
}

#[napi]
impl DigestHasher {
    #[napi(constructor)]
    pub fn new(algorithm: String) -> Result<Self> {
        let alg = Algorithm::parse(&algorithm).map_err(to_js)?;
        Ok(Self { inner: Arc::new(Mutex::new(Some(Hasher::new(alg)))) })
    }

    #[napi]
    pub fn update(&self, data: Buffer) -> Result<()> {
        match self.inner.lock().map_err(|_| poisoned())?.as_mut() {
            Some(h) => {
                h.update(&data);
                Ok(())
            }
            None => Err(finished()),
        }
    }

    /// `update` on a worker thread, so a whole blob can be hashed off the JS thread while the
    /// next bytes arrive. Updates apply in call order only if each awaits the previous one.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn update_async<'e>(&self, env: &'e Env, data: Buffer) -> Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        off_thread(env, move || match inner.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(h) => {
                    h.update(&data);
                    Ok(())
                }
                None => Err(damselfly_core::CoreError::new(
                    damselfly_core::ErrorCode::InvalidArgument,
                    "hasher already finished",
                )),
            },
            Err(_) => Err(damselfly_core::CoreError::new(damselfly_core::ErrorCode::Io, "hasher lock poisoned")),
        })
    }

    /// Finishes and returns `alg:value`; the hasher cannot be used afterwards.
    #[napi]
    pub fn digest(&self) -> Result<String> {
        self.inner.lock().map_err(|_| poisoned())?.take().map(Hasher::finish).ok_or_else(finished)
    }
}

fn poisoned() -> napi::Error<crate::error::Code> {
    to_js(damselfly_core::CoreError::new(damselfly_core::ErrorCode::Io, "hasher lock poisoned"))
}

fn finished() -> napi::Error<crate::error::Code> {
    to_js(damselfly_core::CoreError::new(damselfly_core::ErrorCode::InvalidArgument, "hasher already finished"))
}
