//! Vortex over QUIC, Dragonfly's `download.protocol: quic`: the same frames as over TCP, one
//! request per bidirectional stream and many streams per connection. TLS 1.3 as quinn needs it,
//! with nothing to authenticate: the server presents a self-signed certificate for `d7y` made at
//! start, the client skips verifying it and names `d7y`, and neither side sets ALPN, because
//! that is what a Dragonfly peer on the other end does. Transport settings follow Dragonfly's
//! client (dragonfly-client-storage, client/mod.rs and server/quic.rs): keep-alive every 3 s,
//! idle timeout 60 s, ack frequency on, 16 MiB send, receive and stream-receive windows, 16 MiB
//! UDP socket buffers, BBR on the sending (server) side.
//!
//! The request handling lives in `server` and `client`, shared with TCP; this module has the
//! endpoints, the stream type and the client's connection pool.

use crate::error::{CoreError, ErrorCode, Result};
// ring's provider (see tls.rs); its lack of post-quantum key exchange costs QUIC nothing: the
// peer's certificate is never verified there, so that TLS only scrambles the bytes.
use crate::tls::provider;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use quinn::{Connection, Endpoint, EndpointConfig, IdleTimeout, TokioRuntime, TransportConfig, VarInt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Server name the client connects with and the certificate's only SAN.
pub const SERVER_NAME: &str = "d7y";
/// Connection and stream flow-control windows, and the UDP socket buffers.
const WINDOW: u32 = 16 << 20;
const KEEP_ALIVE: Duration = Duration::from_secs(3);
const MAX_IDLE_MS: u32 = 60_000;

fn transport(server: bool) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(MAX_IDLE_MS))));
    t.ack_frequency_config(Some(quinn::AckFrequencyConfig::default()));
    t.send_window(u64::from(WINDOW));
    t.receive_window(VarInt::from_u32(WINDOW));
    t.stream_receive_window(VarInt::from_u32(WINDOW));
    if server {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    t
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::new(ErrorCode::Io, format!("{what}: {e}"))
}

/// A non-blocking UDP socket bound to `addr`; the buffer sizes are best effort (the kernel caps
/// them at net.core.wmem_max / rmem_max).
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_send_buffer_size(WINDOW as usize);
    let _ = s.set_recv_buffer_size(WINDOW as usize);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A QUIC server endpoint on `addr` with a fresh self-signed certificate for `d7y`.
pub(crate) fn server_endpoint(addr: SocketAddr) -> Result<Endpoint> {
    let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(|e| tls_error("generate the QUIC certificate", e))?;
    let der = cert.serialize_der().map_err(|e| tls_error("encode the QUIC certificate", e))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.serialize_private_key_der()));
    let tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("QUIC TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der)], key)
        .map_err(|e| tls_error("QUIC server certificate", e))?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| tls_error("QUIC server crypto", e))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport(true)));
    let socket = udp_socket(addr).map_err(|e| CoreError::io(&format!("bind udp {addr}"), e))?;
    Endpoint::new(EndpointConfig::default(), Some(cfg), socket, Arc::new(TokioRuntime))
        .map_err(|e| CoreError::io("QUIC endpoint", e))
}

/// Accepts whatever certificate the parent shows, as Dragonfly's client does: the server's
/// certificate is generated at its start and signed by nobody, so there is nothing to check
/// it against. The handshake signatures are still verified against the presented key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> Result<quinn::ClientConfig> {
    static CONFIG: OnceLock<std::result::Result<quinn::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let p = provider();
            let tls = rustls::ClientConfig::builder_with_provider(p.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(p)))
                .with_no_client_auth();
            let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
            let mut c = quinn::ClientConfig::new(Arc::new(crypto));
            c.transport_config(Arc::new(transport(false)));
            Ok(c)
        })
        .clone()
        .map_err(|e| tls_error("QUIC client config", e))
}

/// One bidirectional stream: a vortex exchange on either side. `lease` (client side) counts the
/// stream against its pooled connection while it lives.
pub struct QuicStream {
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
    lease: Option<Lease>,
}

impl QuicStream {
    pub(crate) fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self { send, recv, lease: None }
    }

    /// True once the stream's connection is gone (the reason a request failed, if it did).
    pub(crate) fn connection_lost(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.conn.conn.close_reason().is_some())
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }
    /// Finishes the send half (FIN), the stream's end of a reply or of a request.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

/// A pooled client connection with its own endpoint (own UDP socket, so each connection is a
/// flow of its own to the parent, as Dragonfly's client makes them).
struct PooledConn {
    id: u64,
    conn: Connection,
    endpoint: Endpoint,
    streams: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// Holds one stream's place on its connection; the connection's idle clock starts when the
/// last one goes.
struct Lease {
    conn: Arc<PooledConn>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut t) = self.conn.last_used.lock() {
            *t = Instant::now();
        }
        self.conn.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

type ConnMap = Arc<Mutex<HashMap<String, Vec<Arc<PooledConn>>>>>;

/// Client connections per parent address: a stream goes on the least busy open connection, a
/// new connection is made while every one has a stream in flight and the address has fewer than
/// `max_per_addr`. QUIC keep-alives hold an unused connection open indefinitely, so one without
/// streams for `idle_timeout` is closed.
pub struct QuicPool {
    conns: ConnMap,
    next_id: AtomicU64,
    max_per_addr: usize,
    idle_timeout: Duration,
    connects: AtomicU64,
}

impl Default for QuicPool {
    fn default() -> Self {
        Self {
            conns: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            max_per_addr: 4,
            idle_timeout: Duration::from_secs(60),
            connects: AtomicU64::new(0),
        }
    }
}

impl QuicPool {
    /// A pool whose connections close after `idle` without a stream.
    pub fn with_idle_timeout(idle: Duration) -> Self {
        Self { idle_timeout: idle, ..Self::default() }
    }

    /// Connections made so far (tests and stats).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Open connections held.
    pub fn open_count(&self) -> usize {
        self.conns.lock().map(|m| m.values().flatten().filter(|c| c.conn.close_reason().is_none()).count()).unwrap_or(0)
    }

    /// Closes the connections to `addr` that carry no stream; their reapers forget them.
    pub fn close_idle_to(&self, addr: &str) -> usize {
        let Ok(map) = self.conns.lock() else { return 0 };
        let mut closed = 0;
        for c in map.get(addr).into_iter().flatten() {
            if c.streams.load(Ordering::Acquire) == 0 && c.conn.close_reason().is_none() {
                c.conn.close(VarInt::from_u32(0), b"parent left");
                closed += 1;
            }
        }
        closed
    }

    fn pick(&self, addr: &str) -> Option<Arc<PooledConn>> {
        let mut map = self.conns.lock().ok()?;
        let list = map.get_mut(addr)?;
        list.retain(|c| c.conn.close_reason().is_none());
        let best = list.iter().min_by_key(|c| c.streams.load(Ordering::Acquire))?;
        if best.streams.load(Ordering::Acquire) == 0 || list.len() >= self.max_per_addr {
            return Some(best.clone());
        }
        None
    }

    async fn connect(&self, addr: &str, timeout: Duration) -> Result<Arc<PooledConn>> {
        let remote = resolve(addr).await?;
        let local: SocketAddr =
            if remote.is_ipv4() { SocketAddr::from(([0, 0, 0, 0], 0)) } else { SocketAddr::from(([0u16; 8], 0)) };
        let socket = udp_socket(local).map_err(|e| CoreError::io("bind udp", e))?;
        let mut endpoint = Endpoint::new(EndpointConfig::default(), None, socket, Arc::new(TokioRuntime))
            .map_err(|e| CoreError::io("QUIC endpoint", e))?;
        endpoint.set_default_client_config(client_config()?);
        let connecting = endpoint
            .connect(remote, SERVER_NAME)
            .map_err(|e| CoreError::new(ErrorCode::Io, format!("connect to {addr} over QUIC: {e}")))?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| CoreError::new(ErrorCode::Timeout, format!("QUIC connect to {addr} timed out")))?
            .map_err(|e| CoreError::new(ErrorCode::Io, format!("connect to {addr} over QUIC: {e}")))?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        let pooled = Arc::new(PooledConn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            conn,
            endpoint,
            streams: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        });
        if let Ok(mut map) = self.conns.lock() {
            map.entry(addr.to_string()).or_default().push(pooled.clone());
        }
        tokio::spawn(reap_when_idle(self.conns.clone(), addr.to_string(), pooled.clone(), self.idle_timeout));
        Ok(pooled)
    }

    /// A new stream to `addr`, on a pooled connection or a new one. `fresh` asks for a new
    /// connection (a retry after the pooled one died); the returned flag says whether the
    /// stream is on a connection made for it.
    pub(crate) async fn open(&self, addr: &str, timeout: Duration, fresh: bool) -> Result<(QuicStream, bool)> {
        if let Some(c) = if fresh { None } else { self.pick(addr) } {
            match stream_on(&c, addr, timeout).await {
                Ok(s) => return Ok((s, false)),
                // Closed since it was picked: a new connection below.
                Err(_) if c.conn.close_reason().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        let c = self.connect(addr, timeout).await?;
        Ok((stream_on(&c, addr, timeout).await?, true))
    }
}

async fn stream_on(c: &Arc<PooledConn>, addr: &str, timeout: Duration) -> Result<QuicStream> {
    c.streams.fetch_add(1, Ordering::AcqRel);
    let lease = Lease { conn: c.clone() };
    let (send, recv) = tokio::time::timeout(timeout, c.conn.open_bi())
        .await
        .map_err(|_| CoreError::new(ErrorCode::Timeout, format!("opening a QUIC stream to {addr} timed out")))?
        .map_err(|e| CoreError::new(ErrorCode::Io, format!("open a QUIC stream to {addr}: {e}")))?;
    Ok(QuicStream { send, recv, lease: Some(lease) })
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| CoreError::io(&format!("resolve {addr}"), e))?
        .next()
        .ok_or_else(|| CoreError::new(ErrorCode::NotFound, format!("{addr} resolves to no address")))
}

/// Watches a pooled connection: closes it once it has had no stream for `idle`, and drops it
/// from the pool once it is closed, by either side.
async fn reap_when_idle(pool: ConnMap, addr: String, c: Arc<PooledConn>, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = c.conn.closed() => break,
            _ = tokio::time::sleep(tick) => {
                let unused = c.last_used.lock().map(|t| t.elapsed() >= idle).unwrap_or(true);
                if c.streams.load(Ordering::Acquire) == 0 && unused {
                    c.conn.close(VarInt::from_u32(0), b"idle");
                    break;
                }
            }
        }
    }
    if let Ok(mut map) = pool.lock() {
        if let Some(list) = map.get_mut(&addr) {
            list.retain(|x| x.id != c.id);
            if list.is_empty() {
                map.remove(&addr);
            }
        }
    }
    // Lets the endpoint's driver wind down once the close is sent.
    c.endpoint.close(VarInt::from_u32(0), b"");
}
