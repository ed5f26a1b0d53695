//! Streaming origin bodies for JS: one ranged GET read in order into caller Buffers.

use crate::error::{to_js, Result};
use crate::store::{status, to_napi, CancelToken};
use damselfly_core::cancel;
use damselfly_core::origin::{self, OriginRequest};
use damselfly_core::{CoreError, ErrorCode};
use napi::bindgen_prelude::{Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[napi(object)]
pub struct OpenOriginBodyOptions {
    /// The origin's resolved address, `ip:port` (`[v6]:port`); never a host name.
    pub addr: String,
    /// `Host` header value.
    pub host: String,
    /// Request target: path and query, percent-encoded, starting with `/`.
    pub path: String,
    /// Extra request headers (no Host, Range, Connection, framing or precondition headers).
    pub headers: Option<HashMap<String, String>>,
    /// The content version the answer must be of (sent as a precondition, compared with the
    /// answer's validators); DF_ORIGIN_CHANGED when it is another.
    pub pin: Option<OriginPin>,
    /// First byte of the range.
    pub offset: i64,
    /// Bytes in the range.
    pub length: i64,
    /// Length of the whole content (the answer's Content-Range must agree).
    pub content_length: i64,
    pub connect_timeout_ms: Option<u32>,
    /// Bound on each wait for the origin (default 60 s).
    pub read_timeout_ms: Option<u32>,
}

/// The version of the origin's content a task is pinned to (see `origin::Pin`).
#[napi(object)]
pub struct OriginPin {
    /// Strong ETag, quotes included: sent as If-Match.
    pub etag: Option<String>,
    /// Last-Modified as the origin wrote it: sent as If-Unmodified-Since when there is no ETag.
    pub last_modified: Option<String>,
}

fn invalid(msg: impl Into<String>) -> napi::Error<crate::error::Code> {
    to_js(CoreError::new(ErrorCode::InvalidArgument, msg))
}

fn non_negative(name: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("{name} must not be negative")))
}

/// The ranged GET both origin bindings send: the address parsed, the headers sorted so the same
/// headers make the same request (tests rely on it), timeouts defaulted (10 s connect, 60 s read).
pub(crate) fn origin_request(
    addr: &str,
    host: String,
    path: String,
    headers: Option<std::collections::HashMap<String, String>>,
    pin: Option<OriginPin>,
    number: u32,
    (connect_timeout_ms, read_timeout_ms): (Option<u32>, Option<u32>),
) -> Result<OriginRequest> {
    let addr: std::net::SocketAddr =
        addr.parse().map_err(|_| invalid(format!("origin address {addr:?} is not ip:port")))?;
    let mut headers: Vec<(String, String)> = headers.unwrap_or_default().into_iter().collect();
    headers.sort();
    Ok(OriginRequest {
        addr,
        host,
        path,
        headers,
        pin: pin.map(|p| origin::Pin { etag: p.etag, last_modified: p.last_modified }).unwrap_or_default(),
        number,
        connect_timeout: Duration::from_millis(connect_timeout_ms.unwrap_or(10_000) as u64),
        read_timeout: Duration::from_millis(read_timeout_ms.unwrap_or(60_000) as u64),
    })
}

/// Sends a ranged GET and resolves once the answer's head checked out (206 with the asked
/// range, or 200 for the whole content); rejects with DF_BACKEND carrying the origin's answer.
#[napi(ts_return_type = "Promise<OriginBody>")]
pub fn open_origin_body<'e>(
    env: &'e Env,
    options: OpenOriginBodyOptions,
    cancel: Option<&CancelToken>,
) -> Result<PromiseRaw<'e, OriginBody>> {
    let offset = non_negative("offset", options.offset)?;
    let length = non_negative("length", options.length)?;
    let content_length = non_negative("contentLength", options.content_length)?;
    if offset.checked_add(length).is_none_or(|end| end > content_length) {
        return Err(invalid(format!("range {offset}+{length} is outside the {content_length}-byte content")));
    }
    let req = origin_request(
        &options.addr,
        options.host,
        options.path,
        options.headers,
        options.pin,
        0,
        (options.connect_timeout_ms, options.read_timeout_ms),
    )?;
    let token = cancel.map(CancelToken::token).unwrap_or_default();
    env.spawn_future(async move {
        let body = origin::open_body(origin::default_pool(), &req, offset, length, content_length, &token)
            .await
            .map_err(to_napi)?;
        Ok(OriginBody { inner: Arc::new(Mutex::new(Some(body))), cancel: token })
    })
    .map_err(status)
}

/// An open response body; reads are sequential (a second read waits for the first).
#[napi]
pub struct OriginBody {
    inner: Arc<Mutex<Option<origin::OriginBody>>>,
    cancel: cancel::CancelToken,
}

#[napi]
impl OriginBody {
    /// Fills `dst` with the next `dst.length` body bytes; the Buffer must not be touched until
    /// the promise settles. After the last byte the connection goes back to the pool.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn read<'e>(&self, env: &'e Env, mut dst: Buffer) -> Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        let token = self.cancel.clone();
        env.spawn_future(async move {
            let mut guard = inner.lock().await;
            let Some(body) = guard.as_mut() else {
                return Err(to_napi(CoreError::new(ErrorCode::InvalidArgument, "origin body is closed")));
            };
            let r = body.read_exact(dst.as_mut(), &token).await;
            if r.is_err() {
                // A failed read leaves the framing unknown: the connection is never reused.
                guard.take();
                return r.map_err(to_napi);
            }
            if body.remaining() == 0 {
                if let Some(b) = guard.take() {
                    b.finish(origin::default_pool()).await.map_err(to_napi)?;
                }
            }
            Ok(())
        })
        .map_err(status)
    }

    /// Bytes of the range not read yet.
    #[napi(getter)]
    pub fn remaining(&self) -> i64 {
        self.inner.try_lock().ok().and_then(|g| g.as_ref().map(|b| b.remaining() as i64)).unwrap_or(0)
    }

    /// Drops the connection (unless the body was read to its end, when it is pooled already).
    #[napi]
    pub fn close(&self) {
        self.cancel.cancel();
        if let Ok(mut g) = self.inner.try_lock() {
            g.take();
        }
    }
}
