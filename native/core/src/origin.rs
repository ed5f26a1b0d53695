//! Origin client: fetches one piece from a plain-HTTP origin with a ranged `GET` and lands it in
//! the task store, so back-to-source bytes never pass through JavaScript. The body is read
//! straight into a pooled aligned piece buffer and hashed chunk by chunk as it arrives, then
//! written like any verified piece (O_DIRECT when the store uses it).
//!
//! The caller (TypeScript) resolves the host name, applies the SSRF policy, follows redirects
//! and decides retries; this module only ever connects to the socket address it is given.
//! Connections are kept alive and pooled per address; any error, `Connection: close`, a body
//! delimited by the close, or stray bytes after a response retire the connection instead.

use crate::aligned::PIECE_POOL;
use crate::cancel::CancelToken;
use crate::digest::{self, Hasher};
use crate::error::{BackendAnswer, CoreError, ErrorCode, Result};
use crate::store::{now_ms, PieceRecord, PieceStore, Prepared, WriteMeta};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted in a response head.
const MAX_RESPONSE_HEADERS: usize = 128;
const MAX_PATH: usize = 32 * 1024;
const MAX_REQUEST_HEADERS: usize = 100;
const MAX_HEADER_VALUE: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) and total trailer bytes of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Socket reads land in the piece buffer this many bytes at a time, each hashed right away.
const RECV_CHUNK: usize = 1 << 20;
/// Buffer for the response head and chunk framing; body bytes bypass it.
const IO_BUF: usize = 16 * 1024;

/// Request headers this client writes itself (or must not send): a caller passing one is a bug.
/// The preconditions belong to the pin (`OriginRequest::pin`): a caller's own would fight it.
const RESERVED: &[&str] = &[
    "host",
    "range",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "if-match",
    "if-unmodified-since",
    "if-range",
];

/// The version of the origin's content a task is pinned to, from the first answer the task
/// got (see the daemon's `backend/pin.ts`). Every ranged GET carries it as a precondition, so
/// an origin that honours preconditions refuses (412) rather than sending another version's
/// bytes, and every answer's validators are compared with it, for origins that ignore them:
/// a task never mixes two versions of the content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    /// A strong ETag (quotes included), sent as `If-Match` and compared with every answer's.
    pub etag: Option<String>,
    /// Last-Modified as the origin wrote it: sent as `If-Unmodified-Since` when there is no
    /// strong ETag (the weaker pin: one-second resolution), compared with every answer's.
    pub last_modified: Option<String>,
}

impl Pin {
    /// The precondition header for the pin, if it has a validator.
    fn precondition(&self) -> Result<Option<(&'static str, &str)>> {
        let header = match (&self.etag, &self.last_modified) {
            (Some(etag), _) => {
                // If-Match compares strongly: a weak tag there would make every answer a 412.
                if etag.is_empty() || etag.starts_with("W/") {
                    return Err(invalid(format!("pinned ETag {etag:?} is not a strong entity tag")));
                }
                ("If-Match", etag.as_str())
            }
            (None, Some(date)) => ("If-Unmodified-Since", date.as_str()),
            (None, None) => return Ok(None),
        };
        if header.1.trim().is_empty() || !valid_value(header.1) {
            return Err(invalid(format!("invalid pinned validator {:?}", header.1)));
        }
        Ok(Some(header))
    }

    /// Why an accepted answer is not of the pinned version, if it is not: a validator both
    /// the pin and the answer carry differs. A validator the answer leaves out proves nothing
    /// either way; the precondition the origin evaluated vouches for it then.
    fn mismatch(&self, head: &Head) -> Option<String> {
        let checks = [("ETag", "etag", &self.etag), ("Last-Modified", "last-modified", &self.last_modified)];
        for (label, name, pinned) in checks {
            let (Some(want), Some(got)) = (pinned, head.first(name)) else { continue };
            if got.trim() != want.trim() {
                return Some(format!(
                    "origin content changed: the task is pinned to {label} {want}, the origin now answers {label} {}",
                    got.trim()
                ));
            }
        }
        None
    }

    /// The pin as a phrase for error messages.
    fn describe(&self) -> String {
        match (&self.etag, &self.last_modified) {
            (Some(etag), _) => format!("If-Match {etag}"),
            (None, Some(date)) => format!("If-Unmodified-Since {date}"),
            (None, None) => "no precondition".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// The origin's resolved address; never a name (DNS and the SSRF check happen in TS).
    pub addr: SocketAddr,
    /// `Host` header value (`name[:port]`).
    pub host: String,
    /// Origin-form request target: path and query, starting with `/`.
    pub path: String,
    /// Extra request headers (user agent, credentials, …).
    pub headers: Vec<(String, String)>,
    /// The content version every answer must be of; `Pin::default()` for an unpinned task.
    pub pin: Pin,
    pub number: u32,
    pub connect_timeout: Duration,
    /// Bound on each wait for the origin (send, response head, every body read).
    pub read_timeout: Duration,
}

/// Counters of the process-wide pool, for tests and `damselfly doctor`-style reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginStats {
    pub connects: u64,
    pub reuses: u64,
    pub pieces: u64,
    pub bytes: u64,
}

/// Idle keep-alive connections per origin address.
pub struct OriginPool {
    idle: Mutex<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
    max_idle_per_addr: usize,
    idle_timeout: Duration,
    connects: AtomicU64,
    reuses: AtomicU64,
    pieces: AtomicU64,
    bytes: AtomicU64,
}

impl Default for OriginPool {
    fn default() -> Self {
        Self::new(16, Duration::from_secs(30))
    }
}

impl OriginPool {
    pub fn new(max_idle_per_addr: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_addr,
            idle_timeout,
            connects: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
            pieces: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// A pooled connection that still looks usable: not idle too long, not closed by the
    /// origin meanwhile (a readable EOF), and with no unsolicited bytes waiting.
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        self.expire(&mut idle);
        let list = idle.get_mut(&addr)?;
        while let Some((s, at)) = list.pop() {
            if at.elapsed() >= self.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match s.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(s),
                _ => continue,
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            self.expire(&mut idle);
            let list = idle.entry(addr).or_default();
            if list.len() < self.max_idle_per_addr {
                list.push((s, Instant::now()));
            }
        }
    }

    /// Closes the connections idle past the timeout, of every origin, and forgets origins with
    /// none left. Expired ones were closed only when their own origin was used again, so a
    /// daemon at rest kept up to `max_idle_per_addr` sockets to every origin it ever fetched
    /// from, and the map kept an entry per origin forever.
    fn expire(&self, idle: &mut HashMap<SocketAddr, Vec<(TcpStream, Instant)>>) {
        idle.retain(|_, list| {
            list.retain(|(_, at)| at.elapsed() < self.idle_timeout);
            !list.is_empty()
        });
    }

    /// `expire` on a timer, for when no download comes to do it.
    pub fn prune(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            self.expire(&mut idle);
        }
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)
    }

    pub fn stats(&self) -> OriginStats {
        OriginStats {
            connects: self.connects.load(Ordering::Relaxed),
            reuses: self.reuses.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Process-wide pool used by the binding.
pub fn default_pool() -> &'static OriginPool {
    static POOL: std::sync::OnceLock<OriginPool> = std::sync::OnceLock::new();
    static REAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let pool = POOL.get_or_init(OriginPool::default);
    // The reaper starts with the first use from inside the runtime (a call from outside one,
    // origin_stats, leaves it for later).
    if !REAPER.load(Ordering::Acquire) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            if !REAPER.swap(true, Ordering::AcqRel) {
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(pool.idle_timeout / 2);
                    loop {
                        tick.tick().await;
                        pool.prune();
                    }
                });
            }
        }
    }
    pool
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::InvalidArgument, msg)
}

fn protocol(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::Protocol, msg)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field values may hold visible ASCII, spaces, tabs and non-ASCII text, never CR, LF, NUL or
/// other controls (which would let a value smuggle a header or a second request).
fn valid_value(v: &str) -> bool {
    v.len() <= MAX_HEADER_VALUE && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The request head; every caller-supplied part is validated before a byte is sent.
pub fn build_request(req: &OriginRequest, offset: u64, length: u64) -> Result<Vec<u8>> {
    if length == 0 {
        return Err(invalid("cannot request an empty range"));
    }
    let host_ok = !req.host.is_empty()
        && req.host.len() <= 1024
        && req.host.bytes().all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b));
    if !host_ok {
        return Err(invalid(format!("invalid Host {:?}", req.host)));
    }
    let path_ok =
        req.path.starts_with('/') && req.path.len() <= MAX_PATH && req.path.bytes().all(|b| b.is_ascii_graphic());
    if !path_ok {
        return Err(invalid(format!("invalid request path {:?} (must be origin-form, percent-encoded)", req.path)));
    }
    if req.headers.len() > MAX_REQUEST_HEADERS {
        return Err(invalid(format!("too many request headers ({})", req.headers.len())));
    }
    let end = offset.checked_add(length - 1).ok_or_else(|| invalid(format!("range {offset}+{length} overflows")))?;
    let mut out = Vec::with_capacity(256 + req.path.len());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(req.host.as_bytes());
    out.extend_from_slice(format!("\r\nRange: bytes={offset}-{end}\r\n").as_bytes());
    if let Some((name, value)) = req.pin.precondition()? {
        out.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
    }
    for (name, value) in &req.headers {
        if name.is_empty() || name.len() > 256 || !name.bytes().all(is_tchar) {
            return Err(invalid(format!("invalid header name {name:?}")));
        }
        if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(invalid(format!("header {name:?} is set by the origin client, not by the caller")));
        }
        if !valid_value(value) {
            return Err(invalid(format!("invalid value for header {name:?} (control characters or too long)")));
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.trim_matches(|c| c == ' ' || c == '\t').as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// A parsed response head.
#[derive(Debug, Clone)]
struct Head {
    status: u16,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    version: u8,
    /// In arrival order, names lower-cased.
    headers: Vec<(String, String)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn first<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next()
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection may carry another request after this response.
    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.version >= 1 || self.has_token("connection", "keep-alive")
    }

    /// Headers as the JS side sees them: one entry per name, repeats joined with ", ".
    fn answer(&self) -> BackendAnswer {
        let mut headers: Vec<(String, String)> = Vec::new();
        for (n, v) in &self.headers {
            match headers.iter_mut().find(|(k, _)| k == n) {
                Some((_, acc)) => {
                    acc.push_str(", ");
                    acc.push_str(v);
                }
                None => headers.push((n.clone(), v.clone())),
            }
        }
        BackendAnswer { status: self.status, headers }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Neither Content-Length nor Transfer-Encoding: the body ends when the origin closes.
    Close,
}

fn framing(h: &Head) -> Result<Framing> {
    let codings: Vec<String> = h
        .values("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if !codings.is_empty() {
        if codings.iter().all(|c| c == "chunked") && codings.len() == 1 {
            return Ok(Framing::Chunked);
        }
        return Err(CoreError::new(
            ErrorCode::Unsupported,
            format!("origin used transfer-encoding {:?}; only chunked is supported", codings.join(", ")),
        ));
    }
    let mut length: Option<u64> = None;
    for v in h.values("content-length") {
        let v = v.trim();
        let n = if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            None
        };
        let Some(n) = n else { return Err(protocol(format!("malformed Content-Length {v:?}"))) };
        if length.is_some_and(|l| l != n) {
            return Err(protocol("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Parses `bytes first-last/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let total = if total.trim() == "*" { None } else { Some(num(total)?) };
    Some((num(a)?, num(b)?, total))
}

/// Parses a response head from the start of `buf`: `Some((head bytes, head))` once the head is
/// complete, `None` while more bytes are needed. Pure, so the fuzz tests reach it without a socket.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut hs);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let headers = resp
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            Ok(Some((n, Head { status: resp.code.unwrap_or(0), version: resp.version.unwrap_or(1), headers })))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            Err(protocol(format!("origin sent more than {MAX_RESPONSE_HEADERS} headers")))
        }
        Err(e) => Err(protocol(format!("malformed response from origin: {e}"))),
    }
}

/// A connection with a small read buffer for the head and chunk framing; body bytes are read
/// straight into the piece buffer once the buffered ones are used up.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    read_timeout: Duration,
    /// Any byte of a response arrived (a reused connection that fails before this is stale).
    got_any: bool,
}

impl Conn {
    fn new(sock: TcpStream, read_timeout: Duration) -> Self {
        Self { sock, buf: vec![0u8; IO_BUF], pos: 0, end: 0, read_timeout, got_any: false }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    async fn sock_read(&mut self, dst: &mut [u8]) -> Result<usize> {
        let n = tokio::time::timeout(self.read_timeout, self.sock.read(dst))
            .await
            .map_err(|_| CoreError::new(ErrorCode::Timeout, "origin did not answer within the read timeout"))?
            .map_err(|e| CoreError::io("read from origin", e))?;
        if n > 0 {
            self.got_any = true;
        }
        Ok(n)
    }

    /// Reads more into the buffer (growing it up to `limit` bytes); 0 at EOF.
    async fn fill(&mut self, limit: usize) -> Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= limit {
                return Err(protocol("response framing exceeds the size limit"));
            }
            let grown = (self.buf.len() * 2).min(limit);
            self.buf.resize(grown, 0);
        }
        let mut tmp = std::mem::take(&mut self.buf);
        let end = self.end;
        let r = self.sock_read(&mut tmp[end..]).await;
        self.buf = tmp;
        let n = r?;
        self.end += n;
        Ok(n)
    }

    async fn write_request(&mut self, request: &[u8]) -> Result<()> {
        tokio::time::timeout(self.read_timeout, self.sock.write_all(request))
            .await
            .map_err(|_| CoreError::new(ErrorCode::Timeout, "sending the request to the origin timed out"))?
            .map_err(|e| CoreError::io("send request to origin", e))
    }

    /// Reads and parses one response head (status line and headers).
    async fn read_head(&mut self) -> Result<Head> {
        loop {
            if let Some((n, head)) = parse_head(&self.buf[self.pos..self.end])? {
                self.pos += n;
                return Ok(head);
            }
            if self.end - self.pos >= MAX_HEAD {
                return Err(protocol(format!("origin's response head exceeds {} KiB", MAX_HEAD / 1024)));
            }
            if self.fill(MAX_HEAD + IO_BUF).await? == 0 {
                return Err(CoreError::new(
                    ErrorCode::Io,
                    if self.got_any {
                        "origin closed the connection in the middle of the response head"
                    } else {
                        "origin closed the connection without answering"
                    },
                ));
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF), at most `max` bytes.
    async fn read_line(&mut self, max: usize) -> Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buffered().windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.end - self.pos > max {
                return Err(protocol("chunked framing line is too long"));
            }
            if self.fill(max + 2).await? == 0 {
                return Err(CoreError::new(ErrorCode::Io, "origin closed the connection inside the chunked framing"));
            }
        }
    }

    /// Up to `dst.len()` body bytes: buffered ones first, then straight from the socket.
    async fn read_into(&mut self, dst: &mut [u8]) -> Result<usize> {
        if self.pos < self.end {
            let n = dst.len().min(self.end - self.pos);
            dst[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.sock_read(dst).await
    }
}

/// The piece buffer being filled, with its digests computed on the way in.
struct Body<'a> {
    dst: &'a mut [u8],
    got: usize,
    crc: crc32fast::Hasher,
    extra: Option<Hasher>,
}

impl Body<'_> {
    async fn read_exact(&mut self, conn: &mut Conn, n: usize) -> Result<()> {
        let stop = self.got + n;
        while self.got < stop {
            let end = (self.got + RECV_CHUNK).min(stop);
            let k = conn.read_into(&mut self.dst[self.got..end]).await?;
            if k == 0 {
                return Err(CoreError::new(
                    ErrorCode::Io,
                    format!("origin closed the connection after {} of {} bytes", self.got, self.dst.len()),
                ));
            }
            let got = &self.dst[self.got..self.got + k];
            self.crc.update(got);
            if let Some(h) = self.extra.as_mut() {
                h.update(got);
            }
            self.got += k;
        }
        Ok(())
    }

    async fn read_to_close(&mut self, conn: &mut Conn) -> Result<()> {
        let want = self.dst.len();
        self.read_exact(conn, want).await?;
        let mut probe = [0u8; 1];
        if conn.read_into(&mut probe).await? != 0 {
            return Err(protocol(format!("origin sent more than the {want} bytes asked for")));
        }
        Ok(())
    }

    async fn read_chunked(&mut self, conn: &mut Conn) -> Result<()> {
        let want = self.dst.len();
        loop {
            let line = conn.read_line(MAX_CHUNK_LINE).await?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            let left = (want - self.got) as u64;
            if size > left {
                return Err(protocol(format!("origin sent more than the {want} bytes asked for")));
            }
            self.read_exact(conn, size as usize).await?;
            if !conn.read_line(2).await?.is_empty() {
                return Err(protocol("chunk data is not followed by CRLF"));
            }
        }
        let mut trailers = 0usize;
        loop {
            let line = conn.read_line(MAX_CHUNK_LINE).await?;
            if line.is_empty() {
                break;
            }
            trailers += line.len() + 2;
            if trailers > MAX_TRAILERS {
                return Err(protocol("chunked trailers are too large"));
            }
        }
        if self.got != want {
            return Err(CoreError::new(ErrorCode::Io, format!("origin sent {} of {want} bytes", self.got)));
        }
        Ok(())
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = size.trim_ascii();
    let ok = !size.is_empty() && size.len() <= 15 && size.iter().all(u8::is_ascii_hexdigit);
    let parsed = if ok { std::str::from_utf8(size).ok().and_then(|s| u64::from_str_radix(s, 16).ok()) } else { None };
    parsed.ok_or_else(|| protocol(format!("malformed chunk size line {:?}", String::from_utf8_lossy(line))))
}

async fn connect(pool: &OriginPool, req: &OriginRequest) -> Result<Conn> {
    let s = tokio::time::timeout(req.connect_timeout, TcpStream::connect(req.addr))
        .await
        .map_err(|_| CoreError::new(ErrorCode::Timeout, format!("connect to origin {} timed out", req.addr)))?
        .map_err(|e| CoreError::io(&format!("connect to origin {}", req.addr), e))?;
    let _ = s.set_nodelay(true);
    pool.connects.fetch_add(1, Ordering::Relaxed);
    Ok(Conn::new(s, req.read_timeout))
}

/// Sends the request and reads the final response head (skipping 1xx interim responses).
async fn exchange(conn: &mut Conn, request: &[u8]) -> Result<Head> {
    conn.write_request(request).await?;
    loop {
        let head = conn.read_head().await?;
        match head.status {
            101 => return Err(protocol("origin switched protocols on a plain GET")),
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
}

/// Fetches piece `req.number` of `store` from the origin; resolves once it is durable and
/// marked finished. A piece already finished is returned as it is.
pub async fn fetch_from_origin(
    pool: &OriginPool,
    store: &Arc<PieceStore>,
    req: &OriginRequest,
    cancel: &CancelToken,
) -> Result<PieceRecord> {
    if let Some(r) = store.piece(req.number) {
        return Ok(r);
    }
    tokio::select! {
        r = fetch_inner(pool, store, req) => r,
        _ = cancel.cancelled() => Err(CoreError::new(ErrorCode::Aborted, "origin fetch was aborted")),
    }
}

/// Sends a ranged GET for `offset..offset+length` (over a pooled connection when one is idle)
/// and checks the answer is exactly that range of a `content_length`-byte content.
async fn open_range(
    pool: &OriginPool,
    req: &OriginRequest,
    offset: u64,
    length: u64,
    content_length: u64,
) -> Result<(Conn, Head, Framing)> {
    let request = build_request(req, offset, length)?;
    // An idle connection the origin dropped meanwhile fails before its first response byte;
    // that earns one retry on a fresh connection (the request was never processed).
    let (conn, head) = match pool.take(req.addr) {
        Some(s) => {
            pool.reuses.fetch_add(1, Ordering::Relaxed);
            let mut c = Conn::new(s, req.read_timeout);
            match exchange(&mut c, &request).await {
                Ok(h) => (c, h),
                Err(e) if !c.got_any && matches!(e.code, ErrorCode::Io) => {
                    let mut c = connect(pool, req).await?;
                    let h = exchange(&mut c, &request).await?;
                    (c, h)
                }
                Err(e) => return Err(e),
            }
        }
        None => {
            let mut c = connect(pool, req).await?;
            let h = exchange(&mut c, &request).await?;
            (c, h)
        }
    };
    let framing = accept_answer(&head, &req.pin, offset, length, content_length)?;
    Ok((conn, head, framing))
}

/// Whether a response head answers the ranged GET for bytes `offset..offset+length` of
/// content pinned to `pin` and `content_length` bytes long, and how its body is framed. Pure,
/// so the fuzz tests reach it without a socket.
fn accept_answer(head: &Head, pin: &Pin, offset: u64, length: u64, content_length: u64) -> Result<Framing> {
    let last = offset + length - 1;
    let changed_length = |now: u64| {
        CoreError::origin_changed(
            format!("origin content changed: it is now {now} bytes long, the task is pinned to {content_length}"),
            head.answer(),
        )
    };
    match head.status {
        206 => {
            let cr = head.first("content-range").unwrap_or_default();
            match parse_content_range(cr) {
                Some((a, b, total)) if a == offset && b == last && total.is_none_or(|t| t == content_length) => {}
                Some((a, b, Some(total))) if a == offset && b == last => return Err(changed_length(total)),
                _ => {
                    return Err(protocol(format!(
                        "origin answered 206 with Content-Range {cr:?} to a request for bytes {offset}-{last}"
                    )))
                }
            }
        }
        // An origin that ignores Range is fine only when the piece is the whole content.
        200 if offset == 0 && length == content_length => {}
        200 => {
            return Err(CoreError::backend(
                "origin does not support Range requests (answered 200)".to_string(),
                head.answer(),
            ))
        }
        // The pin's precondition failed: the origin has another version now.
        412 => {
            let now = match (head.first("etag"), head.first("last-modified")) {
                (Some(etag), _) => format!("; it now has ETag {}", etag.trim()),
                (None, Some(date)) => format!("; it now has Last-Modified {}", date.trim()),
                (None, None) => String::new(),
            };
            return Err(CoreError::origin_changed(
                format!("origin content changed: it answered 412 Precondition Failed to {}{now}", pin.describe()),
                head.answer(),
            ));
        }
        s => return Err(CoreError::backend(format!("origin answered {s}"), head.answer())),
    }
    if let Some(why) = pin.mismatch(head) {
        return Err(CoreError::origin_changed(why, head.answer()));
    }
    let framing = framing(head)?;
    if let Framing::Length(n) = framing {
        if n != length {
            // A whole-content 200 of another length is another version, not a framing fault.
            if head.status == 200 {
                return Err(changed_length(n));
            }
            return Err(protocol(format!("origin sent Content-Length {n} for a {length}-byte range")));
        }
    }
    Ok(framing)
}

async fn fetch_inner(pool: &OriginPool, store: &Arc<PieceStore>, req: &OriginRequest) -> Result<PieceRecord> {
    let started_ms = now_ms();
    let (offset, length) = store.piece_range(req.number)?;
    let (mut conn, head, framing) = open_range(pool, req, offset, length, store.info().content_length).await?;
    let mut buf = PIECE_POOL
        .get(length as usize)
        .ok_or_else(|| CoreError::new(ErrorCode::Io, "cannot allocate a piece buffer"))?;
    let (crc, extra) = {
        let mut body = Body {
            dst: buf.as_mut_slice(),
            got: 0,
            crc: crc32fast::Hasher::new(),
            extra: store.info().extra_digest.map(Hasher::new),
        };
        match framing {
            Framing::Length(n) => body.read_exact(&mut conn, n as usize).await?,
            Framing::Chunked => body.read_chunked(&mut conn).await?,
            Framing::Close => body.read_to_close(&mut conn).await?,
        }
        (body.crc, body.extra)
    };
    // Bytes left over would be the start of something we did not ask for: never reuse then.
    if head.keep_alive() && framing != Framing::Close && conn.pos == conn.end {
        pool.put(req.addr, conn.sock);
    }
    pool.pieces.fetch_add(1, Ordering::Relaxed);
    pool.bytes.fetch_add(length, Ordering::Relaxed);
    let prepared = Prepared { digest: digest::crc32_string(crc.finalize()), extra_digest: extra.map(Hasher::finish) };
    store
        .write_prepared(
            req.number,
            buf,
            prepared,
            WriteMeta { parent_id: String::new(), created_at_ms: Some(started_ms) },
        )
        .await
}

/// One ranged response body read in order, a caller-sized slice at a time: the streaming
/// counterpart of `fetch_from_origin` for a caller that wants the bytes themselves (to pass
/// them on while it stores them) and one request for many pieces instead of one per piece.
pub struct OriginBody {
    conn: Conn,
    framing: Framing,
    keep_alive: bool,
    addr: SocketAddr,
    /// Body bytes not yet read.
    left: u64,
    /// Chunked framing: bytes left in the current chunk.
    chunk_left: u64,
}

/// Opens `offset..offset+length` of the origin's content (`content_length` bytes in all).
pub async fn open_body(
    pool: &OriginPool,
    req: &OriginRequest,
    offset: u64,
    length: u64,
    content_length: u64,
    cancel: &CancelToken,
) -> Result<OriginBody> {
    let (conn, head, framing) = tokio::select! {
        r = open_range(pool, req, offset, length, content_length) => r?,
        _ = cancel.cancelled() => return Err(CoreError::new(ErrorCode::Aborted, "origin fetch was aborted")),
    };
    Ok(OriginBody { conn, framing, keep_alive: head.keep_alive(), addr: req.addr, left: length, chunk_left: 0 })
}

impl OriginBody {
    /// Body bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Fills `dst` entirely with the next body bytes.
    pub async fn read_exact(&mut self, dst: &mut [u8], cancel: &CancelToken) -> Result<()> {
        if dst.len() as u64 > self.left {
            return Err(invalid(format!("asked for {} bytes, {} are left in the body", dst.len(), self.left)));
        }
        tokio::select! {
            r = self.fill(dst) => r,
            _ = cancel.cancelled() => Err(CoreError::new(ErrorCode::Aborted, "origin fetch was aborted")),
        }
    }

    async fn fill(&mut self, dst: &mut [u8]) -> Result<()> {
        let mut got = 0usize;
        while got < dst.len() {
            if self.framing == Framing::Chunked && self.chunk_left == 0 {
                let line = self.conn.read_line(MAX_CHUNK_LINE).await?;
                let size = parse_chunk_size(&line)?;
                if size == 0 || size > self.left {
                    return Err(protocol(format!("origin's chunked body does not hold the {} bytes left", self.left)));
                }
                self.chunk_left = size;
            }
            let mut want = dst.len() - got;
            if self.framing == Framing::Chunked {
                want = want.min(usize::try_from(self.chunk_left).unwrap_or(usize::MAX));
            }
            let end = got + want.min(RECV_CHUNK);
            let k = self.conn.read_into(&mut dst[got..end]).await?;
            if k == 0 {
                return Err(CoreError::new(
                    ErrorCode::Io,
                    format!("origin closed the connection with {} body bytes still to come", self.left),
                ));
            }
            got += k;
            self.left -= k as u64;
            if self.framing == Framing::Chunked {
                self.chunk_left -= k as u64;
                if self.chunk_left == 0 && !self.conn.read_line(2).await?.is_empty() {
                    return Err(protocol("chunk data is not followed by CRLF"));
                }
            }
        }
        Ok(())
    }

    /// Ends a fully read body: the connection goes back to the pool when it can carry another
    /// request (chunked trailers consumed, nothing stray buffered); otherwise it is closed.
    pub async fn finish(mut self, pool: &OriginPool) -> Result<()> {
        if self.left != 0 {
            return Ok(());
        }
        if self.framing == Framing::Chunked {
            let line = self.conn.read_line(MAX_CHUNK_LINE).await?;
            if parse_chunk_size(&line)? != 0 {
                return Err(protocol("origin sent more than the bytes asked for"));
            }
            let mut trailers = 0usize;
            loop {
                let line = self.conn.read_line(MAX_CHUNK_LINE).await?;
                if line.is_empty() {
                    break;
                }
                trailers += line.len() + 2;
                if trailers > MAX_TRAILERS {
                    return Err(protocol("chunked trailers are too large"));
                }
            }
        }
        if self.keep_alive && self.framing != Framing::Close && self.conn.pos == self.conn.end {
            pool.put(self.addr, self.conn.sock);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreOptions, SyncPolicy, Tier};
    use crate::testutil::pattern;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    fn open(root: &Path, task: &str, content: u64, piece: u64) -> Arc<PieceStore> {
        PieceStore::open(StoreOptions {
            root: root.to_path_buf(),
            task_id: task.to_string(),
            content_length: content,
            piece_length: piece,
            tier: Tier::Disk,
            direct: None,
            sync: SyncPolicy::Never,
            seal: None,
            extra_digest: Some(crate::digest::Algorithm::Sha256),
        })
        .unwrap()
    }

    /// What the test origin does with one request: bytes to send, then close or keep going.
    struct Reply {
        bytes: Vec<u8>,
        close: bool,
    }

    type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

    struct TestOrigin {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    /// A tiny scripted HTTP/1.1 server on loopback.
    async fn origin(handler: Handler) -> TestOrigin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (acc, reqs) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let (handler, reqs) = (handler.clone(), reqs.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end);
                        reqs.lock().unwrap().push(head.clone());
                        let r = handler(&head);
                        if s.write_all(&r.bytes).await.is_err() || r.close {
                            let _ = s.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        TestOrigin { addr, accepted, requests }
    }

    /// A 206 reply with the requested range of `content` in chunks of `sizes` (cycled), hex
    /// sizes in upper case on even chunks when `alternate`, `ext` on even chunks (on every chunk
    /// when not `alternate`), ended by a trailer.
    fn chunked_reply(content: &[u8], head: &str, sizes: &[usize], ext: &str, alternate: bool) -> Reply {
        let (a, b) = range_of(head);
        let mut out = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nTransfer-Encoding: chunked\r\n\r\n",
            content.len()
        )
        .into_bytes();
        let body = &content[a..=b];
        let mut off = 0;
        for (i, size) in sizes.iter().cycle().enumerate() {
            if off == body.len() {
                break;
            }
            let size = (*size).min(body.len() - off);
            let line = match (alternate, i % 2 == 0) {
                (true, true) => format!("{size:X}{ext}\r\n"),
                (true, false) => format!("{size:X}\r\n"),
                (false, _) => format!("{size:x}{ext}\r\n"),
            };
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(&body[off..off + size]);
            out.extend_from_slice(b"\r\n");
            off += size;
        }
        out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
        Reply { bytes: out, close: false }
    }

    fn range_of(head: &str) -> (usize, usize) {
        let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("range: bytes=")).unwrap();
        let (a, b) = line["range: bytes=".len()..].split_once('-').unwrap();
        (a.parse().unwrap(), b.trim().parse().unwrap())
    }

    fn partial(content: &[u8], head: &str, extra: &str) -> Vec<u8> {
        let (a, b) = range_of(head);
        let mut out = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\nContent-Length: {}\r\n{extra}\r\n",
            content.len(),
            b - a + 1
        )
        .into_bytes();
        out.extend_from_slice(&content[a..=b]);
        out
    }

    fn request(addr: SocketAddr, number: u32) -> OriginRequest {
        OriginRequest {
            addr,
            host: format!("origin.test:{}", addr.port()),
            path: "/file.bin?x=1".into(),
            headers: vec![("User-Agent".into(), "damselfly-test".into()), ("X-Token".into(), "s3cret".into())],
            pin: Pin::default(),
            number,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
        }
    }

    const PIECE: u64 = 64 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_idle_connections_close_for_every_origin() {
        // Two origins, one connection each put back idle; once past the idle timeout a prune
        // (what the reaper runs) closes both and forgets both origins.
        let pool = OriginPool::new(4, Duration::from_millis(50));
        let mut held = Vec::new();
        for _ in 0..2 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let c = TcpStream::connect(addr).await.unwrap();
            let (peer, _) = l.accept().await.unwrap();
            held.push(peer);
            pool.put(addr, c);
        }
        assert_eq!(pool.idle_count(), 2);
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.prune();
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.idle.lock().unwrap().is_empty());
        // The far ends see the close: the sockets were dropped, not just forgotten.
        for mut p in held {
            let mut b = [0u8; 1];
            assert_eq!(p.read(&mut b).await.unwrap(), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranged_pieces_over_one_kept_alive_connection() {
        let content = Arc::new(pattern(3 * PIECE as usize + 1000, 1));
        let c = content.clone();
        let o = origin(Arc::new(move |h| Reply { bytes: partial(&c, h, ""), close: false })).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "range", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        for n in [3u32, 0, 1, 2] {
            let rec = fetch_from_origin(&pool, &store, &request(o.addr, n), &CancelToken::new()).await.unwrap();
            let (off, len) = store.piece_range(n).unwrap();
            let want = &content[off as usize..(off + len) as usize];
            assert_eq!(rec.digest, crate::digest::digest(crate::digest::Algorithm::Crc32, want));
            assert_eq!(rec.extra_digest, Some(crate::digest::digest(crate::digest::Algorithm::Sha256, want)));
            assert_eq!(rec.parent_id, "");
        }
        assert_eq!(std::fs::read(&store.info().content_path).unwrap(), *content);
        assert_eq!(o.accepted.load(Ordering::SeqCst), 1, "one connection serves every piece");
        assert_eq!(pool.stats(), OriginStats { connects: 1, reuses: 3, pieces: 4, bytes: content.len() as u64 });
        let reqs = o.requests.lock().unwrap().clone();
        assert!(reqs[0].starts_with("GET /file.bin?x=1 HTTP/1.1\r\n"), "{}", reqs[0]);
        assert!(reqs[0].contains(&format!("\r\nHost: origin.test:{}\r\n", o.addr.port())));
        assert!(reqs[0].contains(&format!("\r\nRange: bytes={}-{}\r\n", 3 * PIECE, 3 * PIECE + 999)));
        assert!(reqs[0].contains("\r\nX-Token: s3cret\r\n"));
        // Finished pieces are not fetched again.
        fetch_from_origin(&pool, &store, &request(o.addr, 1), &CancelToken::new()).await.unwrap();
        assert_eq!(o.requests.lock().unwrap().len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunked_bodies_with_extensions_and_trailers() {
        let content = Arc::new(pattern(2 * PIECE as usize, 2));
        let c = content.clone();
        let o = origin(Arc::new(move |h| chunked_reply(&c, h, &[1, 4095, 30000, 7], ";name=value", true))).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "chunked", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        for n in 0..2 {
            fetch_from_origin(&pool, &store, &request(o.addr, n), &CancelToken::new()).await.unwrap();
        }
        assert_eq!(std::fs::read(&store.info().content_path).unwrap(), *content);
        assert_eq!(o.accepted.load(Ordering::SeqCst), 1, "a chunked body ends cleanly and keeps the connection");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_statuses_carry_status_and_headers() {
        let o = origin(Arc::new(|_| Reply {
            bytes: b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nX-Reason: gone\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nnot found\n"
                .to_vec(),
            close: false,
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "missing", 2 * PIECE, PIECE);
        let e = fetch_from_origin(&OriginPool::default(), &store, &request(o.addr, 0), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Backend);
        assert_eq!(e.message, "origin answered 404");
        let answer = e.backend.unwrap();
        assert_eq!(answer.status, 404);
        assert!(answer.headers.contains(&("x-reason".into(), "gone".into())));
        assert!(answer.headers.contains(&("set-cookie".into(), "a=1, b=2".into())));
        assert!(store.piece(0).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_content_200_is_accepted_only_for_a_single_piece() {
        let content = Arc::new(pattern(5000, 3));
        let c = content.clone();
        let o = origin(Arc::new(move |_| {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", c.len()).into_bytes();
            out.extend_from_slice(&c);
            Reply { bytes: out, close: false }
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let one = open(dir.path(), "one-piece", 5000, PIECE);
        fetch_from_origin(&OriginPool::default(), &one, &request(o.addr, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(std::fs::read(&one.info().content_path).unwrap(), *content);
        let two = open(dir.path(), "two-pieces", 5000, 4096);
        let e = fetch_from_origin(&OriginPool::default(), &two, &request(o.addr, 0), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Backend);
        assert_eq!(e.backend.map(|a| a.status), Some(200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_and_wrong_ranges_fail_without_marking_the_piece() {
        let content = Arc::new(pattern(2 * PIECE as usize, 4));
        let mode = Arc::new(AtomicUsize::new(0));
        let (c, m) = (content.clone(), mode.clone());
        let o = origin(Arc::new(move |h| {
            let mut full = partial(&c, h, "");
            match m.load(Ordering::SeqCst) {
                0 => {
                    full.truncate(full.len() - 100);
                    Reply { bytes: full, close: true }
                }
                1 => Reply {
                    bytes: format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1-{PIECE}/{}\r\nContent-Length: {PIECE}\r\n\r\n", c.len())
                        .into_bytes(),
                    close: true,
                },
                2 => Reply {
                    bytes: format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/9999999\r\nContent-Length: {PIECE}\r\n\r\n", PIECE - 1)
                        .into_bytes(),
                    close: true,
                },
                3 => Reply {
                    bytes: format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{}\r\nContent-Length: 12\r\n\r\n", PIECE - 1, c.len())
                        .into_bytes(),
                    close: true,
                },
                _ => Reply { bytes: b"HTTP/1.1 206 Partial Content\r\nContent-Length: x1\r\n\r\n".to_vec(), close: true },
            }
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "bad", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        let expect =
            [ErrorCode::Io, ErrorCode::Protocol, ErrorCode::OriginChanged, ErrorCode::Protocol, ErrorCode::Protocol];
        for (i, want) in expect.iter().enumerate() {
            mode.store(i, Ordering::SeqCst);
            let e = fetch_from_origin(&pool, &store, &request(o.addr, 0), &CancelToken::new()).await.unwrap_err();
            assert_eq!(e.code, *want, "case {i}: {}", e.message);
        }
        assert!(store.piece(0).is_none());
        assert_eq!(pool.idle_count(), 0, "failed exchanges never return their connection");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_and_malformed_heads_are_refused() {
        let big = Arc::new(AtomicUsize::new(1));
        let b = big.clone();
        let o = origin(Arc::new(move |_| {
            let bytes = if b.load(Ordering::SeqCst) == 1 {
                let mut out = b"HTTP/1.1 206 Partial Content\r\n".to_vec();
                for i in 0..100 {
                    out.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                out
            } else {
                b"HTTP/1.1 2x6 Nope\r\n\r\n".to_vec()
            };
            Reply { bytes, close: true }
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "big-head", 2 * PIECE, PIECE);
        let e = fetch_from_origin(&OriginPool::default(), &store, &request(o.addr, 0), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
        assert!(e.message.contains("exceeds 64 KiB"), "{}", e.message);
        big.store(0, Ordering::SeqCst);
        let e = fetch_from_origin(&OriginPool::default(), &store, &request(o.addr, 0), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_close_and_close_delimited_bodies_are_not_reused() {
        let content = Arc::new(pattern(3 * PIECE as usize, 5));
        let count = Arc::new(AtomicUsize::new(0));
        let (c, k) = (content.clone(), count.clone());
        let o = origin(Arc::new(move |h| match k.fetch_add(1, Ordering::SeqCst) {
            0 => Reply { bytes: partial(&c, h, "Connection: close\r\n"), close: true },
            1 => {
                let (a, b) = range_of(h);
                let mut out =
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n", c.len())
                        .into_bytes();
                out.extend_from_slice(&c[a..=b]);
                Reply { bytes: out, close: true }
            }
            _ => Reply { bytes: partial(&c, h, ""), close: false },
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "close", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        for n in 0..3 {
            fetch_from_origin(&pool, &store, &request(o.addr, n), &CancelToken::new()).await.unwrap();
        }
        assert_eq!(std::fs::read(&store.info().content_path).unwrap(), *content);
        assert_eq!(o.accepted.load(Ordering::SeqCst), 3);
        assert_eq!(pool.stats().reuses, 0);
        assert_eq!(pool.idle_count(), 1, "only the kept-alive exchange returns its connection");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pooled_connection_the_origin_dropped_is_replaced() {
        let content = Arc::new(pattern(2 * PIECE as usize, 6));
        let c = content.clone();
        // Keeps the connection open after answering, then drops it: the pool must notice or retry.
        let o =
            origin(Arc::new(move |h| Reply { bytes: partial(&c, h, "Keep-Alive: timeout=1\r\n"), close: true })).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "stale", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        fetch_from_origin(&pool, &store, &request(o.addr, 0), &CancelToken::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        fetch_from_origin(&pool, &store, &request(o.addr, 1), &CancelToken::new()).await.unwrap();
        assert_eq!(std::fs::read(&store.info().content_path).unwrap(), *content);
        assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interim_responses_are_skipped() {
        let content = Arc::new(pattern(PIECE as usize * 2, 7));
        let c = content.clone();
        let o = origin(Arc::new(move |h| {
            let mut out = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".to_vec();
            out.extend_from_slice(&partial(&c, h, ""));
            Reply { bytes: out, close: false }
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "hints", content.len() as u64, PIECE);
        fetch_from_origin(&OriginPool::default(), &store, &request(o.addr, 1), &CancelToken::new()).await.unwrap();
        assert!(store.piece(1).is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_request_parts_are_refused_before_connecting() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let base = request(addr, 0);
        let cases: Vec<OriginRequest> = vec![
            OriginRequest { headers: vec![("X-A".into(), "ok\r\nX-Injected: 1".into())], ..base.clone() },
            OriginRequest { headers: vec![("X-A".into(), "nul\0".into())], ..base.clone() },
            OriginRequest { headers: vec![("Bad Name".into(), "v".into())], ..base.clone() },
            OriginRequest { headers: vec![("X-A\r\n".into(), "v".into())], ..base.clone() },
            OriginRequest { headers: vec![("range".into(), "bytes=0-".into())], ..base.clone() },
            OriginRequest { headers: vec![("Transfer-Encoding".into(), "chunked".into())], ..base.clone() },
            OriginRequest { host: "a b".into(), ..base.clone() },
            OriginRequest { host: "evil\r\nX: y".into(), ..base.clone() },
            OriginRequest { path: "no-slash".into(), ..base.clone() },
            OriginRequest { path: "/a b".into(), ..base.clone() },
            OriginRequest { path: "/a\r\nb".into(), ..base.clone() },
        ];
        for (i, r) in cases.iter().enumerate() {
            let e = build_request(r, 0, 10).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "case {i}");
        }
        assert_eq!(build_request(&base, 0, 0).unwrap_err().code, ErrorCode::InvalidArgument);
        let ok = String::from_utf8(build_request(&base, 10, 5).unwrap()).unwrap();
        assert!(
            ok.ends_with("\r\nRange: bytes=10-14\r\nUser-Agent: damselfly-test\r\nX-Token: s3cret\r\n\r\n"),
            "{ok}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancellation_and_read_timeout() {
        // Answers nothing: the request hangs until cancelled or timed out.
        let o = origin(Arc::new(|_| Reply { bytes: Vec::new(), close: false })).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "hang", 2 * PIECE, PIECE);
        let pool = OriginPool::default();
        let token = CancelToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.cancel();
        });
        let e = fetch_from_origin(&pool, &store, &request(o.addr, 0), &token).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Aborted);
        let quick = OriginRequest { read_timeout: Duration::from_millis(50), ..request(o.addr, 0) };
        let e = fetch_from_origin(&pool, &store, &quick, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        // Nothing listens on a closed port.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let e = fetch_from_origin(&pool, &store, &request(closed, 0), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pin_rides_on_every_request_as_a_precondition() {
        let content = Arc::new(pattern(2 * PIECE as usize, 8));
        let c = content.clone();
        let o = origin(Arc::new(move |h| Reply { bytes: partial(&c, h, "ETag: \"v1\"\r\n"), close: false })).await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "pinned", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        let etag = Pin { etag: Some("\"v1\"".into()), last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()) };
        fetch_from_origin(&pool, &store, &OriginRequest { pin: etag, ..request(o.addr, 0) }, &CancelToken::new())
            .await
            .unwrap();
        let date = Pin { etag: None, last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()) };
        fetch_from_origin(&pool, &store, &OriginRequest { pin: date, ..request(o.addr, 1) }, &CancelToken::new())
            .await
            .unwrap();
        let seen = o.requests.lock().unwrap().clone();
        // A strong ETag wins: If-Unmodified-Since would be ignored next to If-Match anyway.
        assert!(
            seen[0].contains("\r\nIf-Match: \"v1\"\r\n") && !seen[0].contains("If-Unmodified-Since"),
            "{}",
            seen[0]
        );
        assert!(seen[1].contains("\r\nIf-Unmodified-Since: Tue, 01 Jul 2025 10:00:00 GMT\r\n"), "{}", seen[1]);
        assert!(!seen[1].contains("If-Match"), "{}", seen[1]);
        assert_eq!(std::fs::read(&store.info().content_path).unwrap(), *content);
        // A weak tag cannot be a precondition (If-Match compares strongly); the caller may not
        // set the preconditions itself either.
        let base = request(o.addr, 0);
        let weak = OriginRequest { pin: Pin { etag: Some("W/\"v1\"".into()), last_modified: None }, ..base.clone() };
        assert_eq!(build_request(&weak, 0, 10).unwrap_err().code, ErrorCode::InvalidArgument);
        for name in ["If-Match", "if-unmodified-since", "If-Range"] {
            let own = OriginRequest { headers: vec![(name.into(), "\"x\"".into())], ..base.clone() };
            assert_eq!(build_request(&own, 0, 10).unwrap_err().code, ErrorCode::InvalidArgument, "{name}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_version_fails_with_origin_changed_and_stores_nothing() {
        let content = Arc::new(pattern(2 * PIECE as usize, 9));
        let mode = Arc::new(AtomicUsize::new(0));
        let (c, m) = (content.clone(), mode.clone());
        let o = origin(Arc::new(move |h| match m.load(Ordering::SeqCst) {
            // An origin that honours If-Match.
            0 => Reply {
                bytes: b"HTTP/1.1 412 Precondition Failed\r\nETag: \"v2\"\r\nContent-Length: 0\r\n\r\n".to_vec(),
                close: false,
            },
            // One that ignores it and sends the new version with its new tag.
            1 => Reply { bytes: partial(&c, h, "ETag: \"v2\"\r\n"), close: false },
            // Same tag, another date.
            2 => Reply {
                bytes: partial(&c, h, "ETag: \"v1\"\r\nLast-Modified: Wed, 02 Jul 2025 10:00:00 GMT\r\n"),
                close: false,
            },
            // No validators at all: nothing to compare, the precondition vouches.
            _ => Reply { bytes: partial(&c, h, ""), close: false },
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), "changed", content.len() as u64, PIECE);
        let pool = OriginPool::default();
        let pin = Pin { etag: Some("\"v1\"".into()), last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()) };
        let req = OriginRequest { pin, ..request(o.addr, 0) };
        let e = fetch_from_origin(&pool, &store, &req, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::OriginChanged, "{}", e.message);
        assert!(e.message.contains("412") && e.message.contains("If-Match \"v1\""), "{}", e.message);
        let answer = e.backend.unwrap();
        assert_eq!(answer.status, 412);
        assert!(answer.headers.contains(&("etag".into(), "\"v2\"".into())));
        mode.store(1, Ordering::SeqCst);
        let e = fetch_from_origin(&pool, &store, &req, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::OriginChanged);
        assert!(e.message.contains("ETag \"v1\"") && e.message.contains("ETag \"v2\""), "{}", e.message);
        assert_eq!(e.backend.map(|a| a.status), Some(206));
        mode.store(2, Ordering::SeqCst);
        let e = fetch_from_origin(&pool, &store, &req, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::OriginChanged);
        assert!(e.message.contains("Last-Modified Wed, 02 Jul 2025"), "{}", e.message);
        assert!(store.piece(0).is_none(), "no byte of another version is stored");
        let e = open_body(&pool, &req, 0, content.len() as u64, content.len() as u64, &CancelToken::new()).await.err();
        assert_eq!(e.map(|e| e.code), Some(ErrorCode::OriginChanged), "streamed bodies are checked too");
        mode.store(3, Ordering::SeqCst);
        fetch_from_origin(&pool, &store, &req, &CancelToken::new()).await.unwrap();
        assert!(store.piece(0).is_some());
    }

    #[test]
    fn content_range_and_chunk_size_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, Some(100))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in ["bytes 0-9", "items 0-9/10", "bytes -9/10", "bytes 0-x/10", "bytes 0-9/-1"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"FF ; ext=1").unwrap(), 255);
        for bad in [&b""[..], b"g", b"-1", b"1234567890abcdef0"] {
            assert!(parse_chunk_size(bad).is_err());
        }
    }

    /// Reads an open body in uneven slices and checks the bytes and the connection's reuse.
    async fn read_body_in_slices(o: &TestOrigin, content: &[u8], offset: u64, length: u64, pool: &OriginPool) {
        let mut body = open_body(pool, &request(o.addr, 0), offset, length, content.len() as u64, &CancelToken::new())
            .await
            .unwrap();
        let mut got = Vec::new();
        for size in [1usize, 70_000, 4096, 333].iter().cycle() {
            let left = body.remaining() as usize;
            if left == 0 {
                break;
            }
            let mut dst = vec![0u8; (*size).min(left)];
            body.read_exact(&mut dst, &CancelToken::new()).await.unwrap();
            got.extend_from_slice(&dst);
        }
        let mut over = [0u8; 1];
        assert!(body.read_exact(&mut over, &CancelToken::new()).await.is_err(), "no byte past the range");
        body.finish(pool).await.unwrap();
        assert_eq!(got, content[offset as usize..(offset + length) as usize]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_bodies_in_order_and_connection_reused() {
        let content = Arc::new(pattern(3 * PIECE as usize + 1000, 5));
        let c = content.clone();
        let o = origin(Arc::new(move |h| Reply { bytes: partial(&c, h, ""), close: false })).await;
        let pool = OriginPool::default();
        read_body_in_slices(&o, &content, 0, content.len() as u64, &pool).await;
        read_body_in_slices(&o, &content, PIECE, 2 * PIECE, &pool).await;
        assert_eq!(o.accepted.load(Ordering::SeqCst), 1, "a body read to its end returns the connection");
        // A changed content length is refused before any body byte is handed out.
        let err = open_body(&pool, &request(o.addr, 0), 0, 10, content.len() as u64 + 1, &CancelToken::new())
            .await
            .err()
            .unwrap();
        assert!(matches!(err.code, ErrorCode::OriginChanged), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_chunked_body_with_trailers() {
        let content = Arc::new(pattern(2 * PIECE as usize + 17, 6));
        let c = content.clone();
        let o = origin(Arc::new(move |h| chunked_reply(&c, h, &[3, 50_000, 9], ";e=1", false))).await;
        let pool = OriginPool::default();
        read_body_in_slices(&o, &content, 0, content.len() as u64, &pool).await;
        read_body_in_slices(&o, &content, 5, PIECE, &pool).await;
        assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
    }
}

#[cfg(test)]
mod fuzz;
