//! Task piece store and piece transfer (server, client, cancellation) for JS.

use crate::error::{to_js, Code, Result};
use damselfly_core::cancel;
use damselfly_core::client::{self, FetchOptions, Protocol};
use damselfly_core::digest::Algorithm;
use damselfly_core::origin;
use damselfly_core::seal::SealKey;
use damselfly_core::server::{self, PieceServer, ServePath, ServerConfig, ServerTls};
use damselfly_core::store::{self, PieceRecord, PieceStore, StoreOptions, SyncPolicy, Tier, WriteMeta};
use damselfly_core::tls::{self, TlsIdentity, TlsMode};
use damselfly_core::{CoreError, ErrorCode};
use napi::bindgen_prelude::{Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

fn invalid(msg: impl Into<String>) -> napi::Error<Code> {
    to_js(CoreError::new(ErrorCode::InvalidArgument, msg))
}

fn non_negative(name: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("{name} must not be negative")))
}

#[napi(object)]
pub struct OpenTaskStoreOptions {
    /// Root directory; the task lives in `<dataDir>/<taskId>/`.
    pub data_dir: String,
    pub task_id: String,
    pub content_length: i64,
    pub piece_length: i64,
    /// "disk" (default) or "tmpfs" (then `dataDir` should be on tmpfs, e.g. /dev/shm/...).
    pub tier: Option<String>,
    /// Unset = O_DIRECT when supported; true = require it; false = never.
    pub direct: Option<bool>,
    /// "auto" (default), "always" or "never".
    pub sync: Option<String>,
    /// Extra per-piece digest: "crc32c", "sha256" or "blake3".
    pub extra_digest: Option<String>,
    /// Seal the pieces at rest with AES-256-GCM under this key (a new store), or open a sealed
    /// store with it (DF_AUTH if it is not the store's key). Unset: a plaintext store, or the
    /// instance this process already holds for the task, sealed or not.
    pub seal: Option<SealOptions>,
}

/// A tenant key for sealing pieces at rest.
#[napi(object)]
pub struct SealOptions {
    /// 32 bytes of AES-256 key material.
    pub key: Buffer,
    /// Its version at the tenant, recorded in the store.
    pub key_version: u32,
}

#[napi(object)]
#[derive(Clone)]
pub struct TaskStoreInfo {
    pub task_id: String,
    pub dir: String,
    pub content_path: String,
    pub content_length: i64,
    pub piece_length: i64,
    pub piece_count: u32,
    pub tier: String,
    /// "direct" or "buffered": the I/O mode actually in use.
    pub io_mode: String,
    /// "io_uring", or "threads" where io_uring is refused (e.g. by a container's seccomp profile).
    pub io_engine: String,
    pub sync: String,
    pub extra_digest: Option<String>,
    /// The key version a sealed store's pieces are sealed under; unset for a plaintext store.
    pub sealed_key_version: Option<u32>,
}

#[napi(object)]
pub struct PieceInfo {
    pub number: u32,
    pub offset: i64,
    pub length: i64,
    /// Dragonfly wire digest `crc32:<decimal>`.
    pub digest: String,
    pub extra_digest: Option<String>,
    pub parent_id: String,
    pub created_at_ms: i64,
    pub finished_at_ms: i64,
    /// "direct" or "buffered": how this process wrote the piece (unset if loaded from disk).
    pub io_mode: Option<String>,
}

impl From<PieceRecord> for PieceInfo {
    fn from(r: PieceRecord) -> Self {
        Self {
            number: r.number,
            offset: r.offset as i64,
            length: r.length as i64,
            digest: r.digest,
            extra_digest: r.extra_digest,
            parent_id: r.parent_id,
            created_at_ms: r.created_at_ms,
            finished_at_ms: r.finished_at_ms,
            io_mode: r.io_mode.map(|m| m.name().to_string()),
        }
    }
}

#[napi(object)]
pub struct FetchPieceOptions {
    /// Parent piece server, `host:port`: its vortex TCP port, or its QUIC port with protocol "quic".
    pub addr: String,
    /// "tcp" (default) or "quic" (Dragonfly's `download.protocol`).
    pub protocol: Option<String>,
    pub number: u32,
    pub expected_digest: Option<String>,
    pub parent_id: Option<String>,
    pub connect_timeout_ms: Option<u32>,
    pub piece_timeout_ms: Option<u32>,
    /// Longest wait for the parent to start answering (its upload queue included); unset or 0
    /// = only the piece timeout. Missed: DF_STALLED.
    pub first_byte_timeout_ms: Option<u32>,
    /// Longest silence once the parent started answering; unset or 0 = only the piece
    /// timeout. Missed: DF_STALLED.
    pub stall_timeout_ms: Option<u32>,
    /// Vortex over TCP under mutual TLS with this parent: the cluster CA and this daemon's
    /// client identity (parsed once per distinct identity). A handshake refused either way:
    /// DF_AUTH, unless plaintext is allowed.
    pub tls: Option<PieceClientTls>,
}

/// A child's side of a mutual-TLS piece connection (PEM texts).
#[napi(object)]
pub struct PieceClientTls {
    /// The cluster CA that signs the parents' certificates.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// A parent whose handshake fails (Dragonfly's, plaintext only) is asked in plaintext,
    /// now and from then on.
    pub allow_plaintext: Option<bool>,
}

fn optional_ms(v: Option<u32>) -> Option<Duration> {
    v.filter(|&ms| ms > 0).map(|ms| Duration::from_millis(u64::from(ms)))
}

fn fetch_options(task_id: &str, options: FetchPieceOptions) -> Result<FetchOptions> {
    let protocol = options.protocol.as_deref().map(Protocol::parse).transpose().map_err(to_js)?.unwrap_or_default();
    Ok(FetchOptions {
        addr: options.addr,
        protocol,
        task_id: task_id.to_string(),
        number: options.number,
        expected_digest: options.expected_digest,
        parent_id: options.parent_id.unwrap_or_default(),
        connect_timeout: Duration::from_millis(options.connect_timeout_ms.unwrap_or(2000) as u64),
        piece_timeout: Duration::from_millis(options.piece_timeout_ms.unwrap_or(360_000) as u64),
        first_byte_timeout: optional_ms(options.first_byte_timeout_ms),
        stall_timeout: optional_ms(options.stall_timeout_ms),
        allow_plaintext: options.tls.as_ref().is_some_and(|t| t.allow_plaintext == Some(true)),
        tls: options
            .tls
            .map(|t| {
                let id = TlsIdentity {
                    ca_pem: t.ca_pem.into_bytes(),
                    cert_pem: t.cert_pem.into_bytes(),
                    key_pem: t.key_pem.into_bytes(),
                };
                tls::client_config(&id)
            })
            .transpose()
            .map_err(to_js)?,
    })
}

/// A race for whichever candidate parent starts sending first (see `TaskStore.race`).
#[napi]
pub struct PieceRace {
    task_id: String,
    /// Taken by `run`: the race's future holds the store until it settles, and the JS object
    /// (collected whenever V8 gets to it) no longer does, so a task deleted afterwards closes
    /// its files at once rather than at the next garbage collection.
    store: Mutex<Option<Arc<PieceStore>>>,
    timeout: Duration,
    candidates: mpsc::UnboundedSender<FetchOptions>,
    pending: Mutex<Option<(mpsc::UnboundedReceiver<FetchOptions>, oneshot::Sender<u32>)>>,
    started: Mutex<Option<oneshot::Receiver<u32>>>,
    stalled: Arc<Mutex<Vec<u32>>>,
}

#[napi]
impl PieceRace {
    /// Asks one more parent for one of its pieces; ignored once a parent started sending.
    #[napi]
    pub fn add(&self, options: FetchPieceOptions) -> Result<()> {
        let _ = self.candidates.send(fetch_options(&self.task_id, options)?);
        Ok(())
    }

    /// Resolves with the winner's index once its parent starts sending; -1 if none ever does.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn started<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, i32>> {
        let rx = self.started.lock().ok().and_then(|mut g| g.take());
        env.spawn_future(async move {
            Ok(match rx {
                Some(rx) => rx.await.ok().and_then(|i| i32::try_from(i).ok()).unwrap_or(-1),
                None => -1,
            })
        })
        .map_err(status)
    }

    /// Indices of the candidates whose parent did not start answering within their first-byte
    /// deadline (DF_STALLED), so far; read it once the race settled.
    #[napi]
    pub fn stalled(&self) -> Vec<u32> {
        self.stalled.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Runs the race (once): resolves with the winner's index and its landed, verified piece.
    #[napi(ts_return_type = "Promise<RaceWin>")]
    pub fn run<'e>(&self, env: &'e Env, cancel: Option<&CancelToken>) -> Result<PromiseRaw<'e, RaceWin>> {
        let (candidates, started) =
            self.pending.lock().ok().and_then(|mut g| g.take()).ok_or_else(|| invalid("a race runs only once"))?;
        let store =
            self.store.lock().ok().and_then(|mut g| g.take()).ok_or_else(|| invalid("a race runs only once"))?;
        let race =
            client::Race { candidates, started: Some(started), timeout: self.timeout, stalled: self.stalled.clone() };
        let token = cancel.map(|c| c.inner.clone()).unwrap_or_default();
        env.spawn_future(async move {
            client::fetch_race(client::default_pool(), &store, race, &token)
                .await
                .map(|(index, rec)| RaceWin { index, info: PieceInfo::from(rec) })
                .map_err(to_napi)
        })
        .map_err(status)
    }
}

#[napi(object)]
pub struct RaceWin {
    /// Which candidate delivered, in the order they were added.
    pub index: u32,
    pub info: PieceInfo,
}

#[napi(object)]
pub struct FetchFromOriginOptions {
    /// The origin's resolved address, `ip:port` (`[v6]:port`); never a host name.
    pub addr: String,
    /// `Host` header value.
    pub host: String,
    /// Request target: path and query, percent-encoded, starting with `/`.
    pub path: String,
    /// Extra request headers (no Host, Range, Connection, framing or precondition headers).
    pub headers: Option<HashMap<String, String>>,
    /// The content version the piece must be of (sent as a precondition, compared with the
    /// answer's validators); DF_ORIGIN_CHANGED, with nothing stored, when it is another.
    pub pin: Option<crate::origin::OriginPin>,
    pub number: u32,
    pub connect_timeout_ms: Option<u32>,
    /// Bound on each wait for the origin (default 60 s).
    pub read_timeout_ms: Option<u32>,
}

#[napi(object)]
pub struct OriginStats {
    pub connects: i64,
    pub reuses: i64,
    pub pieces: i64,
    pub bytes: i64,
}

/// Counters of the process-wide origin connection pool.
#[napi]
pub fn origin_stats() -> OriginStats {
    let s = origin::default_pool().stats();
    OriginStats { connects: s.connects as i64, reuses: s.reuses as i64, pieces: s.pieces as i64, bytes: s.bytes as i64 }
}

/// Closes the idle piece connections (TCP, TLS, QUIC) to a parent address no download of ours
/// uses any more; returns how many were closed.
#[napi]
pub fn close_idle_piece_connections(addr: String) -> u32 {
    client::default_pool().close_idle_to(&addr) as u32
}

/// Cancels long native operations; the facade flips it from an AbortSignal.
#[napi]
pub struct CancelToken {
    inner: cancel::CancelToken,
}

#[napi]
impl CancelToken {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self { inner: cancel::CancelToken::new() }
    }

    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}

impl CancelToken {
    pub(crate) fn token(&self) -> cancel::CancelToken {
        self.inner.clone()
    }
}

#[napi]
pub struct TaskStore {
    /// None once this handle is closed or deleted the task. Given up then, not when V8 collects
    /// the JS object: a deleted task's files (pointed at /dev/null by the delete) stay open as
    /// long as any handle holds the store, and an idle daemon may not collect for hours, so
    /// every task GC removed kept three descriptors. In-flight operations hold their own
    /// reference; the files close when the last of them ends.
    inner: RwLock<Option<Arc<PieceStore>>>,
    /// Answered after close too (the paths and layout do not change).
    info: TaskStoreInfo,
}

impl TaskStore {
    fn store(&self) -> Result<Arc<PieceStore>> {
        self.inner
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| to_js(CoreError::new(ErrorCode::NotFound, format!("task {} is closed", self.info.task_id))))
    }

    fn open_store(&self) -> Option<Arc<PieceStore>> {
        self.inner.read().ok().and_then(|g| g.clone())
    }
}

fn info_of(s: &PieceStore) -> TaskStoreInfo {
    let i = s.info();
    TaskStoreInfo {
        task_id: i.task_id.clone(),
        dir: i.dir.to_string_lossy().into_owned(),
        content_path: i.content_path.to_string_lossy().into_owned(),
        content_length: i.content_length as i64,
        piece_length: i.piece_length as i64,
        piece_count: i.piece_count,
        tier: match i.tier {
            Tier::Disk => "disk".into(),
            Tier::Tmpfs => "tmpfs".into(),
        },
        io_mode: i.io_mode.name().into(),
        io_engine: i.io_engine.into(),
        sync: match i.sync {
            SyncPolicy::Auto => "auto".into(),
            SyncPolicy::Always => "always".into(),
            SyncPolicy::Never => "never".into(),
        },
        extra_digest: i.extra_digest.map(|a| a.name().to_string()),
        sealed_key_version: i.sealed_key_version,
    }
}

#[napi]
pub fn delete_task_store(data_dir: String, task_id: String) -> Result<()> {
    store::delete_task(&PathBuf::from(data_dir), &task_id).map_err(to_js)
}

#[napi]
impl TaskStore {
    /// Creates or opens a task's store (DF_INVALID_ARGUMENT if it exists with another layout).
    /// A constructor rather than an `openTaskStore` export: the class is exported anyway.
    #[napi(constructor)]
    pub fn new(options: OpenTaskStoreOptions) -> Result<Self> {
        let tier = match options.tier.as_deref() {
            None | Some("disk") => Tier::Disk,
            Some("tmpfs") => Tier::Tmpfs,
            Some(o) => return Err(invalid(format!("unknown tier {o:?}"))),
        };
        let sync = match options.sync.as_deref() {
            None | Some("auto") => SyncPolicy::Auto,
            Some("always") => SyncPolicy::Always,
            Some("never") => SyncPolicy::Never,
            Some(o) => return Err(invalid(format!("unknown sync policy {o:?}"))),
        };
        let extra_digest = options.extra_digest.as_deref().map(Algorithm::parse).transpose().map_err(to_js)?;
        let inner = PieceStore::open(StoreOptions {
            root: PathBuf::from(options.data_dir),
            task_id: options.task_id,
            content_length: non_negative("contentLength", options.content_length)?,
            piece_length: non_negative("pieceLength", options.piece_length)?,
            tier,
            direct: options.direct,
            sync,
            extra_digest,
            seal: options.seal.map(|s| SealKey { key: s.key.to_vec(), version: s.key_version }),
        })
        .map_err(to_js)?;
        Ok(Self { info: info_of(&inner), inner: RwLock::new(Some(inner)) })
    }

    #[napi]
    pub fn info(&self) -> TaskStoreInfo {
        self.info.clone()
    }

    /// Writes piece `number`; resolves once it is durable and marked finished.
    #[napi(ts_return_type = "Promise<PieceInfo>")]
    pub fn write_piece<'e>(
        &self,
        env: &'e Env,
        number: u32,
        data: Buffer,
        parent_id: Option<String>,
        created_at_ms: Option<i64>,
    ) -> Result<PromiseRaw<'e, PieceInfo>> {
        let s = self.store()?;
        let meta = WriteMeta { parent_id: parent_id.unwrap_or_default(), created_at_ms };
        env.spawn_future(async move { s.write_piece(number, data, meta).await.map(PieceInfo::from).map_err(to_napi) })
            .map_err(status)
    }

    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read_piece<'e>(&self, env: &'e Env, number: u32) -> Result<PromiseRaw<'e, Buffer>> {
        let s = self.store()?;
        env.spawn_future(async move { s.read_piece(number).await.map(Buffer::from).map_err(to_napi) }).map_err(status)
    }

    /// Re-hashes a finished piece from disk; a mismatch unmarks it and rejects with DF_DIGEST_MISMATCH.
    #[napi(ts_return_type = "Promise<PieceInfo>")]
    pub fn verify_piece<'e>(&self, env: &'e Env, number: u32) -> Result<PromiseRaw<'e, PieceInfo>> {
        let s = self.store()?;
        off_thread(env, move || s.verify_piece(number).map(PieceInfo::from))
    }

    /// Reads a task written with O_DIRECT into the page cache, for children that ask for it
    /// next; resolves once it is cached (no-op for a buffered store).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn warm<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        let s = self.store()?;
        off_thread(env, move || s.warm())
    }

    /// A sealed store only: every piece landing from now on is also written in plain at its
    /// offset into the file open at `fd` (duplicated here; the caller keeps its own), before it
    /// is sealed. Returns the id `untee` takes.
    #[napi]
    pub fn tee_plain(&self, fd: i32) -> Result<i64> {
        let s = self.store()?;
        // SAFETY: `fd` is a descriptor the caller holds open for this call (a FileHandle); it
        // is only duplicated, never closed or used beyond this line.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| to_js(CoreError::io("duplicate the tee's descriptor", e)))?;
        s.tee_plain(File::from(owned)).map(|id| id as i64).map_err(to_js)
    }

    /// Detaches a tee; returns the numbers of the pieces written to it.
    #[napi]
    pub fn untee(&self, id: i64) -> Vec<u32> {
        self.open_store().map(|s| s.untee(id as u64)).unwrap_or_default()
    }

    /// Fetches piece `number` from a parent's piece server into this store.
    #[napi(ts_return_type = "Promise<PieceInfo>")]
    pub fn fetch_piece<'e>(
        &self,
        env: &'e Env,
        options: FetchPieceOptions,
        cancel: Option<&CancelToken>,
    ) -> Result<PromiseRaw<'e, PieceInfo>> {
        let s = self.store()?;
        let token = cancel.map(|c| c.inner.clone()).unwrap_or_default();
        let opts = fetch_options(&self.info.task_id, options)?;
        env.spawn_future(async move {
            client::fetch_piece(client::default_pool(), &s, &opts, &token).await.map(PieceInfo::from).map_err(to_napi)
        })
        .map_err(status)
    }

    /// A race among candidate parents for a piece each: add candidates, then run it.
    #[napi]
    pub fn race(&self, timeout_ms: u32) -> Result<PieceRace> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = oneshot::channel();
        Ok(PieceRace {
            task_id: self.info.task_id.clone(),
            store: Mutex::new(Some(self.store()?)),
            timeout: Duration::from_millis(u64::from(timeout_ms)),
            candidates: tx,
            pending: Mutex::new(Some((rx, started_tx))),
            started: Mutex::new(Some(started_rx)),
            stalled: Arc::default(),
        })
    }

    /// Fetches piece `number` from a plain-HTTP origin (ranged GET) into this store.
    #[napi(ts_return_type = "Promise<PieceInfo>")]
    pub fn fetch_from_origin<'e>(
        &self,
        env: &'e Env,
        options: FetchFromOriginOptions,
        cancel: Option<&CancelToken>,
    ) -> Result<PromiseRaw<'e, PieceInfo>> {
        let s = self.store()?;
        let token = cancel.map(|c| c.inner.clone()).unwrap_or_default();
        let req = crate::origin::origin_request(
            &options.addr,
            options.host,
            options.path,
            options.headers,
            options.pin,
            options.number,
            (options.connect_timeout_ms, options.read_timeout_ms),
        )?;
        env.spawn_future(async move {
            origin::fetch_from_origin(origin::default_pool(), &s, &req, &token)
                .await
                .map(PieceInfo::from)
                .map_err(to_napi)
        })
        .map_err(status)
    }

    /// None once closed: a closed handle holds no pieces.
    #[napi]
    pub fn piece(&self, number: u32) -> Option<PieceInfo> {
        self.open_store()?.piece(number).map(PieceInfo::from)
    }

    #[napi]
    pub fn finished_pieces(&self) -> Vec<PieceInfo> {
        self.open_store().map(|s| s.finished().into_iter().map(PieceInfo::from).collect()).unwrap_or_default()
    }

    #[napi]
    pub fn finished_count(&self) -> u32 {
        self.open_store().map_or(0, |s| s.finished_count())
    }

    /// Gives up this handle's reference to the store (the task stays on disk): the files close
    /// once no other handle and no operation in flight holds it. Later calls on this handle
    /// fail with DF_NOT_FOUND. Closing twice is harmless.
    #[napi]
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.write() {
            g.take();
        }
    }

    /// Deletes the task's files and closes this handle; other handles see DF_NOT_FOUND.
    #[napi]
    pub fn delete(&self) -> Result<()> {
        let taken = self.inner.write().ok().and_then(|mut g| g.take());
        match taken {
            Some(s) => s.delete().map_err(to_js),
            None => {
                let dir = PathBuf::from(&self.info.dir);
                let root = dir.parent().map(PathBuf::from).unwrap_or_default();
                store::delete_task(&root, &self.info.task_id).map_err(to_js)
            }
        }
    }
}

/// Promise rejections can only carry napi's fixed status enum, so the stable code travels as
/// a `[DF_*] ` prefix of the message; src/native moves it into `err.code`. An origin's answer
/// (DF_BACKEND) follows the message as one JSON line `{"statusCode":…,"headers":{…}}`.
pub(crate) fn to_napi(e: CoreError) -> napi::Error {
    let mut msg = format!("[{}] {}", e.code.as_str(), e.message.replace(['\r', '\n'], " "));
    if let Some(a) = &e.backend {
        msg.push('\n');
        msg.push_str(&crate::error::answer_json(a));
    }
    napi::Error::new(napi::Status::GenericFailure, msg)
}

pub(crate) fn status(e: napi::Error) -> napi::Error<Code> {
    napi::Error::new(Code("DF_IO"), e.reason.clone())
}

/// Runs blocking core work (hashing, file reads, advice) on tokio's blocking pool and resolves
/// the promise with its result, so the JS thread never waits on it.
pub(crate) fn off_thread<T, F>(env: &Env, f: F) -> Result<PromiseRaw<'_, T>>
where
    T: 'static + Send + napi::bindgen_prelude::ToNapiValue,
    F: 'static + Send + FnOnce() -> damselfly_core::error::Result<T>,
{
    env.spawn_future(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| to_napi(CoreError::new(ErrorCode::Io, format!("worker task failed: {e}"))))?
            .map_err(to_napi)
    })
    .map_err(status)
}

#[napi(object)]
pub struct PieceServerOptions {
    pub host: String,
    /// 0 picks a free port.
    pub port: u32,
    pub data_dir: String,
    /// Second root searched after `dataDir` (the tmpfs tier).
    pub tmpfs_dir: Option<String>,
    /// Upload cap for the whole server; 0 or unset = unlimited.
    pub rate_limit_bytes_per_sec: Option<i64>,
    /// Pieces sent at once; 0 or unset = unlimited (see `uploadQueue` for what happens beyond).
    pub upload_slots: Option<u32>,
    /// Requests that may wait for a slot in arrival order; beyond slots + queue they are
    /// refused at once as busy.
    pub upload_queue: Option<u32>,
    /// SO_SNDBUF of accepted connections; unset or 0 = the kernel's autotuning.
    pub send_buffer_bytes: Option<u32>,
    /// "sendfile", "splice" or "buffered"; unset = the measured default.
    pub serve_path: Option<String>,
    pub idle_timeout_ms: Option<u32>,
    pub read_timeout_ms: Option<u32>,
    pub write_timeout_ms: Option<u32>,
    /// Also answer vortex over QUIC on this UDP port of `host` (0 picks a free port); unset or
    /// negative = TCP only.
    pub quic_port: Option<i32>,
    /// Vortex over TCP under mutual TLS: the server's identity, client certificates required
    /// and verified against `caPem`. Unset = plaintext.
    pub tls: Option<PieceServerTls>,
}

#[napi(object)]
pub struct PieceServerTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// "required" (default): TLS clients only, a plaintext request gets an Error frame saying
    /// so; "optional": plaintext clients (Dragonfly's) are served too.
    #[napi(ts_type = "'required' | 'optional'")]
    pub mode: Option<String>,
}

#[napi(object)]
pub struct PieceServerStats {
    pub bytes_served: i64,
    pub pieces_served: i64,
    pub connections_accepted: i64,
    pub active_connections: i64,
    pub errors_sent: i64,
    pub uploads_dropped: i64,
    /// Of the above, what went over QUIC (its pieces and bytes are in the totals too).
    pub quic_connections_accepted: i64,
    pub quic_pieces_served: i64,
    pub quic_bytes_served: i64,
    /// TCP connections that completed a TLS handshake.
    pub tls_connections_accepted: i64,
}

#[napi(object)]
pub struct PieceUpload {
    pub task_id: String,
    pub number: u32,
    pub length: i64,
}

#[napi]
pub struct PieceServerHandle {
    inner: Arc<PieceServer>,
}

/// The body path a server uses when none is configured, chosen by measurement.
#[napi]
pub fn default_piece_serve_path() -> String {
    server::DEFAULT_SERVE_PATH.name().to_string()
}

#[napi(ts_return_type = "Promise<PieceServerHandle>")]
pub fn start_piece_server(env: &Env, options: PieceServerOptions) -> Result<PromiseRaw<'_, PieceServerHandle>> {
    let ip: std::net::IpAddr =
        options.host.parse().map_err(|_| invalid(format!("host {:?} is not an IP address", options.host)))?;
    let port = u16::try_from(options.port).map_err(|_| invalid("port must be below 65536"))?;
    let quic_port = match options.quic_port {
        Some(p) if p >= 0 => Some(u16::try_from(p).map_err(|_| invalid("quicPort must be below 65536"))?),
        _ => None,
    };
    let mut roots = vec![PathBuf::from(options.data_dir)];
    if let Some(t) = options.tmpfs_dir {
        roots.push(PathBuf::from(t));
    }
    let tls = options
        .tls
        .map(|t| -> Result<ServerTls> {
            let mode = match t.mode.as_deref() {
                None | Some("required") => TlsMode::Required,
                Some("optional") => TlsMode::Optional,
                Some(o) => return Err(invalid(format!("tls.mode {o:?} is neither \"required\" nor \"optional\""))),
            };
            let id = TlsIdentity {
                ca_pem: t.ca_pem.into_bytes(),
                cert_pem: t.cert_pem.into_bytes(),
                key_pem: t.key_pem.into_bytes(),
            };
            Ok(ServerTls { config: tls::server_config(&id).map_err(to_js)?, mode })
        })
        .transpose()?;
    let defaults = ServerConfig::default();
    let ms = |v: Option<u32>, d: Duration| v.map_or(d, |v| Duration::from_millis(v as u64));
    let cfg = ServerConfig {
        roots,
        rate_limit: non_negative("rateLimitBytesPerSec", options.rate_limit_bytes_per_sec.unwrap_or(0))?,
        upload_slots: options.upload_slots.unwrap_or(0) as usize,
        upload_queue: options.upload_queue.unwrap_or(0) as usize,
        send_buffer: options.send_buffer_bytes.unwrap_or(0) as usize,
        serve_path: options
            .serve_path
            .as_deref()
            .map(ServePath::parse)
            .transpose()
            .map_err(to_js)?
            .unwrap_or(defaults.serve_path),
        idle_timeout: ms(options.idle_timeout_ms, defaults.idle_timeout),
        read_timeout: ms(options.read_timeout_ms, defaults.read_timeout),
        write_timeout: ms(options.write_timeout_ms, defaults.write_timeout),
        quic_port,
        tls,
    };
    env.spawn_future(async move {
        PieceServer::start(std::net::SocketAddr::new(ip, port), cfg)
            .await
            .map(|s| PieceServerHandle { inner: Arc::new(s) })
            .map_err(to_napi)
    })
    .map_err(status)
}

#[napi]
impl PieceServerHandle {
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.inner.local_addr().port() as u32
    }

    /// The QUIC port, when the server answers over QUIC.
    #[napi(getter)]
    pub fn quic_port(&self) -> Option<u32> {
        self.inner.quic_addr().map(|a| u32::from(a.port()))
    }

    #[napi(getter)]
    pub fn serve_path(&self) -> String {
        self.inner.serve_path().name().to_string()
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        let s = self.inner.clone();
        env.spawn_future(async move {
            s.close().await;
            Ok(())
        })
        .map_err(status)
    }

    #[napi]
    pub fn stats(&self) -> PieceServerStats {
        let s = self.inner.stats();
        PieceServerStats {
            bytes_served: s.bytes_served as i64,
            pieces_served: s.pieces_served as i64,
            connections_accepted: s.connections_accepted as i64,
            active_connections: s.active_connections as i64,
            errors_sent: s.errors_sent as i64,
            uploads_dropped: s.uploads_dropped as i64,
            quic_connections_accepted: s.quic_connections_accepted as i64,
            quic_pieces_served: s.quic_pieces_served as i64,
            quic_bytes_served: s.quic_bytes_served as i64,
            tls_connections_accepted: s.tls_connections_accepted as i64,
        }
    }

    /// Pieces uploaded since the last call.
    #[napi]
    pub fn drain_uploads(&self) -> Vec<PieceUpload> {
        self.inner
            .drain_uploads()
            .into_iter()
            .map(|u| PieceUpload { task_id: u.task_id, number: u.number, length: u.length as i64 })
            .collect()
    }
}

/// A zero-filled Buffer whose memory is aligned for O_DIRECT: `writePiece` from it goes to
/// disk without being copied first. The memory is freed when the Buffer is collected.
#[napi]
pub fn alloc_piece_buffer(env: &Env, length: u32) -> Result<napi::bindgen_prelude::BufferSlice<'_>> {
    let len = length as usize;
    let mut mem = damselfly_core::aligned::AlignedBuf::zeroed(damselfly_core::aligned::round_up(len.max(1)), 4096)
        .ok_or_else(|| to_js(CoreError::new(ErrorCode::Io, "cannot allocate an aligned buffer")))?;
    let ptr = mem.as_mut_ptr();
    // SAFETY: `mem` owns `ptr` and moves into the finalizer hint, so the memory lives exactly
    // as long as the JS Buffer; len <= the allocation.
    unsafe { napi::bindgen_prelude::BufferSlice::from_external(env, ptr, len, mem, |_, m| drop(m)) }.map_err(status)
}
