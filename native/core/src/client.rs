//! Piece client: fetches one piece from a parent over vortex TCP and lands it in the local
//! store. Bytes are received into a pooled aligned buffer and hashed chunk by chunk as they
//! arrive (no second pass); only when the digest matches is the buffer written to the task file
//! at the piece's offset (O_DIRECT when the store uses it) and the piece marked finished.
//! Connections are pooled per parent address; a Dragonfly parent closes after every piece, so
//! a pooled connection that turns out dead is replaced once, transparently.
//!
//! A parent that goes silent (a stopped process: its kernel keeps the connection open and
//! acknowledges our request, but nothing answers) fails the piece with `ErrorCode::Stalled`
//! after the request's own deadlines, which the caller derives from the speed it measured:
//! `first_byte_timeout` for the reply to start, `stall_timeout` for every wait after that.
//! Over QUIC (`Protocol::Quic`, Dragonfly's `download.protocol: quic`) each request is a
//! bidirectional stream on a pooled connection (see `quic::QuicPool`); the reply is read and the
//! piece verified and landed by the same code as over TCP.

use crate::aligned::{PooledBuf, PIECE_POOL};
use crate::cancel::CancelToken;
use crate::digest::{self, Hasher};
use crate::error::{CoreError, ErrorCode, Result};
use crate::quic::{QuicPool, QuicStream};
use crate::store::{PieceRecord, PieceStore, Prepared, WriteMeta};
use crate::vortex::{self, Header, HEADER_LEN};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Socket reads land in the piece buffer this many bytes at a time, each hashed right away.
const RECV_CHUNK: usize = 1 << 20;

/// The vortex transport a piece is fetched over (Dragonfly's `download.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Quic,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "quic" => Ok(Self::Quic),
            o => Err(CoreError::new(ErrorCode::InvalidArgument, format!("unknown piece protocol {o:?}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Parent address, `host:port`: its vortex TCP port, or its QUIC port with `Protocol::Quic`.
    pub addr: String,
    pub protocol: Protocol,
    pub task_id: String,
    pub number: u32,
    /// Digest the scheduler/parent announced, checked in addition to the one in the reply.
    pub expected_digest: Option<String>,
    /// Peer id of the parent, recorded as the piece's parent.
    pub parent_id: String,
    pub connect_timeout: Duration,
    /// Bound on the whole exchange (request, metadata and body).
    pub piece_timeout: Duration,
    /// Longest wait from the request to the reply header. A parent answers once one of its
    /// upload slots is free, so this covers its queue: it is longer than `stall_timeout`.
    /// `None`: only `piece_timeout` bounds it.
    pub first_byte_timeout: Option<Duration>,
    /// Longest silence once the parent started answering (the reply value and every read of
    /// the body): a live parent's bytes keep coming however slow its link, so a piece that is
    /// legitimately long on a slow link is not cut, while a parent that stopped is given up on
    /// within this. `None`: only `piece_timeout` bounds it.
    pub stall_timeout: Option<Duration>,
    /// Vortex over TCP under mutual TLS with this parent (tls.rs); None = plaintext. Ignored
    /// over QUIC.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// With `tls`: a parent whose handshake fails is asked in plaintext, now and from then on
    /// (a Dragonfly parent in a mixed swarm speaks plaintext vortex only).
    pub allow_plaintext: bool,
}

/// Whether `addr` failed a TLS handshake and is asked in plaintext (tests, stats).
pub fn knows_plaintext_parent(addr: &str) -> bool {
    plaintext_parents().lock().is_ok_and(|p| p.contains(addr))
}

/// Parents that failed a TLS handshake while plaintext was allowed (see `allow_plaintext`).
fn plaintext_parents() -> &'static Mutex<std::collections::HashSet<String>> {
    static SET: std::sync::OnceLock<Mutex<std::collections::HashSet<String>>> = std::sync::OnceLock::new();
    SET.get_or_init(|| Mutex::new(std::collections::HashSet::new()))
}

/// A connection to a parent's TCP piece port: plaintext, or under TLS. (Reading the TLS stream
/// through a 256 KiB BufReader, so that rustls's 4 KiB reads from its transport became copies
/// instead of syscalls, measured slower: dfget-p2p-mtls-1g 0.779/0.754 with it, 0.871/0.884
/// without, same runs.)
pub enum PeerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl PeerStream {
    /// The socket underneath, for readiness and peeking.
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Pooled connections are per parent and per security: a TLS connection never serves a
/// plaintext request, nor the reverse.
fn pool_key(opts: &FetchOptions) -> String {
    if opts.tls.is_some() {
        format!("tls:{}", opts.addr)
    } else {
        opts.addr.clone()
    }
}

/// `fut` under an optional deadline: `None` when the deadline passed first.
async fn within<F: Future>(limit: Option<Duration>, fut: F) -> Option<F::Output> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

fn ms(d: Option<Duration>) -> u128 {
    d.map_or(0, |d| d.as_millis())
}

/// Idle connections per parent address. Each idle connection is watched while it waits: when
/// the parent closes it (a Dragonfly parent after every piece, a parent that stops or leaves)
/// or sends anything unasked, it is dropped at once instead of sitting in CLOSE-WAIT until a
/// later `take` finds it dead (issue 19 counted 8 such sockets per dead parent address).
pub struct ConnPool {
    idle: Arc<Mutex<HashMap<String, Vec<IdleConn>>>>,
    next_id: AtomicU64,
    max_idle_per_addr: usize,
    idle_timeout: Duration,
    /// Connections for pieces fetched over QUIC.
    quic: Arc<QuicPool>,
}

/// One idle connection: its watcher task owns the socket and hands it over on request.
struct IdleConn {
    id: u64,
    hand_over: oneshot::Sender<oneshot::Sender<PeerStream>>,
}

impl Default for ConnPool {
    fn default() -> Self {
        Self {
            idle: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            max_idle_per_addr: 8,
            idle_timeout: Duration::from_secs(30),
            quic: Arc::new(QuicPool::default()),
        }
    }
}

impl ConnPool {
    /// The most recently pooled live connection to `addr`, if any.
    async fn take(&self, addr: &str) -> Option<PeerStream> {
        loop {
            let conn = {
                let mut idle = self.idle.lock().ok()?;
                let list = idle.get_mut(addr)?;
                let conn = list.pop();
                if list.is_empty() {
                    idle.remove(addr);
                }
                conn?
            };
            let (reply, handed) = oneshot::channel();
            // A watcher that already let its connection go answers nothing: try the next one.
            if conn.hand_over.send(reply).is_ok() {
                if let Ok(s) = handed.await {
                    return Some(s);
                }
            }
        }
    }

    /// Keeps `s` for the next piece from `addr`. Must run inside the tokio runtime.
    fn put(&self, addr: &str, s: PeerStream) {
        let Ok(mut idle) = self.idle.lock() else { return };
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() >= self.max_idle_per_addr {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (hand_over, asked) = oneshot::channel();
        list.push(IdleConn { id, hand_over });
        drop(idle);
        tokio::spawn(watch_idle(Arc::clone(&self.idle), addr.to_string(), id, s, asked, self.idle_timeout));
    }

    /// Drops every idle connection to `addr` (a parent that stalled: a pooled connection to it
    /// would only stall the next piece too). Their watchers close the sockets.
    pub fn forget(&self, addr: &str) -> usize {
        let gone = self.idle.lock().ok().and_then(|mut idle| idle.remove(addr));
        // Dropping an entry drops its hand-over channel, which ends its watcher.
        gone.map_or(0, |g| g.len())
    }

    /// Closes what is idle towards a parent that left every download of ours (its address
    /// `addr`, plain or TLS, or its QUIC address): nothing would ask for those connections
    /// again before the idle timeout closes them, and the parent holds a socket for each.
    /// Connections in use are left to finish. Returns how many were closed.
    pub fn close_idle_to(&self, addr: &str) -> usize {
        self.forget(addr) + self.forget(&format!("tls:{addr}")) + self.quic.close_idle_to(addr)
    }

    /// Number of idle connections held (for tests and stats).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)
    }

    /// The QUIC connections.
    pub fn quic(&self) -> &QuicPool {
        &self.quic
    }
}

/// Owns an idle connection until it is asked for, closed by the parent, or idle too long; in
/// the last two cases it drops the socket (our FIN goes out) and its entry in the pool.
async fn watch_idle(
    pool: Arc<Mutex<HashMap<String, Vec<IdleConn>>>>,
    addr: String,
    id: u64,
    s: PeerStream,
    mut asked: oneshot::Receiver<oneshot::Sender<PeerStream>>,
    idle_timeout: Duration,
) {
    let deadline = tokio::time::sleep(idle_timeout);
    tokio::pin!(deadline);
    let taker = loop {
        tokio::select! {
            ask = &mut asked => break ask.ok(),
            ready = s.tcp().readable() => {
                if ready.is_err() {
                    break None;
                }
                // Readiness can be spurious; EOF, unasked bytes (a TLS close_notify too) or an
                // error end the wait.
                match s.tcp().try_read(&mut [0u8; 1]) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    _ => break None,
                }
            }
            _ = &mut deadline => break None,
        }
    };
    match taker {
        // A taker that gave up meanwhile drops the socket with its reply channel.
        Some(reply) => {
            let _ = reply.send(s);
        }
        None => {
            drop(s);
            if let Ok(mut idle) = pool.lock() {
                if let Some(list) = idle.get_mut(&addr) {
                    list.retain(|c| c.id != id);
                    if list.is_empty() {
                        idle.remove(&addr);
                    }
                }
            }
        }
    }
}

/// Process-wide pool used by the binding.
pub fn default_pool() -> &'static ConnPool {
    static POOL: std::sync::OnceLock<ConnPool> = std::sync::OnceLock::new();
    POOL.get_or_init(ConnPool::default)
}

/// A new connection to `opts.addr`, with the TLS handshake when `opts.tls` (both within the
/// connect timeout). A parent whose certificate the cluster CA did not sign, or does not name
/// the address dialled, fails with DF_AUTH.
async fn connect(opts: &FetchOptions) -> Result<PeerStream> {
    let addr = &opts.addr;
    let tcp = || async {
        let s = TcpStream::connect(addr).await.map_err(|e| CoreError::io(&format!("connect to {addr}"), e))?;
        let _ = s.set_nodelay(true);
        Ok::<_, CoreError>(s)
    };
    let work = async {
        let tls = match &opts.tls {
            Some(t) if !(opts.allow_plaintext && plaintext_parents().lock().is_ok_and(|p| p.contains(addr))) => t,
            _ => return Ok(PeerStream::Plain(tcp().await?)),
        };
        let name = crate::tls::server_name(addr)?;
        match tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp().await?).await {
            Ok(t) => Ok(PeerStream::Tls(Box::new(t))),
            Err(_) if opts.allow_plaintext => {
                if let Ok(mut p) = plaintext_parents().lock() {
                    p.insert(addr.clone());
                }
                Ok(PeerStream::Plain(tcp().await?))
            }
            Err(e) => Err(CoreError::new(ErrorCode::Auth, format!("TLS handshake with parent {addr} failed: {e}"))),
        }
    };
    tokio::time::timeout(opts.connect_timeout, work)
        .await
        .map_err(|_| CoreError::new(ErrorCode::Timeout, format!("connect to {addr} timed out")))?
}

/// Fetches piece `opts.number` into `store`, verifying it before it is marked finished.
pub async fn fetch_piece(
    pool: &ConnPool,
    store: &Arc<PieceStore>,
    opts: &FetchOptions,
    cancel: &CancelToken,
) -> Result<PieceRecord> {
    if let Some(r) = store.piece(opts.number) {
        return Ok(r);
    }
    let work = async {
        tokio::time::timeout(opts.piece_timeout, fetch_inner(pool, store, opts)).await.map_err(|_| {
            CoreError::new(ErrorCode::Timeout, format!("piece {} from {} timed out", opts.number, opts.addr))
        })?
    };
    let r = tokio::select! {
        r = work => r,
        _ = cancel.cancelled() => Err(CoreError::new(ErrorCode::Aborted, "piece download was aborted")),
    };
    if matches!(&r, Err(e) if e.code == ErrorCode::Stalled) {
        pool.forget(&pool_key(opts));
    }
    r
}

async fn fetch_inner(pool: &ConnPool, store: &Arc<PieceStore>, opts: &FetchOptions) -> Result<PieceRecord> {
    let started_ms = crate::store::now_ms();
    let (reply, value) = match opts.protocol {
        Protocol::Tcp => start_piece(Some(pool), opts.clone()).await.map(|(s, v)| (Reply::Tcp(s), v))?,
        Protocol::Quic => start_piece_quic(&pool.quic, opts).await.map(|(s, v)| (Reply::Quic(s), v))?,
    };
    receive_piece(pool, store, opts, reply, value, started_ms).await
}

/// Where a reply's body is read from once the parent started sending.
enum Reply {
    /// Pooled again after the piece.
    Tcp(PeerStream),
    /// Ends with the piece.
    Quic(QuicStream),
}

/// One raced request up to its body: over TCP on a connection of its own (`pooled`, taken from
/// the pool for this request, or a new one), over QUIC on a stream of its own on a pooled
/// connection; dropping either withdraws the request. A refusal drops the connection too.
///
/// Raced requests used to open a new connection each, so every piece cost a connect (about one
/// connection per piece: 1,316 TCP opens in one `dfget-p2p-cached-1g` run) and, under mTLS, a
/// full TLS handshake with its ECDSA signatures and an extra round trip: `ring`'s P-256
/// arithmetic was 3 % of all samples in `dfget-p2p-mtls-1g`, the host 43 % idle, the mTLS child
/// at 0.63 of the plaintext one (0.87-0.88 since; 2,612 TCP opens per run became 76). The
/// winner's connection goes back to the pool after its body (receive_piece), so with one parent
/// every piece but the first reuses a connection.
async fn start_candidate(quic: Arc<QuicPool>, pooled: Option<PeerStream>, c: FetchOptions) -> Result<(Reply, Vec<u8>)> {
    match c.protocol {
        Protocol::Tcp => {
            let (mut sock, head) = exchange(pooled, &c).await?;
            read_reply(&mut sock, head, &c).await?.map(|v| (Reply::Tcp(sock), v))
        }
        Protocol::Quic => start_piece_quic(&quic, &c).await.map(|(s, v)| (Reply::Quic(s), v)),
    }
}

/// Candidates arriving for a race, and who hears when one of them starts sending.
pub struct Race {
    pub candidates: mpsc::UnboundedReceiver<FetchOptions>,
    /// Told the winner's index once its parent starts sending, before the body is read.
    pub started: Option<oneshot::Sender<u32>>,
    /// Bound on the whole race, waiting in queues included.
    pub timeout: Duration,
    /// Indices of the candidates whose parent did not start answering within their
    /// `first_byte_timeout` (the caller counts them against the parent), in the order noticed.
    pub stalled: Arc<Mutex<Vec<u32>>>,
}

/// Asks every candidate (a parent and a piece it holds) at once, each on a connection of its
/// own, and lands the piece of the first parent that starts sending; the other requests are
/// dropped with their connections, so a parent still holding one in its upload queue skips it.
/// A child thus waits in the queue of every parent that could serve it and is served by
/// whichever frees its upload first, instead of betting on one parent and idling while another
/// sits free. Candidates may keep arriving while no parent has started (a parent that got a
/// piece meanwhile). Fails once every candidate so far refused or failed before sending.
/// A candidate whose parent misses its first-byte deadline drops out (listed in
/// `race.stalled`); a winner that goes silent mid-piece fails the race with `Stalled`.
/// Returns the winner's index in arrival order.
pub async fn fetch_race(
    pool: &ConnPool,
    store: &Arc<PieceStore>,
    mut race: Race,
    cancel: &CancelToken,
) -> Result<(u32, PieceRecord)> {
    let work = async {
        let mut asked: Vec<FetchOptions> = Vec::new();
        let mut pending = JoinSet::new();
        let mut more = true;
        let mut failure: Option<CoreError> = None;
        loop {
            tokio::select! {
                c = race.candidates.recv(), if more => match c {
                    Some(c) => {
                        let index = asked.len();
                        asked.push(c.clone());
                        let quic = pool.quic.clone();
                        let pooled = match c.protocol {
                            Protocol::Tcp => pool.take(&pool_key(&c)).await,
                            Protocol::Quic => None,
                        };
                        pending.spawn(async move { (index, start_candidate(quic, pooled, c).await) });
                    }
                    None => more = false,
                },
                Some(joined) = pending.join_next(), if !pending.is_empty() => {
                    let Ok((index, r)) = joined else { continue };
                    match r {
                        Ok((reply, value)) => {
                            pending.abort_all();
                            if let Some(tx) = race.started.take() {
                                let _ = tx.send(index as u32);
                            }
                            let c = &asked[index];
                            let rec = receive_piece(pool, store, c, reply, value, crate::store::now_ms())
                                .await
                                .inspect_err(|e| {
                                    if e.code == ErrorCode::Stalled {
                                        pool.forget(&pool_key(c));
                                    }
                                })?;
                            return Ok((index as u32, rec));
                        }
                        // A busy refusal says least about the task: any other failure is the one to report.
                        Err(e) => {
                            if e.code == ErrorCode::Stalled {
                                pool.forget(&pool_key(&asked[index]));
                                if let Ok(mut s) = race.stalled.lock() {
                                    s.push(index as u32);
                                }
                            }
                            if failure.as_ref().is_none_or(|f| f.code == ErrorCode::Busy) {
                                failure = Some(e);
                            }
                        }
                    }
                }
                else => break,
            }
            if pending.is_empty() && (failure.is_some() || !more) {
                break;
            }
        }
        Err(failure.unwrap_or_else(|| CoreError::new(ErrorCode::InvalidArgument, "race without candidates")))
    };
    tokio::select! {
        r = tokio::time::timeout(race.timeout, work) => r.map_err(|_| CoreError::new(ErrorCode::Timeout, "no parent of the race delivered its piece in time"))?,
        _ = cancel.cancelled() => Err(CoreError::new(ErrorCode::Aborted, "piece download was aborted")),
    }
}

/// Sends the request and reads the reply up to the piece metadata: a parent answers once an
/// upload slot is free, so this returns when the body is about to flow. The request goes on a
/// pooled connection when `pool` has one, else on a new one.
async fn start_piece(pool: Option<&ConnPool>, opts: FetchOptions) -> Result<(PeerStream, Vec<u8>)> {
    let pooled = match pool {
        Some(p) => p.take(&pool_key(&opts)).await,
        None => None,
    };
    let (mut sock, head) = exchange(pooled, &opts).await?;
    match read_reply(&mut sock, head, &opts).await? {
        Ok(value) => Ok((sock, value)),
        Err(refusal) => {
            // The exchange completed cleanly, so the connection can serve the next piece.
            if let Some(pool) = pool {
                pool.put(&pool_key(&opts), sock);
            }
            Err(refusal)
        }
    }
}

/// Sends the request on `pooled` (a connection taken from the pool, held by this request alone)
/// or on a new connection, and reads the reply's header. A pooled connection may have been
/// closed by the parent meanwhile; failing before the first reply byte on such a connection
/// earns one retry on a fresh one. A stall does not: the parent is silent, not the connection
/// dead, and a retry would only wait as long again.
async fn exchange(pooled: Option<PeerStream>, opts: &FetchOptions) -> Result<(PeerStream, Header)> {
    let request = vortex::encode_download_piece(&opts.task_id, opts.number)?;
    if let Some(mut s) = pooled {
        match request_header(&mut s, &request, opts).await {
            Ok(h) => return Ok((s, h)),
            Err(e) if e.code == ErrorCode::Stalled => return Err(e),
            Err(_) => {}
        }
    }
    let mut s = connect(opts).await?;
    let h = request_header(&mut s, &request, opts).await?;
    Ok((s, h))
}

/// `start_piece` over QUIC: the request goes on a new stream of a pooled connection.
async fn start_piece_quic(pool: &QuicPool, opts: &FetchOptions) -> Result<(QuicStream, Vec<u8>)> {
    let request = vortex::encode_download_piece(&opts.task_id, opts.number)?;
    let mut fresh = false;
    loop {
        let (mut s, made) = pool.open(&opts.addr, opts.connect_timeout, fresh).await?;
        match quic_request(&mut s, &request).await {
            Ok(head) => return read_reply(&mut s, head, opts).await?.map(|value| (s, value)),
            // A pooled connection the parent dropped meanwhile (it restarted, or timed the
            // connection out) earns one retry on a new one.
            Err(_) if !made && !fresh && s.connection_lost() => fresh = true,
            Err(e) => return Err(e),
        }
    }
}

async fn quic_request(s: &mut QuicStream, request: &[u8]) -> Result<Header> {
    s.write_all(request).await.map_err(|e| CoreError::io("send DownloadPiece", e))?;
    // One request per stream: finishing our half tells the parent no other follows.
    s.shutdown().await.map_err(|e| CoreError::io("finish the request stream", e))?;
    let mut hb = [0u8; HEADER_LEN];
    s.read_exact(&mut hb).await.map_err(|e| CoreError::io("read reply header", e))?;
    Ok(Header::decode(&hb))
}

/// Reads a reply's value after its header. Ok(Ok(value)) for a PieceContent (the body
/// follows), Ok(Err(refusal)) for an Error frame (the exchange is complete, the connection
/// usable), Err when the reply is broken.
async fn read_reply<S: AsyncRead + Unpin>(
    sock: &mut S,
    head: Header,
    opts: &FetchOptions,
) -> Result<std::result::Result<Vec<u8>, CoreError>> {
    if head.length > vortex::MAX_REPLY_VALUE {
        return Err(CoreError::new(ErrorCode::Protocol, format!("reply value of {} bytes is too large", head.length)));
    }
    let mut value = vec![0u8; head.length as usize];
    within(opts.stall_timeout, sock.read_exact(&mut value))
        .await
        .ok_or_else(|| {
            CoreError::new(
                ErrorCode::Stalled,
                format!(
                    "parent {} stopped within the reply to piece {}: nothing for {} ms",
                    opts.addr,
                    opts.number,
                    ms(opts.stall_timeout)
                ),
            )
        })?
        .map_err(|e| CoreError::io("read reply value", e))?;
    match head.tag {
        vortex::TAG_PIECE_CONTENT => Ok(Ok(value)),
        vortex::TAG_ERROR => {
            let (code, msg) = vortex::decode_error(&value)?;
            let code = match code {
                vortex::ERR_INTERNAL if msg.starts_with(vortex::BUSY_PREFIX) => ErrorCode::Busy,
                vortex::ERR_NOT_FOUND => ErrorCode::NotFound,
                vortex::ERR_INVALID_ARGUMENT => ErrorCode::InvalidArgument,
                _ => ErrorCode::Protocol,
            };
            Ok(Err(CoreError::new(code, format!("parent {} refused piece {}: {msg}", opts.addr, opts.number))))
        }
        t => Err(CoreError::new(ErrorCode::Protocol, format!("unexpected reply tag {t}"))),
    }
}

/// Reads the body and lands the piece if it verifies; a TCP connection goes back to the pool
/// once its body was read in full.
async fn receive_piece(
    pool: &ConnPool,
    store: &Arc<PieceStore>,
    opts: &FetchOptions,
    reply: Reply,
    value: Vec<u8>,
    started_ms: i64,
) -> Result<PieceRecord> {
    let (buf, prepared) = match reply {
        Reply::Tcp(mut sock) => {
            let body = receive_body(store, opts, &mut sock, &value).await?;
            pool.put(&pool_key(opts), sock);
            body
        }
        Reply::Quic(mut stream) => receive_body(store, opts, &mut stream, &value).await?,
    };
    let created_at_ms = Some(started_ms);
    store
        .write_prepared(opts.number, buf, prepared, WriteMeta { parent_id: opts.parent_id.clone(), created_at_ms })
        .await
}

/// Reads the body hashing it as it arrives; Ok only if its digest matches.
async fn receive_body<S: AsyncRead + Unpin>(
    store: &Arc<PieceStore>,
    opts: &FetchOptions,
    sock: &mut S,
    value: &[u8],
) -> Result<(PooledBuf, Prepared)> {
    let (offset, length) = store.piece_range(opts.number)?;
    let meta = vortex::decode_piece_content(value)?;
    // Dragonfly's client trusts only offset and digest and takes the length from SyncPieces;
    // our layout is fixed by the task, so all three must agree with it.
    if meta.number != opts.number || meta.offset != offset || meta.length != length {
        return Err(CoreError::new(
            ErrorCode::Protocol,
            format!(
                "parent sent piece {} at {}+{}, expected piece {} at {offset}+{length}",
                meta.number, meta.offset, meta.length, opts.number
            ),
        ));
    }
    let mut buf = PIECE_POOL
        .get(length as usize)
        .ok_or_else(|| CoreError::new(ErrorCode::Io, "cannot allocate a piece buffer"))?;
    let mut crc = crc32fast::Hasher::new();
    let mut extra = store.info().extra_digest.map(Hasher::new);
    {
        let dst = buf.as_mut_slice();
        let mut got = 0usize;
        while got < dst.len() {
            let end = (got + RECV_CHUNK).min(dst.len());
            let n = within(opts.stall_timeout, sock.read(&mut dst[got..end]))
                .await
                .ok_or_else(|| {
                    CoreError::new(
                        ErrorCode::Stalled,
                        format!(
                            "parent {} sent nothing for {} ms after {got} of {length} bytes of piece {}",
                            opts.addr,
                            ms(opts.stall_timeout),
                            opts.number
                        ),
                    )
                })?
                .map_err(|e| CoreError::io("read piece body", e))?;
            if n == 0 {
                return Err(CoreError::new(
                    ErrorCode::Protocol,
                    format!("parent closed after {got} of {length} bytes of piece {}", opts.number),
                ));
            }
            crc.update(&dst[got..got + n]);
            if let Some(h) = extra.as_mut() {
                h.update(&dst[got..got + n]);
            }
            got += n;
        }
    }
    let got_digest = digest::crc32_string(crc.finalize());
    let extra_digest = extra.map(Hasher::finish);
    for want in [Some(meta.digest.as_str()), opts.expected_digest.as_deref()].into_iter().flatten() {
        if want.is_empty() {
            continue;
        }
        // The digest the scheduler vouches for (the origin's, issue 21) is usually of the
        // store's extra algorithm: compared with the hash computed as the bytes arrived, so
        // verifying it costs no second pass over the piece.
        let got = if want.starts_with("crc32:") {
            Some(got_digest.as_str())
        } else {
            extra_digest.as_deref().filter(|d| same_algorithm(d, want))
        };
        let ok = match got {
            Some(got) => got.eq_ignore_ascii_case(want),
            None => digest::verify(want, buf.as_slice()).is_ok(),
        };
        if !ok {
            return Err(CoreError::new(
                ErrorCode::DigestMismatch,
                format!(
                    "piece {} from {}: expected {want}, got {}",
                    opts.number,
                    opts.addr,
                    got.unwrap_or(&got_digest)
                ),
            ));
        }
    }
    Ok((buf, Prepared { digest: got_digest, extra_digest }))
}

/// Whether two `alg:value` digests are of the same algorithm.
fn same_algorithm(a: &str, b: &str) -> bool {
    a.split_once(':').map(|x| x.0) == b.split_once(':').map(|x| x.0)
}

/// Sends the request and waits for the reply header, within the first-byte deadline.
async fn request_header(sock: &mut PeerStream, request: &[u8], opts: &FetchOptions) -> Result<Header> {
    let exchange = async {
        sock.write_all(request).await.map_err(|e| CoreError::io("send DownloadPiece", e))?;
        // Under TLS the request may still sit in rustls's buffer: push it out.
        sock.flush().await.map_err(|e| CoreError::io("send DownloadPiece", e))?;
        let mut hb = [0u8; HEADER_LEN];
        sock.read_exact(&mut hb).await.map_err(|e| CoreError::io("read reply header", e))?;
        Ok(Header::decode(&hb))
    };
    within(opts.first_byte_timeout, exchange).await.unwrap_or_else(|| {
        Err(CoreError::new(
            ErrorCode::Stalled,
            format!(
                "parent {} did not start answering piece {} within {} ms",
                opts.addr,
                opts.number,
                ms(opts.first_byte_timeout)
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (String, TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = TcpStream::connect(&addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (addr, client, server)
    }

    async fn until_idle_count(pool: &ConnPool, n: usize) -> usize {
        for _ in 0..200 {
            if pool.idle_count() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pool.idle_count()
    }

    #[tokio::test]
    async fn an_idle_connection_the_parent_closes_is_dropped_at_once() {
        let pool = ConnPool::default();
        let (addr, client, mut server) = pair().await;
        pool.put(&addr, PeerStream::Plain(client));
        assert_eq!(pool.idle_count(), 1);
        drop(server.shutdown().await);
        drop(server);
        assert_eq!(until_idle_count(&pool, 0).await, 0);
        assert!(pool.take(&addr).await.is_none());
    }

    #[tokio::test]
    async fn our_side_closes_so_the_parent_sees_eof() {
        let pool = ConnPool::default();
        let (addr, client, mut server) = pair().await;
        pool.put(&addr, PeerStream::Plain(client));
        server.shutdown().await.unwrap();
        // Our watcher drops the socket: the parent reads EOF instead of holding a half-closed peer.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), server.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn unasked_bytes_from_the_parent_drop_the_connection() {
        let pool = ConnPool::default();
        let (addr, client, mut server) = pair().await;
        pool.put(&addr, PeerStream::Plain(client));
        server.write_all(b"x").await.unwrap();
        assert_eq!(until_idle_count(&pool, 0).await, 0);
    }

    #[tokio::test]
    async fn a_live_idle_connection_is_handed_back_and_still_works() {
        let pool = ConnPool::default();
        let (addr, client, mut server) = pair().await;
        pool.put(&addr, PeerStream::Plain(client));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut s = pool.take(&addr).await.expect("the pooled connection");
        assert_eq!(pool.idle_count(), 0);
        server.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    }

    #[tokio::test]
    async fn an_idle_connection_past_the_idle_timeout_is_dropped() {
        let pool = ConnPool { idle_timeout: Duration::from_millis(30), ..ConnPool::default() };
        let (addr, client, _server) = pair().await;
        pool.put(&addr, PeerStream::Plain(client));
        assert_eq!(until_idle_count(&pool, 0).await, 0);
    }

    #[tokio::test]
    async fn forget_drops_every_idle_connection_to_a_parent() {
        let pool = ConnPool::default();
        let (addr, a, mut server_a) = pair().await;
        pool.put(&addr, PeerStream::Plain(a));
        let (other, b, _server_b) = pair().await;
        pool.put(&other, PeerStream::Plain(b));
        pool.forget(&addr);
        assert_eq!(until_idle_count(&pool, 1).await, 1);
        assert!(pool.take(&addr).await.is_none());
        // The forgotten socket is closed, so the parent sees EOF.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), server_a.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0);
    }
}
