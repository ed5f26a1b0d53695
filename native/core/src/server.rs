//! Piece server: answers vortex DownloadPiece requests with the finished pieces of tasks under
//! one or more storage roots. Bodies leave through one of three paths (sendfile, splice,
//! buffered read/write) picked per server; the default is the one measured fastest here.
//! A token bucket caps upload bandwidth per server; upload slots cap the pieces sent at once,
//! a few more requests wait their turn and the rest are refused at once as busy; connections
//! are reused until the peer closes them or stays idle too long; every malformed frame gets an
//! Error frame and a close.
//!
//! The same server also answers vortex over QUIC when given a UDP port (`quic_port`): each
//! bidirectional stream is handled like a TCP connection by the one `serve_conn`, generic over
//! the transport, so both share admission, upload slots and queue, withdrawn requests, the
//! rate limit and the counters. QUIC bodies are always read and written through a buffer.

use crate::error::{CoreError, ErrorCode, Result};
use crate::quic::{self, QuicStream};
use crate::store::PieceStore;
use crate::vortex::{self, Header, RequestKind, HEADER_LEN};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::tls::TlsMode;

/// How piece bodies are copied from the task file to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServePath {
    /// sendfile(2): zero copy from the page cache.
    Sendfile,
    /// splice(2) file → pipe → socket.
    Splice,
    /// pread into a 1 MiB buffer, then write.
    Buffered,
}

/// Chosen by measurement on this host (bench native/piece-serve-paths, short, 2026-12-07):
/// sendfile 0.50 GB/s, splice 0.51, buffered 0.35 into a local client that writes with
/// O_DIRECT. The buffered path copies every byte out of the page cache: serving 1 GiB to a
/// Dragonfly child took our daemon 1.2-1.9 CPU-seconds with it against 0.75-0.9 with sendfile
/// (interop/peer-to-dragonfly-1g, process.cpuUsage around the child's download), and on a
/// 2-core host that CPU is the child's. Buffered was the default while it led on an idle
/// loopback; splice costs a pipe per connection for the same zero-copy send.
pub const DEFAULT_SERVE_PATH: ServePath = ServePath::Sendfile;

impl ServePath {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sendfile" => Ok(Self::Sendfile),
            "splice" => Ok(Self::Splice),
            "buffered" => Ok(Self::Buffered),
            o => Err(CoreError::new(ErrorCode::InvalidArgument, format!("unknown serve path {o:?}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Sendfile => "sendfile",
            Self::Splice => "splice",
            Self::Buffered => "buffered",
        }
    }
}

const CHUNK: usize = 1 << 20;
const MAX_UPLOAD_LOG: usize = 8192;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Storage roots searched in order for `<root>/<task id>` (disk, then tmpfs).
    pub roots: Vec<PathBuf>,
    /// Bytes per second for all uploads of this server; 0 = unlimited.
    pub rate_limit: u64,
    /// Pieces sent at once. 0 = unlimited.
    pub upload_slots: usize,
    /// Requests that may wait for a slot (in arrival order); beyond slots + queue a request is
    /// refused at once as busy.
    pub upload_queue: usize,
    /// SO_SNDBUF of accepted connections in bytes; 0 = the kernel's autotuning. A slot is free
    /// again once a piece's last byte is in the socket buffer: with megabytes buffered, the
    /// next piece starts while the last one still drains and both reach their children late.
    pub send_buffer: usize,
    pub serve_path: ServePath,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Reading the rest of a frame once its first byte arrived.
    pub read_timeout: Duration,
    /// Longest wait for the socket to accept more bytes.
    pub write_timeout: Duration,
    /// Also serve vortex over QUIC on this UDP port of the same IP (0 = any free port);
    /// None = TCP only.
    pub quic_port: Option<u16>,
    /// Vortex over TCP under mutual TLS (tls.rs); None = plaintext.
    pub tls: Option<ServerTls>,
}

/// A piece server's TLS: its rustls config (certificate, client certificates required and
/// verified against the cluster CA) and whether plaintext clients are still served.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub mode: TlsMode,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            rate_limit: 0,
            upload_slots: 0,
            upload_queue: 0,
            send_buffer: 0,
            serve_path: DEFAULT_SERVE_PATH,
            idle_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            quic_port: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub task_id: String,
    pub number: u32,
    pub length: u64,
}

#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    pub bytes_served: u64,
    pub pieces_served: u64,
    pub connections_accepted: u64,
    pub active_connections: u64,
    pub errors_sent: u64,
    pub uploads_dropped: u64,
    /// Of the above, what went over QUIC (pieces and bytes are in the totals too).
    pub quic_connections_accepted: u64,
    pub quic_pieces_served: u64,
    pub quic_bytes_served: u64,
    /// TCP connections that completed a TLS handshake (counted in `connections_accepted` too).
    pub tls_connections_accepted: u64,
}

#[derive(Default)]
struct Stats {
    bytes: AtomicU64,
    pieces: AtomicU64,
    accepted: AtomicU64,
    active: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
    quic_accepted: AtomicU64,
    tls_accepted: AtomicU64,
    quic_pieces: AtomicU64,
    quic_bytes: AtomicU64,
    uploads: Mutex<VecDeque<Upload>>,
}

/// Token bucket shared by every connection of a server.
struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(rate: u64) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let rate = rate as f64;
        // A tenth of a second of burst, at least 64 KiB so small limits still move whole chunks.
        let burst = (rate / 10.0).max(65536.0);
        Some(Self { rate, burst, state: Mutex::new((burst, Instant::now())) })
    }

    /// Waits until `want` bytes may be sent (grants at most one burst at a time).
    async fn take(&self, want: usize) -> usize {
        let want = (want as f64).min(self.burst).max(1.0);
        loop {
            let wait = {
                let Ok(mut s) = self.state.lock() else { return want as usize };
                let now = Instant::now();
                let (tokens, last) = *s;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
                if tokens >= want {
                    *s = (tokens - want, now);
                    return want as usize;
                }
                *s = (tokens, now);
                (want - tokens) / self.rate
            };
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

struct Shared {
    cfg: ServerConfig,
    stats: Stats,
    limiter: Option<RateLimiter>,
    /// Requests admitted (sending or waiting for a slot): `upload_slots` + `upload_queue` permits.
    admission: tokio::sync::Semaphore,
    slots: tokio::sync::Semaphore,
    /// Stores opened by this server, so metadata is not re-read per request.
    stores: Mutex<HashMap<String, Arc<PieceStore>>>,
    /// `store::deletions()` when `stores` was last cleared of deleted stores.
    pruned_at: AtomicU64,
}

pub struct PieceServer {
    addr: SocketAddr,
    quic_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PieceServer {
    /// Binds and starts accepting on the current tokio runtime.
    pub async fn start(addr: SocketAddr, cfg: ServerConfig) -> Result<PieceServer> {
        if cfg.roots.is_empty() {
            return Err(CoreError::new(ErrorCode::InvalidArgument, "piece server needs a storage directory"));
        }
        let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| CoreError::io("socket", e))?;
        sock.set_reuseaddr(true).map_err(|e| CoreError::io("SO_REUSEADDR", e))?;
        if cfg.send_buffer > 0 {
            // Accepted connections inherit the listener's SO_SNDBUF (and lose autotuning).
            let bytes = u32::try_from(cfg.send_buffer).unwrap_or(u32::MAX);
            sock.set_send_buffer_size(bytes).map_err(|e| CoreError::io("SO_SNDBUF", e))?;
        }
        sock.bind(addr).map_err(|e| CoreError::io(&format!("bind {addr}"), e))?;
        let listener = sock.listen(1024).map_err(|e| CoreError::io("listen", e))?;
        let local = listener.local_addr().map_err(|e| CoreError::io("local_addr", e))?;
        // Bound before anything runs, so a taken UDP port fails the start as a taken TCP port does.
        let endpoint = match cfg.quic_port {
            Some(port) => Some(quic::server_endpoint(SocketAddr::new(local.ip(), port))?),
            None => None,
        };
        let quic_addr = match &endpoint {
            Some(e) => Some(e.local_addr().map_err(|e| CoreError::io("local_addr", e))?),
            None => None,
        };
        let limiter = RateLimiter::new(cfg.rate_limit);
        let admission = tokio::sync::Semaphore::new(cfg.upload_slots + cfg.upload_queue);
        let slots = tokio::sync::Semaphore::new(cfg.upload_slots);
        let shared = Arc::new(Shared {
            cfg,
            stats: Stats::default(),
            limiter,
            admission,
            slots,
            stores: Mutex::new(HashMap::new()),
            pruned_at: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(accept_loop(listener, shared.clone(), stop_rx.clone())),
            tokio::spawn(prune_loop(shared.clone(), stop_rx.clone())),
        ];
        if let Some(e) = endpoint {
            tasks.push(tokio::spawn(quic_accept_loop(e, shared.clone(), stop_rx)));
        }
        Ok(PieceServer { addr: local, quic_addr, shared, stop, tasks: Mutex::new(tasks) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The QUIC endpoint's address, when the server answers over QUIC.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    pub fn serve_path(&self) -> ServePath {
        self.shared.cfg.serve_path
    }

    /// Stops accepting and drops every connection; resolves when the accept loops are gone.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        let tasks = self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            bytes_served: s.bytes.load(Ordering::Relaxed),
            pieces_served: s.pieces.load(Ordering::Relaxed),
            connections_accepted: s.accepted.load(Ordering::Relaxed),
            active_connections: s.active.load(Ordering::Relaxed),
            errors_sent: s.errors.load(Ordering::Relaxed),
            uploads_dropped: s.dropped.load(Ordering::Relaxed),
            quic_connections_accepted: s.quic_accepted.load(Ordering::Relaxed),
            quic_pieces_served: s.quic_pieces.load(Ordering::Relaxed),
            quic_bytes_served: s.quic_bytes.load(Ordering::Relaxed),
            tls_connections_accepted: s.tls_accepted.load(Ordering::Relaxed),
        }
    }

    /// Pieces served since the last call (bounded log; overflow is counted in `uploads_dropped`).
    pub fn drain_uploads(&self) -> Vec<Upload> {
        self.shared.stats.uploads.lock().map(|mut u| u.drain(..).collect()).unwrap_or_default()
    }
}

impl Drop for PieceServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Clears deleted stores from the cache when no request comes to do it (an idle seed peer
/// after GC); a tick costs one atomic load when nothing was deleted.
async fn prune_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => prune_deleted(&shared),
        }
    }
}

const PRUNE_EVERY: Duration = Duration::from_secs(1);

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => {
                let Ok((sock, _)) = r else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    shared.stats.active.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = serve_tcp(sock, &shared) => {}
                    }
                    shared.stats.active.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
}

/// Longest TLS handshake a client gets (it is a few round trips; a silent client is dropped).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted TCP connection: plaintext, or TLS per the server's mode (tls.rs). In Optional
/// mode the first byte tells a ClientHello from a plaintext vortex request; in Required mode a
/// plaintext request gets an Error frame saying why, not a silent close.
async fn serve_tcp(sock: TcpStream, shared: &Shared) {
    let Some(tls) = &shared.cfg.tls else {
        return serve_conn(sock, shared).await;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(shared.cfg.idle_timeout, sock.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == crate::tls::TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) if tls.mode == TlsMode::Optional => return serve_conn(sock, shared).await,
        Ok(Ok(1)) => {
            return reject(
                sock,
                shared,
                vortex::ERR_INVALID_ARGUMENT,
                "this parent serves pieces over TLS only (its storage.server.tls is required)",
            )
            .await
        }
        _ => return,
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    // A handshake that fails (a certificate the cluster CA did not sign, or none) ends the
    // connection; rustls has sent the alert that tells the client why.
    if let Ok(Ok(s)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
        shared.stats.tls_accepted.fetch_add(1, Ordering::Relaxed);
        serve_conn(s, shared).await;
    }
}

/// Accepts QUIC connections; each connection's bidirectional streams are served like TCP
/// connections, one task per stream.
async fn quic_accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                // The handshake runs in the connection's own task: a slow one holds up nobody.
                tokio::spawn(serve_quic_conn(incoming, shared.clone(), stop.clone()));
            }
        }
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"piece server closed");
    // Lets the clients hear of the close before the socket goes (bounded: a silent peer would
    // hold it for three PTOs).
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn serve_quic_conn(incoming: quinn::Incoming, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let conn = tokio::select! {
        _ = stop.changed() => return,
        c = incoming => match c {
            Ok(c) => c,
            Err(_) => return,
        },
    };
    shared.stats.quic_accepted.fetch_add(1, Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            s = conn.accept_bi() => {
                let Ok((send, recv)) = s else { return };
                let shared = shared.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = serve_conn(QuicStream::new(send, recv), &shared) => {}
                    }
                });
            }
        }
    }
}

/// Scratch space of one connection's body sends, kept across its requests.
#[derive(Default)]
struct BodyBufs {
    scratch: Vec<u8>,
    pipe: Option<Pipe>,
}

/// What `serve_conn` needs of a transport besides reading and writing bytes: a TCP connection,
/// or one QUIC bidirectional stream. Everything else (framing, admission, upload slots and
/// queue, rate limit, counters) is the same code for both.
trait PieceConn: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Whether to count the exchange in the QUIC figures too.
    const QUIC: bool;

    /// Resolves false once the client withdrew the request waiting for a slot (a raced request
    /// it no longer wants), true if it sent more bytes (a pipelined request, left for the next
    /// read). May stay pending while the client waits.
    async fn still_open(&mut self) -> bool;

    /// Writes the `len` raw bytes at `offset` of `file` that follow a PieceContent frame.
    async fn send_body(
        &mut self,
        shared: &Shared,
        file: &File,
        bufs: &mut BodyBufs,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()>;

    /// Ends the exchange after an Error frame, such that the frame still reaches the client.
    async fn close_after_error(self);

    /// Ends the exchange with a body cut short.
    fn abandon(self);
}

/// `PieceConn::still_open` of a TCP socket: false once the client closed it, true once more
/// bytes arrived (left unread).
async fn bytes_or_open(sock: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(sock.peek(&mut b).await, Ok(0) | Err(_))
}

/// `PieceConn::close_after_error` of a TCP connection, plain or TLS. Closing a socket with
/// unread input makes the kernel send RST, which can destroy the Error frame before the peer
/// reads it, so the write side is shut first and a bounded amount of pending input is drained.
async fn shut_and_drain<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S) {
    let _ = sock.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left = 256 * 1024usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while left > 0 {
        match tokio::time::timeout_at(deadline, sock.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

impl PieceConn for TcpStream {
    const QUIC: bool = false;

    async fn still_open(&mut self) -> bool {
        bytes_or_open(self).await
    }

    async fn send_body(
        &mut self,
        shared: &Shared,
        file: &File,
        bufs: &mut BodyBufs,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        match shared.cfg.serve_path {
            ServePath::Sendfile => send_sendfile(self, shared, file, offset, len).await,
            ServePath::Splice => {
                if bufs.pipe.is_none() {
                    bufs.pipe = Pipe::new().ok();
                }
                match &bufs.pipe {
                    Some(p) => send_splice(self, shared, file, p, offset, len).await,
                    None => send_buffered(self, shared, file, &mut bufs.scratch, offset, len).await,
                }
            }
            ServePath::Buffered => send_buffered(self, shared, file, &mut bufs.scratch, offset, len).await,
        }
    }

    async fn close_after_error(self) {
        shut_and_drain(self).await;
    }

    fn abandon(self) {
        // The peer sees the connection end before the body does and fails the piece.
    }
}

/// A TCP connection under TLS: bodies go through rustls (encrypted in user space), so the
/// zero-copy paths do not apply.
impl PieceConn for tokio_rustls::server::TlsStream<TcpStream> {
    const QUIC: bool = false;

    /// Raw bytes on the socket: a pipelined request (or the client's close) arrived. A request
    /// rustls already decrypted and holds is not seen; the wait then simply lasts until a slot.
    async fn still_open(&mut self) -> bool {
        bytes_or_open(self.get_ref().0).await
    }

    async fn send_body(
        &mut self,
        shared: &Shared,
        file: &File,
        bufs: &mut BodyBufs,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        send_buffered(self, shared, file, &mut bufs.scratch, offset, len).await?;
        // rustls keeps what the socket would not take yet; without a flush the piece's tail
        // would wait there for the next request, and the child would stall on it.
        tokio::time::timeout(shared.cfg.write_timeout, self.flush()).await.map_err(|_| io_timeout())?
    }

    /// As for plain TCP, with our close_notify as the shutdown.
    async fn close_after_error(self) {
        shut_and_drain(self).await;
    }

    fn abandon(self) {}
}

impl PieceConn for QuicStream {
    const QUIC: bool = true;

    /// A client that gives a request up drops its stream, which stops our sending half
    /// (STOP_SENDING); a lost connection ends the wait too.
    async fn still_open(&mut self) -> bool {
        let _ = self.send.stopped().await;
        false
    }

    async fn send_body(
        &mut self,
        shared: &Shared,
        file: &File,
        bufs: &mut BodyBufs,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        send_buffered(self, shared, file, &mut bufs.scratch, offset, len).await
    }

    /// The frame is delivered after the stream is finished for as long as the connection
    /// lives; the client's unread input, if any, is refused with STOP_SENDING on drop.
    async fn close_after_error(mut self) {
        let _ = self.send.finish();
    }

    /// A reset rather than the FIN a drop would send: the client learns the body is incomplete
    /// from the stream, not from counting bytes.
    fn abandon(mut self) {
        let _ = self.send.reset(quinn::VarInt::from_u32(0));
    }
}

enum ReadOutcome {
    Full,
    /// Clean EOF before the first byte.
    Eof,
    /// EOF or timeout after some bytes.
    Truncated,
    Idle,
}

async fn read_frame_part<R: AsyncRead + Unpin>(
    sock: &mut R,
    buf: &mut [u8],
    first: Duration,
    rest: Duration,
) -> ReadOutcome {
    let mut got = 0;
    while got < buf.len() {
        let limit = if got == 0 { first } else { rest };
        match tokio::time::timeout(limit, sock.read(&mut buf[got..])).await {
            Err(_) if got == 0 => return ReadOutcome::Idle,
            Err(_) => return ReadOutcome::Truncated,
            Ok(Ok(0)) | Ok(Err(_)) if got == 0 => return ReadOutcome::Eof,
            Ok(Ok(0)) | Ok(Err(_)) => return ReadOutcome::Truncated,
            Ok(Ok(n)) => got += n,
        }
    }
    ReadOutcome::Full
}

async fn send_error<W: AsyncWrite + Unpin>(sock: &mut W, shared: &Shared, code: u8, msg: &str) {
    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
    let f = vortex::encode_error(code, msg);
    // The flush matters under TLS: what rustls could not write yet stays in its buffer until
    // the next write, and a refused client would wait for its frame until its deadline.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        sock.write_all(&f).await?;
        sock.flush().await
    })
    .await;
}

/// Sends an Error frame and ends the exchange without losing the frame.
async fn reject<T: PieceConn>(mut sock: T, shared: &Shared, code: u8, msg: &str) {
    send_error(&mut sock, shared, code, msg).await;
    sock.close_after_error().await;
}

/// Serves vortex requests on one TCP connection or QUIC stream until the client closes it,
/// stays idle too long or sends something malformed.
async fn serve_conn<T: PieceConn>(mut sock: T, shared: &Shared) {
    let cfg = &shared.cfg;
    let mut bufs = BodyBufs::default();
    loop {
        let mut hb = [0u8; HEADER_LEN];
        match read_frame_part(&mut sock, &mut hb, cfg.idle_timeout, cfg.read_timeout).await {
            ReadOutcome::Full => {}
            ReadOutcome::Eof | ReadOutcome::Idle => return,
            ReadOutcome::Truncated => {
                return reject(sock, shared, vortex::ERR_INVALID_ARGUMENT, "truncated frame header").await;
            }
        }
        let h = Header::decode(&hb);
        match vortex::classify_request(&h) {
            RequestKind::Close => return,
            RequestKind::Reject(code, msg) => return reject(sock, shared, code, &msg).await,
            RequestKind::DownloadPiece => {}
        }
        let mut value = [0u8; vortex::DOWNLOAD_PIECE_LEN];
        match read_frame_part(&mut sock, &mut value, cfg.read_timeout, cfg.read_timeout).await {
            ReadOutcome::Full => {}
            _ => return reject(sock, shared, vortex::ERR_INVALID_ARGUMENT, "truncated DownloadPiece value").await,
        }
        let (task_id, number) = match vortex::decode_download_piece(&value) {
            Ok(v) => v,
            Err(e) => return reject(sock, shared, vortex::ERR_INVALID_ARGUMENT, &e.message).await,
        };
        let found = find_piece(shared, &task_id, number);
        let (store, rec) = match found {
            Ok(v) => v,
            Err(e) => {
                let code = match e.code {
                    // Auth: a sealed task whose key this process does not hold.
                    ErrorCode::NotFound | ErrorCode::PieceNotFinished | ErrorCode::Auth => vortex::ERR_NOT_FOUND,
                    ErrorCode::InvalidArgument => vortex::ERR_INVALID_ARGUMENT,
                    _ => vortex::ERR_INTERNAL,
                };
                // A well-formed request for a missing piece keeps the connection usable.
                send_error(&mut sock, shared, code, &format!("piece {task_id}-{number} not found: {}", e.message))
                    .await;
                continue;
            }
        };
        // Its bytes start coming into the page cache now, while it waits for a slot.
        crate::store::prefetch(store.content_file(), rec.offset, rec.length);
        // A piece split among many children reaches each of them late, and none can pass it on
        // before it is whole; refused children go to another parent or piece instead.
        let admitted = if cfg.upload_slots > 0 {
            let Ok(admitted) = shared.admission.try_acquire() else {
                let msg = format!("{}: all {} upload slots are sending", vortex::BUSY_PREFIX, cfg.upload_slots);
                send_error(&mut sock, shared, vortex::ERR_INTERNAL, &msg).await;
                continue;
            };
            Some(admitted)
        } else {
            None
        };
        // A sealed piece is opened once, its tag checked, before its header goes out: one that
        // fails is dropped from the store and never sent, and the child asks another parent.
        // Opened while the request waits for a slot, as its bytes are prefetched: with one slot
        // (upload.concurrentPieceCount), opening after taking it left the link idle for the
        // time of each piece's decryption. The plain bytes go out under the connection's TLS,
        // if any (SECURITY.md).
        let opened = if store.is_sealed() {
            match store.read_plain(number).await {
                Ok((buf, _)) => Some(buf),
                Err(e) => {
                    let msg = format!("piece {task_id}-{number} not served: {}", e.message);
                    send_error(&mut sock, shared, vortex::ERR_NOT_FOUND, &msg).await;
                    continue;
                }
            }
        } else {
            None
        };
        // Held (the admission also while waiting for a slot) until this piece is sent or its
        // send fails; the slot is let go first, as the tuple drops in field order.
        let _permits = match admitted {
            Some(admitted) => {
                // A child that raced this request against other parents closes it once another
                // parent starts sending: a withdrawn request gives up its place instead of
                // taking a slot (and sending a whole piece into a closed socket).
                let slot = tokio::select! {
                    biased;
                    slot = shared.slots.acquire() => slot.ok(),
                    open = sock.still_open() => {
                        if !open {
                            return;
                        }
                        shared.slots.acquire().await.ok()
                    }
                };
                Some((slot, admitted))
            }
            None => None,
        };
        let meta = vortex::PieceMeta {
            number,
            offset: rec.offset,
            length: rec.length,
            digest: rec.digest.clone(),
            parent_id: rec.parent_id.clone(),
            traffic_type: vortex::TRAFFIC_REMOTE_PEER,
            cost_secs: (rec.finished_at_ms.saturating_sub(rec.created_at_ms).max(0) / 1000) as u64,
            created_at_secs: rec.created_at_ms / 1000,
        };
        let head = vortex::encode_piece_content(&meta);
        if !matches!(tokio::time::timeout(cfg.write_timeout, sock.write_all(&head)).await, Ok(Ok(()))) {
            return;
        }
        let file = store.content_file().clone();
        let sent = match &opened {
            Some(buf) => {
                let body = buf.as_ref().map_or(&[][..], |b| &b.as_slice()[..rec.length as usize]);
                send_memory(&mut sock, shared, body).await
            }
            None => sock.send_body(shared, &file, &mut bufs, rec.offset, rec.length).await,
        };
        drop(opened);
        if sent.is_err() {
            // The body is cut short: the peer sees a short read and fails the piece.
            return sock.abandon();
        }
        shared.stats.pieces.fetch_add(1, Ordering::Relaxed);
        if T::QUIC {
            shared.stats.quic_pieces.fetch_add(1, Ordering::Relaxed);
            shared.stats.quic_bytes.fetch_add(rec.length, Ordering::Relaxed);
        }
        if let Ok(mut u) = shared.stats.uploads.lock() {
            if u.len() >= MAX_UPLOAD_LOG {
                u.pop_front();
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            u.push_back(Upload { task_id, number, length: rec.length });
        }
    }
}

/// Drops the cached stores deleted since the last look: a deleted store's descriptors (and its
/// piece records) stay open for as long as the cache holds it, and the cache only evicted when
/// it reached 1024 entries, so a seed peer kept three descriptors of every task GC removed.
fn prune_deleted(shared: &Shared) {
    let now = crate::store::deletions();
    if shared.pruned_at.swap(now, Ordering::AcqRel) == now {
        return;
    }
    if let Ok(mut m) = shared.stores.lock() {
        m.retain(|_, s| !s.is_deleted());
    }
}

fn find_piece(shared: &Shared, task_id: &str, number: u32) -> Result<(Arc<PieceStore>, crate::store::PieceRecord)> {
    prune_deleted(shared);
    let cached = shared.stores.lock().ok().and_then(|m| m.get(task_id).cloned()).filter(|s| !s.is_deleted());
    let store = match cached {
        Some(s) => s,
        None => {
            let mut last = CoreError::new(ErrorCode::NotFound, format!("task {task_id} not found"));
            let mut found = None;
            for root in &shared.cfg.roots {
                match PieceStore::open_existing(root, task_id) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = found.ok_or(last)?;
            if let Ok(mut m) = shared.stores.lock() {
                if m.len() >= 1024 {
                    m.retain(|_, s| !s.is_deleted() && Arc::strong_count(s) > 1);
                }
                m.insert(task_id.to_string(), s.clone());
            }
            s
        }
    };
    if let Some(r) = store.piece(number) {
        return Ok((store, r));
    }
    // Written by another process since we opened it?
    store.refresh()?;
    let r = store.piece(number).ok_or_else(|| {
        CoreError::new(ErrorCode::PieceNotFinished, format!("piece {number} of task {task_id} is not finished"))
    })?;
    Ok((store, r))
}

async fn grant(shared: &Shared, want: usize) -> usize {
    match &shared.limiter {
        Some(l) => l.take(want).await,
        None => want,
    }
}

fn count(shared: &Shared, n: usize) {
    shared.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
}

fn io_timeout() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading")
}

async fn send_sendfile(sock: &TcpStream, shared: &Shared, file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let mut off = offset as libc::off_t;
    let end = offset + len;
    while (off as u64) < end {
        let want = grant(shared, ((end - off as u64) as usize).min(CHUNK)).await;
        let mut left = want;
        while left > 0 {
            tokio::time::timeout(shared.cfg.write_timeout, sock.writable()).await.map_err(|_| io_timeout())??;
            let r = sock.try_io(Interest::WRITABLE, || {
                // SAFETY: both fds are open for the call; `off` is a valid in/out pointer.
                let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, left) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than piece")),
                Ok(n) => {
                    left -= n;
                    count(shared, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

struct Pipe {
    r: std::os::fd::OwnedFd,
    w: std::os::fd::OwnedFd,
}

impl Pipe {
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid 2-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fds that we own.
        let p = unsafe {
            Pipe { r: std::os::fd::OwnedFd::from_raw_fd(fds[0]), w: std::os::fd::OwnedFd::from_raw_fd(fds[1]) }
        };
        // A 1 MiB pipe moves a chunk per splice pair; failure just leaves the default size.
        // SAFETY: fcntl on our own fd.
        unsafe { libc::fcntl(p.w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(p)
    }
}

async fn send_splice(
    sock: &TcpStream,
    shared: &Shared,
    file: &File,
    pipe: &Pipe,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut off = offset as libc::loff_t;
    let end = offset + len;
    while (off as u64) < end {
        let want = grant(shared, ((end - off as u64) as usize).min(CHUNK)).await;
        // SAFETY: fds are open; `off` is a valid in/out pointer; the pipe is empty here.
        let filled = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &mut off,
                pipe.w.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                libc::SPLICE_F_MOVE,
            )
        };
        if filled < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if filled == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than piece"));
        }
        let mut left = filled as usize;
        while left > 0 {
            tokio::time::timeout(shared.cfg.write_timeout, sock.writable()).await.map_err(|_| io_timeout())??;
            let r = sock.try_io(Interest::WRITABLE, || {
                // SAFETY: fds are open for the call.
                let n = unsafe {
                    libc::splice(
                        pipe.r.as_raw_fd(),
                        std::ptr::null_mut(),
                        sock.as_raw_fd(),
                        std::ptr::null_mut(),
                        left,
                        libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => {
                    left -= n;
                    count(shared, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Writes a body held in memory (a sealed piece, opened), rate-limited like the others and
/// flushed, so that no tail waits in a TLS buffer for the next request.
async fn send_memory<W: AsyncWrite + Unpin>(sock: &mut W, shared: &Shared, body: &[u8]) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < body.len() {
        let want = grant(shared, (body.len() - pos).min(CHUNK)).await;
        tokio::time::timeout(shared.cfg.write_timeout, sock.write_all(&body[pos..pos + want]))
            .await
            .map_err(|_| io_timeout())??;
        count(shared, want);
        pos += want;
    }
    tokio::time::timeout(shared.cfg.write_timeout, sock.flush()).await.map_err(|_| io_timeout())?
}

async fn send_buffered<W: AsyncWrite + Unpin>(
    sock: &mut W,
    shared: &Shared,
    file: &File,
    scratch: &mut Vec<u8>,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if scratch.len() < CHUNK {
        scratch.resize(CHUNK, 0);
    }
    let mut pos = 0u64;
    while pos < len {
        let want = grant(shared, ((len - pos) as usize).min(CHUNK)).await;
        // The piece was prefetched when its request arrived (see prefetch); a read that still
        // finds it cold blocks this worker for one disk read, cheaper than a thread hop per chunk.
        let n = file.read_at(&mut scratch[..want], offset + pos)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than piece"));
        }
        tokio::time::timeout(shared.cfg.write_timeout, sock.write_all(&scratch[..n]))
            .await
            .map_err(|_| io_timeout())??;
        count(shared, n);
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::CancelToken;
    use crate::client::{fetch_piece, fetch_race, ConnPool, FetchOptions, Protocol, Race};
    use crate::store::{StoreOptions, SyncPolicy, Tier, WriteMeta};
    use std::path::Path;

    const TID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const PIECE: u64 = 256 * 1024;
    const CONTENT: u64 = PIECE * 3 + 4321;

    fn data() -> Vec<u8> {
        (0..CONTENT as u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 9) as u8).collect()
    }

    fn open(root: &Path) -> Arc<PieceStore> {
        PieceStore::open(StoreOptions {
            root: root.to_path_buf(),
            task_id: TID.into(),
            content_length: CONTENT,
            piece_length: PIECE,
            tier: Tier::Disk,
            direct: None,
            sync: SyncPolicy::Auto,
            seal: None,
            extra_digest: None,
        })
        .unwrap()
    }

    async fn seeded(root: &Path, pieces: &[u32]) -> Arc<PieceStore> {
        let s = open(root);
        let d = data();
        for &n in pieces {
            let (off, len) = s.piece_range(n).unwrap();
            s.write_piece(n, d[off as usize..(off + len) as usize].to_vec(), WriteMeta::default()).await.unwrap();
        }
        s
    }

    /// Polls a server's counters every 5 ms until `reached` holds for them.
    async fn until_stats(srv: &PieceServer, reached: impl Fn(&StatsSnapshot) -> bool) {
        while !reached(&srv.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn server(root: &Path, path: ServePath, rate: u64) -> PieceServer {
        let cfg =
            ServerConfig { roots: vec![root.to_path_buf()], serve_path: path, rate_limit: rate, ..Default::default() };
        PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap()
    }

    fn fetch_opts(srv: &PieceServer, n: u32) -> FetchOptions {
        FetchOptions {
            addr: srv.local_addr().to_string(),
            protocol: Protocol::Tcp,
            task_id: TID.into(),
            number: n,
            expected_digest: None,
            parent_id: "parent-peer".into(),
            connect_timeout: Duration::from_secs(2),
            piece_timeout: Duration::from_secs(20),
            first_byte_timeout: None,
            stall_timeout: None,
            tls: None,
            allow_plaintext: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_serve_path_delivers_verified_pieces_over_reused_connections() {
        for path in [ServePath::Sendfile, ServePath::Splice, ServePath::Buffered] {
            let a = tempfile::tempdir().unwrap();
            let b = tempfile::tempdir().unwrap();
            seeded(a.path(), &[0, 1, 2, 3]).await;
            let srv = server(a.path(), path, 0).await;
            let dst = open(b.path());
            let pool = ConnPool::default();
            for n in 0..4 {
                let rec = fetch_piece(&pool, &dst, &fetch_opts(&srv, n), &CancelToken::new()).await.unwrap();
                assert_eq!(rec.parent_id, "parent-peer");
            }
            assert_eq!(std::fs::read(&dst.info().content_path).unwrap(), data(), "{path:?}");
            let st = srv.stats();
            assert_eq!(st.pieces_served, 4);
            assert_eq!(st.bytes_served, CONTENT);
            assert_eq!(st.connections_accepted, 1, "one connection reused for all pieces");
            assert_eq!(srv.drain_uploads().len(), 4);
            assert_eq!(pool.idle_count(), 1);
            srv.close().await;
        }
    }

    async fn tls_server(root: &Path, id: &crate::tls::TlsIdentity, mode: TlsMode) -> PieceServer {
        let tls = ServerTls { config: crate::tls::server_config(id).unwrap(), mode };
        // A small send buffer makes rustls hold back part of every reply (the socket would
        // block), as a busy link does: a reply not flushed would then never arrive whole.
        let cfg =
            ServerConfig { roots: vec![root.to_path_buf()], tls: Some(tls), send_buffer: 4096, ..Default::default() };
        PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_parent_serves_children_of_its_cluster_only() {
        let (_, ids) = crate::tls::testpki::cluster(&["127.0.0.1", "127.0.0.1"]);
        let (_, strangers) = crate::tls::testpki::cluster(&["127.0.0.1"]);
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2, 3]).await;
        let srv = tls_server(a.path(), &ids[0], TlsMode::Required).await;
        let dst = open(b.path());
        let pool = ConnPool::default();
        let child = Some(crate::tls::client_config(&ids[1]).unwrap());
        for n in 0..4 {
            let opts = FetchOptions {
                tls: child.clone(),
                first_byte_timeout: Some(Duration::from_secs(3)),
                stall_timeout: Some(Duration::from_secs(3)),
                ..fetch_opts(&srv, n)
            };
            fetch_piece(&pool, &dst, &opts, &CancelToken::new()).await.unwrap();
        }
        assert_eq!(std::fs::read(&dst.info().content_path).unwrap(), data());
        let st = srv.stats();
        assert_eq!((st.connections_accepted, st.tls_connections_accepted), (1, 1), "one TLS connection, reused");
        assert_eq!(pool.idle_count(), 1);

        // A plaintext child is told why it gets nothing.
        let c = tempfile::tempdir().unwrap();
        let plain = fetch_piece(&ConnPool::default(), &open(c.path()), &fetch_opts(&srv, 0), &CancelToken::new())
            .await
            .unwrap_err();
        assert!(plain.message.contains("over TLS only"), "{}", plain.message);
        // A child whose certificate another CA signed fails the handshake (so does the parent's
        // certificate for it: neither side trusts the other).
        let stranger = Some(crate::tls::client_config(&strangers[0]).unwrap());
        let e = fetch_piece(
            &ConnPool::default(),
            &open(c.path()),
            &FetchOptions { tls: stranger, ..fetch_opts(&srv, 0) },
            &CancelToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Auth, "{}", e.message);
        assert!(open(c.path()).piece(0).is_none(), "nothing stored from a refused exchange");
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_optional_tls_parent_serves_plaintext_children_too() {
        let (_, ids) = crate::tls::testpki::cluster(&["127.0.0.1", "127.0.0.1"]);
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1]).await;
        let srv = tls_server(a.path(), &ids[0], TlsMode::Optional).await;
        let tls_child = tempfile::tempdir().unwrap();
        let plain_child = tempfile::tempdir().unwrap();
        let child = Some(crate::tls::client_config(&ids[1]).unwrap());
        let pool = ConnPool::default();
        fetch_piece(
            &pool,
            &open(tls_child.path()),
            &FetchOptions { tls: child, ..fetch_opts(&srv, 1) },
            &CancelToken::new(),
        )
        .await
        .unwrap();
        fetch_piece(&pool, &open(plain_child.path()), &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap();
        let st = srv.stats();
        assert_eq!((st.connections_accepted, st.tls_connections_accepted), (2, 1));
        assert_eq!(pool.idle_count(), 2, "a TLS and a plaintext connection, pooled apart");
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_child_falls_back_to_a_plaintext_parent_only_when_allowed() {
        // A plaintext parent, as Dragonfly's is: our ClientHello gets no TLS answer.
        let (_, ids) = crate::tls::testpki::cluster(&["127.0.0.1"]);
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let tls = Some(crate::tls::client_config(&ids[0]).unwrap());
        let strict = tempfile::tempdir().unwrap();
        let e = fetch_piece(
            &ConnPool::default(),
            &open(strict.path()),
            &FetchOptions { tls: tls.clone(), ..fetch_opts(&srv, 0) },
            &CancelToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Auth, "{}", e.message);
        let lenient = tempfile::tempdir().unwrap();
        let rec = fetch_piece(
            &ConnPool::default(),
            &open(lenient.path()),
            &FetchOptions { tls, allow_plaintext: true, ..fetch_opts(&srv, 0) },
            &CancelToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(rec.number, 0);
        assert!(crate::client::knows_plaintext_parent(&srv.local_addr().to_string()));
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_store_leaves_the_cache_without_another_request() {
        // The server caches the store it served from; once the task is deleted the cache lets
        // go of it by itself (an idle seed peer after GC), so its descriptors can close.
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = seeded(a.path(), &[0]).await;
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let dst = open(b.path());
        fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(srv.shared.stores.lock().unwrap().len(), 1);
        assert!(Arc::strong_count(&src) >= 2, "the cache holds the store");
        src.delete().unwrap();
        let mut waited = Duration::ZERO;
        while !srv.shared.stores.lock().unwrap().is_empty() && waited < PRUNE_EVERY * 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(srv.shared.stores.lock().unwrap().is_empty(), "deleted store still cached after {waited:?}");
        assert_eq!(Arc::strong_count(&src), 1, "nothing but this test holds the deleted store");
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_and_unfinished_pieces_are_not_found() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let dst = open(b.path());
        let pool = ConnPool::default();
        let e = fetch_piece(&pool, &dst, &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(dst.piece(1).is_none());
        let other = "f".repeat(64);
        let dst2 = PieceStore::open(StoreOptions { task_id: other.clone(), ..store_opts(b.path()) }).unwrap();
        let e = fetch_piece(&pool, &dst2, &FetchOptions { task_id: other, ..fetch_opts(&srv, 0) }, &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        // The connection survived both refusals.
        fetch_piece(&pool, &dst, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(srv.stats().connections_accepted, 1);
    }

    fn store_opts(root: &Path) -> StoreOptions {
        StoreOptions {
            root: root.to_path_buf(),
            task_id: TID.into(),
            content_length: CONTENT,
            piece_length: PIECE,
            tier: Tier::Disk,
            direct: None,
            sync: SyncPolicy::Auto,
            seal: None,
            extra_digest: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sealed_parent_sends_plain_bytes_opened_once_and_never_a_tampered_piece() {
        use crate::seal::SealKey;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = PieceStore::open(StoreOptions {
            seal: Some(SealKey { key: vec![3u8; 32], version: 1 }),
            ..store_opts(a.path())
        })
        .unwrap();
        let d = data();
        for n in 0..4u32 {
            let (off, len) = src.piece_range(n).unwrap();
            src.write_piece(n, d[off as usize..(off + len) as usize].to_vec(), WriteMeta::default()).await.unwrap();
        }
        for path in [ServePath::Sendfile, ServePath::Buffered] {
            let srv = server(a.path(), path, 0).await;
            let dst = PieceStore::open(StoreOptions { task_id: TID.into(), ..store_opts(b.path()) }).unwrap();
            let pool = ConnPool::default();
            for n in 0..4 {
                fetch_piece(&pool, &dst, &fetch_opts(&srv, n), &CancelToken::new()).await.unwrap();
            }
            assert_eq!(std::fs::read(&dst.info().content_path).unwrap(), d, "{path:?}: plain bytes over the wire");
            assert_eq!(srv.stats().bytes_served, CONTENT);
            dst.delete().unwrap();
            srv.close().await;
        }
        // A flipped bit on the parent's disk: refused with an error frame, the piece dropped there.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&src.info().content_path).unwrap();
            f.write_all_at(b"x", PIECE + 5).unwrap();
        }
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let dst = open(b.path());
        let e = fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("integrity"), "{}", e.message);
        assert!(dst.piece(1).is_none() && src.piece(1).is_none());
        assert_eq!(srv.stats().pieces_served, 0);
        srv.close().await;
        // A sealed task whose key no store of this process holds is not served at all.
        let c = tempfile::tempdir().unwrap();
        let locked = PieceStore::open(StoreOptions {
            seal: Some(SealKey { key: vec![4u8; 32], version: 1 }),
            ..store_opts(c.path())
        })
        .unwrap();
        locked.write_piece(0, d[..PIECE as usize].to_vec(), WriteMeta::default()).await.unwrap();
        drop(locked);
        let srv = server(c.path(), DEFAULT_SERVE_PATH, 0).await;
        let e = fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("not loaded"), "{}", e.message);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_piece_is_rejected_and_not_marked() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = seeded(a.path(), &[1]).await;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&src.info().content_path).unwrap();
            f.write_all_at(b"evil", PIECE + 100).unwrap();
        }
        let srv = server(a.path(), ServePath::Sendfile, 0).await;
        let dst = open(b.path());
        let e = fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DigestMismatch);
        assert!(dst.piece(1).is_none());
        assert!(dst.finished().is_empty());
        // An announced digest that disagrees is also refused.
        seeded(a.path(), &[2]).await;
        let wrong = FetchOptions { expected_digest: Some("crc32:1".into()), ..fetch_opts(&srv, 2) };
        let e = fetch_piece(&ConnPool::default(), &dst, &wrong, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DigestMismatch);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lying_parent_with_a_matching_crc_fails_the_vouched_digest() {
        use crate::digest::{self, Algorithm};
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let d = data();
        let src = open(a.path());
        let (off, len) = src.piece_range(1).unwrap();
        let right = &d[off as usize..(off + len) as usize];
        // The liar's store records the CRC of the bytes it serves, so the frame's digest holds.
        let mut wrong = right.to_vec();
        wrong[7] ^= 0xff;
        src.write_piece(1, wrong, WriteMeta::default()).await.unwrap();
        src.write_piece(2, d[(2 * PIECE) as usize..(3 * PIECE) as usize].to_vec(), WriteMeta::default()).await.unwrap();
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let dst =
            PieceStore::open(StoreOptions { extra_digest: Some(Algorithm::Blake3), ..store_opts(b.path()) }).unwrap();
        let pool = ConnPool::default();
        let vouched =
            FetchOptions { expected_digest: Some(digest::digest(Algorithm::Blake3, right)), ..fetch_opts(&srv, 1) };
        let e = fetch_piece(&pool, &dst, &vouched, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DigestMismatch, "{e}");
        assert!(dst.piece(1).is_none());
        // An honest piece passes its vouched digest (upper-case hex too) and records it.
        let two = digest::digest(Algorithm::Blake3, &d[(2 * PIECE) as usize..(3 * PIECE) as usize]);
        let honest = FetchOptions {
            expected_digest: Some(two.to_uppercase().replace("BLAKE3:", "blake3:")),
            ..fetch_opts(&srv, 2)
        };
        let rec = fetch_piece(&pool, &dst, &honest, &CancelToken::new()).await.unwrap();
        assert_eq!(rec.extra_digest.as_deref(), Some(two.as_str()));
        // A vouched digest of another algorithm than the store's is checked by a second pass.
        let c = tempfile::tempdir().unwrap();
        let dst2 = open(c.path());
        let sha =
            FetchOptions { expected_digest: Some(digest::digest(Algorithm::Sha256, right)), ..fetch_opts(&srv, 1) };
        let e = fetch_piece(&pool, &dst2, &sha, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DigestMismatch);
        srv.close().await;
    }

    async fn raw_exchange(srv: &PieceServer, bytes: &[u8], half_close: bool) -> Vec<u8> {
        let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
        s.write_all(bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        // The server closes after an Error frame, so read_to_end terminates.
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.unwrap().unwrap();
        out
    }

    fn assert_error_frame(reply: &[u8], code: u8) {
        assert!(reply.len() > HEADER_LEN, "got {reply:?}");
        assert_eq!(reply[1], vortex::TAG_ERROR);
        let len = u32::from_be_bytes([reply[2], reply[3], reply[4], reply[5]]) as usize;
        assert_eq!(reply.len(), HEADER_LEN + len, "nothing follows the Error frame");
        assert_eq!(reply[6], code);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_frames_get_an_error_frame_and_a_close() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 0).await;
        let valid = vortex::encode_download_piece(TID, 0).unwrap();
        // Oversized: a DownloadPiece claiming 1 MiB of value.
        let mut big = valid.to_vec();
        big[2..6].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert_error_frame(&raw_exchange(&srv, &big, false).await, vortex::ERR_INVALID_ARGUMENT);
        // Truncated value, then the client half-closes.
        assert_error_frame(&raw_exchange(&srv, &valid[..40], true).await, vortex::ERR_INVALID_ARGUMENT);
        // Truncated header.
        assert_error_frame(&raw_exchange(&srv, &valid[..3], true).await, vortex::ERR_INVALID_ARGUMENT);
        // Unknown tag.
        let mut unknown = valid.to_vec();
        unknown[1] = 9;
        assert_error_frame(&raw_exchange(&srv, &unknown, false).await, vortex::ERR_INVALID_ARGUMENT);
        // A path in place of a task id never reaches the filesystem.
        let mut path = valid.to_vec();
        let evil = format!("{:.<64}", "../../../../../../etc/passwd");
        path[6..70].copy_from_slice(evil.as_bytes());
        assert_error_frame(&raw_exchange(&srv, &path, false).await, vortex::ERR_INVALID_ARGUMENT);
        // A good request followed by garbage: the piece is served, then the Error frame.
        let mut mixed = valid.to_vec();
        mixed.extend_from_slice(&[7, 7, 7, 7, 7, 7, 7]);
        let reply = raw_exchange(&srv, &mixed, false).await;
        assert_eq!(reply[1], vortex::TAG_PIECE_CONTENT);
        let vlen = u32::from_be_bytes([reply[2], reply[3], reply[4], reply[5]]) as usize;
        let rest = &reply[HEADER_LEN + vlen + PIECE as usize..];
        assert_error_frame(rest, vortex::ERR_INVALID_ARGUMENT);
        // Random garbage never crashes the server and is always answered or dropped.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50 {
            let n = (x % 90) as usize + 1;
            let junk: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = raw_exchange(&srv, &junk, true).await;
        }
        assert!(srv.stats().errors_sent >= 55);
        fetch_piece(
            &ConnPool::default(),
            &open(tempfile::tempdir().unwrap().path()),
            &fetch_opts(&srv, 0),
            &CancelToken::new(),
        )
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_and_timeout_stop_a_stalled_download() {
        // A "parent" that accepts and never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                conns.push(s);
            }
        });
        let b = tempfile::tempdir().unwrap();
        let dst = open(b.path());
        let opts = FetchOptions {
            addr: addr.clone(),
            protocol: Protocol::Tcp,
            task_id: TID.into(),
            number: 0,
            expected_digest: None,
            parent_id: String::new(),
            connect_timeout: Duration::from_secs(2),
            piece_timeout: Duration::from_secs(600),
            first_byte_timeout: None,
            stall_timeout: None,
            tls: None,
            allow_plaintext: false,
        };
        let token = CancelToken::new();
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t2.cancel();
        });
        let e = fetch_piece(&ConnPool::default(), &dst, &opts, &token).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Aborted);
        let short = FetchOptions { piece_timeout: Duration::from_millis(100), ..opts };
        let e = fetch_piece(&ConnPool::default(), &dst, &short, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(dst.finished().is_empty());
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_root_serves_the_tmpfs_tier_and_sees_pieces_written_later() {
        let disk = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = seeded(shm.path(), &[0]).await;
        let cfg =
            ServerConfig { roots: vec![disk.path().to_path_buf(), shm.path().to_path_buf()], ..Default::default() };
        let srv = PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
        let dst = open(b.path());
        let pool = ConnPool::default();
        fetch_piece(&pool, &dst, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(
            fetch_piece(&pool, &dst, &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap_err().code,
            ErrorCode::NotFound
        );
        // A piece committed after the server looked the task up is served at once.
        let d = data();
        src.write_piece(1, d[PIECE as usize..2 * PIECE as usize].to_vec(), WriteMeta::default()).await.unwrap();
        fetch_piece(&pool, &dst, &fetch_opts(&srv, 1), &CancelToken::new()).await.unwrap();
        assert_eq!(dst.finished_count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_holds_uploads_back() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1]).await;
        // 1 MiB/s with a 64 KiB... 100 KiB burst: two 256 KiB pieces cannot leave in under 0.35 s.
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 1 << 20).await;
        let dst = open(b.path());
        let pool = ConnPool::default();
        let t0 = Instant::now();
        for n in 0..2 {
            fetch_piece(&pool, &dst, &fetch_opts(&srv, n), &CancelToken::new()).await.unwrap();
        }
        // Only a lower bound: a slow machine can take longer, never shorter.
        assert!(t0.elapsed() >= Duration::from_millis(350), "{:?}", t0.elapsed());
    }

    /// One slot and one waiting place; 256 KiB/s keeps each send going for most of a second.
    async fn one_slot_server(root: &Path) -> Arc<PieceServer> {
        let cfg = ServerConfig {
            roots: vec![root.to_path_buf()],
            rate_limit: 256 * 1024,
            upload_slots: 1,
            upload_queue: 1,
            ..Default::default()
        };
        Arc::new(PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap())
    }

    fn race_of(candidates: Vec<FetchOptions>) -> (Race, tokio::sync::oneshot::Receiver<u32>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for c in candidates {
            tx.send(c).unwrap();
        }
        let (started, started_rx) = tokio::sync::oneshot::channel();
        let race =
            Race { candidates: rx, started: Some(started), timeout: Duration::from_secs(20), stalled: Arc::default() };
        (race, started_rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_race_takes_the_free_parent_and_its_withdrawn_request_costs_the_busy_one_nothing() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2]).await;
        let busy = one_slot_server(a.path()).await;
        let free = server(a.path(), ServePath::Sendfile, 0).await;
        let hog = {
            let busy = busy.clone();
            tokio::spawn(async move {
                let b = tempfile::tempdir().unwrap();
                fetch_piece(&ConnPool::default(), &open(b.path()), &fetch_opts(&busy, 0), &CancelToken::new()).await
            })
        };
        until_stats(&busy, |st| st.bytes_served > 0).await;
        let b = tempfile::tempdir().unwrap();
        let dst = open(b.path());
        let (race, started) = race_of(vec![fetch_opts(&busy, 1), fetch_opts(&free, 2)]);
        let (index, rec) = fetch_race(&ConnPool::default(), &dst, race, &CancelToken::new()).await.unwrap();
        assert_eq!((index, rec.number), (1, 2));
        assert_eq!(started.await.unwrap(), 1);
        assert!(dst.piece(2).is_some() && dst.piece(1).is_none());
        // The request that waited at the busy parent was withdrawn and gave its waiting place
        // up at once: while piece 0 is still sending, the next child is queued, not refused.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!hog.is_finished(), "the slow send outlasts the race");
        fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&busy, 1), &CancelToken::new()).await.unwrap();
        hog.await.unwrap().unwrap();
        assert_eq!(busy.stats().pieces_served, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_race_whose_candidates_all_refuse_fails_with_their_reason() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let srv = server(a.path(), ServePath::Sendfile, 0).await;
        let b = tempfile::tempdir().unwrap();
        // Piece 1 is not on the parent: not found beats nothing.
        let (race, started) = race_of(vec![fetch_opts(&srv, 1)]);
        let e = fetch_race(&ConnPool::default(), &open(b.path()), race, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound, "{e}");
        assert!(started.await.is_err(), "nobody started");
        // A race nobody adds a candidate to ends as soon as its sender is gone.
        let (race, _) = race_of(Vec::new());
        let e = fetch_race(&ConnPool::default(), &open(b.path()), race, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_the_slots_and_the_queue_are_refused_as_busy() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2]).await;
        let srv = one_slot_server(a.path()).await;
        let spawn_fetch = |n: u32| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let b = tempfile::tempdir().unwrap();
                let dst = open(b.path());
                fetch_piece(&ConnPool::default(), &dst, &fetch_opts(&srv, n), &CancelToken::new()).await.map(|_| ())
            })
        };
        let sending = spawn_fetch(0);
        until_stats(&srv, |st| st.bytes_served > 0).await;
        let waiting = spawn_fetch(1);
        // The waiting request is admitted once its frame is read; give it the time to arrive.
        until_stats(&srv, |st| st.connections_accepted >= 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = tempfile::tempdir().unwrap();
        let e = fetch_piece(&ConnPool::default(), &open(b.path()), &fetch_opts(&srv, 2), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy, "{e}");
        sending.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
        // With the slot free again the refused piece is served.
        fetch_piece(&ConnPool::default(), &open(b.path()), &fetch_opts(&srv, 2), &CancelToken::new()).await.unwrap();
    }

    /// A "parent" that answers every request on its first connection with the reply header,
    /// the piece metadata and `body` bytes of piece 0, then goes silent with the connection
    /// open, as a parent stopped with SIGSTOP mid-piece looks on the wire (its kernel still
    /// acknowledges). Later connections are accepted and never answered.
    async fn freezing_parent(body: usize) -> (String, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut first = true;
            while let Ok((mut s, _)) = l.accept().await {
                if std::mem::take(&mut first) {
                    let mut req = [0u8; HEADER_LEN + vortex::DOWNLOAD_PIECE_LEN];
                    s.read_exact(&mut req).await.unwrap();
                    let d = data();
                    let meta = vortex::PieceMeta {
                        number: 0,
                        offset: 0,
                        length: PIECE,
                        digest: crate::digest::crc32_string(crc32fast::hash(&d[..PIECE as usize])),
                        parent_id: String::new(),
                        traffic_type: vortex::TRAFFIC_REMOTE_PEER,
                        cost_secs: 0,
                        created_at_secs: 0,
                    };
                    s.write_all(&vortex::encode_piece_content(&meta)).await.unwrap();
                    s.write_all(&d[..body]).await.unwrap();
                }
                conns.push(s);
            }
        });
        (addr, hold)
    }

    fn stalling_opts(addr: &str) -> FetchOptions {
        FetchOptions {
            addr: addr.to_string(),
            protocol: Protocol::Tcp,
            task_id: TID.into(),
            number: 0,
            expected_digest: None,
            parent_id: "frozen".into(),
            connect_timeout: Duration::from_secs(2),
            piece_timeout: Duration::from_secs(120),
            first_byte_timeout: Some(Duration::from_millis(800)),
            stall_timeout: Some(Duration::from_millis(300)),
            tls: None,
            allow_plaintext: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parent_that_goes_silent_mid_piece_fails_it_as_stalled_within_the_idle_deadline() {
        let (addr, hold) = freezing_parent(100_000).await;
        let b = tempfile::tempdir().unwrap();
        let dst = open(b.path());
        let t0 = Instant::now();
        let e = fetch_piece(&ConnPool::default(), &dst, &stalling_opts(&addr), &CancelToken::new()).await.unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.code, ErrorCode::Stalled, "{e}");
        assert!(e.message.contains("after 100000 of 262144 bytes"), "{e}");
        // The idle deadline (300 ms), not the piece timeout (120 s) and not the first-byte one.
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
        assert!(dst.piece(0).is_none());
        // A request the parent never starts answering is a stall after the first-byte deadline.
        let t0 = Instant::now();
        let e = fetch_piece(&ConnPool::default(), &dst, &stalling_opts(&addr), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Stalled, "{e}");
        assert!(
            t0.elapsed() >= Duration::from_millis(800) && t0.elapsed() < Duration::from_secs(4),
            "{:?}",
            t0.elapsed()
        );
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_race_drops_a_silent_candidate_and_fails_as_stalled_when_its_winner_goes_silent() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let live = server(a.path(), ServePath::Sendfile, 0).await;
        let b = tempfile::tempdir().unwrap();
        // The frozen parent answers nobody: its candidate drops out, the live one wins.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                conns.push(s);
            }
        });
        let (race, _) = race_of(vec![stalling_opts(&silent)]);
        let stalled = race.stalled.clone();
        let t0 = Instant::now();
        let e = fetch_race(&ConnPool::default(), &open(b.path()), race, &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Stalled, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        assert_eq!(*stalled.lock().unwrap(), vec![0]);
        // Beside a live parent the silent one costs nothing but its own deadline.
        let (race, _) = race_of(vec![stalling_opts(&silent), fetch_opts(&live, 0)]);
        let (index, _) = fetch_race(&ConnPool::default(), &open(b.path()), race, &CancelToken::new()).await.unwrap();
        assert_eq!(index, 1);
        hold.abort();
        // A winner that stops mid-piece fails the race as stalled, long before its timeout.
        let (frozen, hold) = freezing_parent(50_000).await;
        let (race, started) = race_of(vec![stalling_opts(&frozen)]);
        let t0 = Instant::now();
        let e = fetch_race(&ConnPool::default(), &open(tempfile::tempdir().unwrap().path()), race, &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Stalled, "{e}");
        assert_eq!(started.await.unwrap(), 0);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        hold.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_but_live_parent_is_not_cut_by_the_idle_deadline() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        // 192 KiB/s: the 256 KiB piece takes about a second, in 64 KiB grants 1/3 s apart.
        let srv = server(a.path(), DEFAULT_SERVE_PATH, 192 * 1024).await;
        let opts = FetchOptions {
            first_byte_timeout: Some(Duration::from_millis(700)),
            stall_timeout: Some(Duration::from_millis(700)),
            ..fetch_opts(&srv, 0)
        };
        let t0 = Instant::now();
        fetch_piece(&ConnPool::default(), &open(b.path()), &opts, &CancelToken::new()).await.unwrap();
        // Longer than either deadline: a whole-piece bound of 700 ms would have cut it.
        assert!(t0.elapsed() > Duration::from_millis(700), "{:?}", t0.elapsed());
    }

    /// A server answering over QUIC too, on an ephemeral UDP port of the same IP.
    async fn quic_server(root: &Path, upload_slots: usize, upload_queue: usize, rate: u64) -> Arc<PieceServer> {
        let cfg = ServerConfig {
            roots: vec![root.to_path_buf()],
            rate_limit: rate,
            upload_slots,
            upload_queue,
            quic_port: Some(0),
            ..Default::default()
        };
        Arc::new(PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap())
    }

    fn quic_opts(srv: &PieceServer, n: u32) -> FetchOptions {
        FetchOptions {
            addr: srv.quic_addr().expect("a QUIC server").to_string(),
            protocol: Protocol::Quic,
            ..fetch_opts(srv, n)
        }
    }

    /// Sends `bytes` on a new stream, finishes it as Dragonfly's client does, reads to the end.
    async fn raw_quic_exchange(pool: &crate::quic::QuicPool, srv: &PieceServer, bytes: &[u8]) -> Vec<u8> {
        let addr = srv.quic_addr().unwrap().to_string();
        let (mut s, _) = pool.open(&addr, Duration::from_secs(2), false).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.unwrap().unwrap();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_delivers_verified_pieces_on_streams_of_one_connection() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2, 3]).await;
        let srv = quic_server(a.path(), 0, 0, 0).await;
        assert_eq!(srv.quic_addr().unwrap().ip(), srv.local_addr().ip(), "bound to the TCP server's IP");
        assert_ne!(srv.quic_addr().unwrap().port(), 0);
        let dst = open(b.path());
        let pool = ConnPool::default();
        for n in 0..4 {
            let rec = fetch_piece(&pool, &dst, &quic_opts(&srv, n), &CancelToken::new()).await.unwrap();
            assert_eq!(rec.parent_id, "parent-peer");
            // The landed piece's CRC-32 is what the parent's store recorded for it.
            let want = &data()[rec.offset as usize..(rec.offset + rec.length) as usize];
            assert_eq!(rec.digest, crate::digest::digest(crate::digest::Algorithm::Crc32, want));
        }
        let got = std::fs::read(&dst.info().content_path).unwrap();
        assert_eq!(crate::digest::sha256_bytes(&got), crate::digest::sha256_bytes(&data()));
        let st = srv.stats();
        assert_eq!((st.pieces_served, st.quic_pieces_served), (4, 4));
        assert_eq!((st.bytes_served, st.quic_bytes_served), (CONTENT, CONTENT));
        assert_eq!(st.connections_accepted, 0, "nothing went over TCP");
        assert_eq!(st.quic_connections_accepted, 1, "one connection, a stream per piece");
        assert_eq!(pool.quic().connects(), 1);
        assert_eq!(srv.drain_uploads().len(), 4);
        // TCP still serves next to it.
        let c = tempfile::tempdir().unwrap();
        fetch_piece(&pool, &open(c.path()), &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(srv.stats().quic_pieces_served, 4);
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_idle_connections_to_a_parent_that_left_closes_tcp_and_quic_alike() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1]).await;
        let srv = quic_server(a.path(), 0, 0, 0).await;
        let dst = open(b.path());
        let pool = ConnPool::default();
        fetch_piece(&pool, &dst, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        fetch_piece(&pool, &dst, &quic_opts(&srv, 1), &CancelToken::new()).await.unwrap();
        assert_eq!((pool.idle_count(), pool.quic().open_count()), (1, 1));
        // Another address is untouched.
        assert_eq!(pool.close_idle_to("127.0.0.1:1"), 0);
        assert_eq!(pool.close_idle_to(&srv.local_addr().to_string()), 1);
        assert_eq!(pool.close_idle_to(&srv.quic_addr().unwrap().to_string()), 1);
        assert_eq!((pool.idle_count(), pool.quic().open_count()), (0, 0));
        // The parent still serves: the next piece connects anew.
        let c = tempfile::tempdir().unwrap();
        let again = open(c.path());
        fetch_piece(&pool, &again, &fetch_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        fetch_piece(&pool, &again, &quic_opts(&srv, 1), &CancelToken::new()).await.unwrap();
        assert_eq!(srv.stats().connections_accepted, 2);
        assert_eq!(pool.quic().connects(), 2);
        srv.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_unknown_tasks_and_malformed_frames_get_error_frames() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0]).await;
        let srv = quic_server(a.path(), 0, 0, 0).await;
        let pool = ConnPool::default();
        // An unknown task: one Error frame (NotFound), then the stream ends.
        let other = "f".repeat(64);
        let reply = raw_quic_exchange(pool.quic(), &srv, &vortex::encode_download_piece(&other, 0).unwrap()).await;
        assert_error_frame(&reply, vortex::ERR_NOT_FOUND);
        // A piece the parent does not have, through our client.
        let dst = open(b.path());
        let e = fetch_piece(&pool, &dst, &quic_opts(&srv, 1), &CancelToken::new()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound, "{e}");
        assert!(dst.piece(1).is_none());
        // Malformed frames: an unknown tag, a truncated value.
        let valid = vortex::encode_download_piece(TID, 0).unwrap();
        let mut unknown = valid.to_vec();
        unknown[1] = 9;
        assert_error_frame(&raw_quic_exchange(pool.quic(), &srv, &unknown).await, vortex::ERR_INVALID_ARGUMENT);
        assert_error_frame(&raw_quic_exchange(pool.quic(), &srv, &valid[..40]).await, vortex::ERR_INVALID_ARGUMENT);
        assert!(srv.stats().errors_sent >= 4);
        // The connection survived every refusal and still serves.
        fetch_piece(&pool, &dst, &quic_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        assert_eq!(srv.stats().quic_connections_accepted, 1);
        assert_eq!(srv.stats().quic_pieces_served, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_and_tcp_share_the_upload_slots_and_the_queue() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2]).await;
        // One slot, one waiting place, 256 KiB/s: each send lasts most of a second.
        let srv = quic_server(a.path(), 1, 1, 256 * 1024).await;
        let spawn_fetch = |opts: FetchOptions| {
            tokio::spawn(async move {
                let b = tempfile::tempdir().unwrap();
                fetch_piece(&ConnPool::default(), &open(b.path()), &opts, &CancelToken::new()).await.map(|_| ())
            })
        };
        // Sending over TCP, waiting over QUIC: the QUIC request is refused, the slot is taken.
        let sending = spawn_fetch(fetch_opts(&srv, 0));
        until_stats(&srv, |st| st.bytes_served > 0).await;
        let waiting = spawn_fetch(quic_opts(&srv, 1));
        until_stats(&srv, |st| st.quic_connections_accepted >= 1).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let b = tempfile::tempdir().unwrap();
        let e = fetch_piece(&ConnPool::default(), &open(b.path()), &quic_opts(&srv, 2), &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy, "{e}");
        sending.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
        // With the slot free again the refused piece is served.
        fetch_piece(&ConnPool::default(), &open(b.path()), &quic_opts(&srv, 2), &CancelToken::new()).await.unwrap();
        let st = srv.stats();
        assert_eq!((st.pieces_served, st.quic_pieces_served), (3, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quic_race_withdraws_its_losing_stream_from_the_busy_parent() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2]).await;
        let busy = quic_server(a.path(), 1, 1, 256 * 1024).await;
        let free = quic_server(a.path(), 0, 0, 0).await;
        let hog = {
            let opts = quic_opts(&busy, 0);
            tokio::spawn(async move {
                let b = tempfile::tempdir().unwrap();
                fetch_piece(&ConnPool::default(), &open(b.path()), &opts, &CancelToken::new()).await
            })
        };
        until_stats(&busy, |st| st.bytes_served > 0).await;
        let b = tempfile::tempdir().unwrap();
        let dst = open(b.path());
        let pool = ConnPool::default();
        let (race, started) = race_of(vec![quic_opts(&busy, 1), quic_opts(&free, 2)]);
        let (index, rec) = fetch_race(&pool, &dst, race, &CancelToken::new()).await.unwrap();
        assert_eq!((index, rec.number), (1, 2));
        assert_eq!(started.await.unwrap(), 1);
        // The stream that waited at the busy parent was dropped (STOP_SENDING) and gave its
        // waiting place up: while piece 0 still sends, the next request is queued, not refused.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!hog.is_finished(), "the slow send outlasts the race");
        fetch_piece(&pool, &dst, &quic_opts(&busy, 1), &CancelToken::new()).await.unwrap();
        hog.await.unwrap().unwrap();
        assert_eq!(busy.stats().quic_pieces_served, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quic_connections_are_shared_while_idle_replaced_when_closed_and_reaped_when_unused() {
        let a = tempfile::tempdir().unwrap();
        seeded(a.path(), &[0, 1, 2, 3]).await;
        let srv = quic_server(a.path(), 0, 0, 0).await;
        let quic = crate::quic::QuicPool::with_idle_timeout(Duration::from_millis(300));
        let addr = srv.quic_addr().unwrap().to_string();
        // Two streams at once: the second gets a connection of its own.
        let (s1, made1) = quic.open(&addr, Duration::from_secs(2), false).await.unwrap();
        let (s2, made2) = quic.open(&addr, Duration::from_secs(2), false).await.unwrap();
        assert!(made1 && made2);
        drop((s1, s2));
        // An idle connection is reused.
        let (s3, made3) = quic.open(&addr, Duration::from_secs(2), false).await.unwrap();
        assert!(!made3);
        drop(s3);
        assert_eq!(quic.connects(), 2);
        // Both are closed once unused for the idle timeout (keep-alives would hold them forever).
        for _ in 0..200 {
            if quic.open_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(quic.open_count(), 0);

        // A parent that restarts on the same port: the pooled connection it closed is replaced.
        let pool = ConnPool::default();
        let b = tempfile::tempdir().unwrap();
        let dst = open(b.path());
        fetch_piece(&pool, &dst, &quic_opts(&srv, 0), &CancelToken::new()).await.unwrap();
        let port = srv.quic_addr().unwrap().port();
        srv.close().await;
        let cfg = ServerConfig { roots: vec![a.path().to_path_buf()], quic_port: Some(port), ..Default::default() };
        // The old endpoint's driver lets its socket go a moment after the close.
        let mut again = PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg.clone()).await;
        for _ in 0..100 {
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            again = PieceServer::start("127.0.0.1:0".parse().unwrap(), cfg.clone()).await;
        }
        let again = again.unwrap();
        fetch_piece(&pool, &dst, &quic_opts(&again, 1), &CancelToken::new()).await.unwrap();
        assert_eq!(pool.quic().connects(), 2);
        assert_eq!(again.stats().quic_pieces_served, 1);
    }
}
