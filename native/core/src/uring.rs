//! One io_uring per process, driven by a dedicated thread. Callers (tokio tasks) hand it owned
//! buffers and await a oneshot; the thread keeps many operations in flight and submits whatever
//! has queued up in one `io_uring_enter`, so concurrent piece writes become batched submissions.
//! New requests wake the thread through an eventfd read that is always armed on the ring itself,
//! so a thread blocked waiting for completions still sees new work at once.

use crate::aligned::PooledBuf;
use crate::error::{CoreError, ErrorCode, Result};
use io_uring::{opcode, types, IoUring};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

const RING_ENTRIES: u32 = 256;
const WAKE: u64 = u64::MAX;
/// A single SQE moves at most this much; larger transfers continue as partial completions.
const MAX_OP: usize = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
}

/// Memory an operation reads from or writes into. `Shared` lets a write go straight from a
/// caller's buffer (e.g. a JS Buffer allocated aligned) with no copy; it is kept alive until
/// the completion arrives.
pub enum IoBuf {
    Pooled(PooledBuf),
    Shared(Box<dyn AsRef<[u8]> + Send>),
}

impl IoBuf {
    fn ptr(&self) -> *const u8 {
        match self {
            IoBuf::Pooled(p) => p.as_ptr(),
            IoBuf::Shared(s) => (**s).as_ref().as_ptr(),
        }
    }

    /// Writable only when we own the memory.
    fn mut_ptr(&mut self) -> Option<*mut u8> {
        match self {
            IoBuf::Pooled(p) => Some(p.as_mut_ptr()),
            IoBuf::Shared(_) => None,
        }
    }

    /// The pooled buffer back (reads), or an empty placeholder.
    pub fn into_pooled(self) -> PooledBuf {
        match self {
            IoBuf::Pooled(p) => p,
            IoBuf::Shared(_) => crate::aligned::empty_buf(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            IoBuf::Pooled(p) => p.capacity(),
            IoBuf::Shared(s) => (**s).as_ref().len(),
        }
    }
}

/// What an operation yields: bytes moved (or the error), and its buffer back.
pub type Outcome = (io::Result<usize>, IoBuf);

pub struct Request {
    pub kind: OpKind,
    pub file: Arc<File>,
    pub buf: IoBuf,
    /// Bytes to move from/to the start of `buf` (may exceed `buf.len()` up to its capacity for
    /// block-padded O_DIRECT reads).
    pub len: usize,
    pub offset: u64,
    /// Write with RWF_DSYNC: the completion arrives only once the bytes (and any metadata
    /// needed to read them back, e.g. an unwritten extent's conversion) are on stable storage.
    pub dsync: bool,
}

struct InFlight {
    req: Request,
    done_bytes: usize,
    reply: oneshot::Sender<(io::Result<usize>, IoBuf)>,
}

pub struct Engine {
    tx: Mutex<mpsc::Sender<InFlight>>,
    wake: OwnedFd,
}

static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();

/// The process-wide engine, started on first use; an error if io_uring is unavailable here.
pub fn engine() -> Result<&'static Engine> {
    ENGINE
        .get_or_init(Engine::start)
        .as_ref()
        .map_err(|e| CoreError::new(ErrorCode::Unsupported, format!("io_uring unavailable: {e}")))
}

impl Engine {
    fn start() -> std::result::Result<Self, String> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        // SAFETY: eventfd has no memory arguments; we take ownership of the returned fd.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd we own.
        let wake = unsafe { OwnedFd::from_raw_fd(raw) };
        let (tx, rx) = mpsc::channel();
        let wake_fd = wake.as_raw_fd();
        std::thread::Builder::new()
            .name("damselfly-uring".into())
            .spawn(move || ring_loop(ring, rx, wake_fd))
            .map_err(|e| format!("spawn io thread: {e}"))?;
        Ok(Self { tx: Mutex::new(tx), wake })
    }

    /// Hands one read or write to the io thread at once (short transfers are continued there);
    /// the receiver yields the buffer back with the number of bytes moved. Queuing eagerly,
    /// rather than when a future is first polled, lets the caller do other work (hash the
    /// piece) while the operation is in flight.
    fn send(&self, req: Request) -> std::result::Result<oneshot::Receiver<Outcome>, (io::Error, IoBuf)> {
        if req.len > req.buf.capacity() || (req.kind == OpKind::Read && matches!(req.buf, IoBuf::Shared(_))) {
            return Err((io::Error::new(io::ErrorKind::InvalidInput, "buffer does not fit the request"), req.buf));
        }
        let (reply, rx) = oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(tx) => tx.send(InFlight { req, done_bytes: 0, reply }).map_err(|e| e.0),
            Err(_) => Err(InFlight { req, done_bytes: 0, reply }),
        };
        if let Err(f) = sent {
            return Err((io::Error::other("io thread is gone"), f.req.buf));
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        Ok(rx)
    }
}

fn ring_loop(mut ring: IoUring, rx: mpsc::Receiver<InFlight>, wake_fd: i32) {
    let mut wake_buf: Box<u64> = Box::new(0);
    let mut inflight: HashMap<u64, InFlight> = HashMap::new();
    let mut backlog: VecDeque<InFlight> = VecDeque::new();
    let mut next_id: u64 = 0;
    let mut wake_armed = false;
    loop {
        if !wake_armed {
            let sqe =
                opcode::Read::new(types::Fd(wake_fd), (&mut *wake_buf as *mut u64).cast(), 8).build().user_data(WAKE);
            // SAFETY: wake_buf lives for the whole loop; the read targets exactly 8 bytes of it.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                wake_armed = true;
            }
        }
        loop {
            match rx.try_recv() {
                Ok(f) => backlog.push_back(f),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        while let Some(f) = backlog.pop_front() {
            let id = next_id;
            next_id = next_id.wrapping_add(1) % WAKE;
            let mut f = f;
            let sqe = build(&mut f, id);
            // SAFETY: the buffer and file live in `inflight` until the completion arrives.
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                backlog.push_front(f);
                break;
            }
            inflight.insert(id, f);
        }
        if let Err(e) = ring.submit_and_wait(1) {
            if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            // A broken ring fails every pending request rather than hanging its caller.
            for (_, f) in inflight.drain() {
                let _ = f.reply.send((Err(io::Error::new(e.kind(), e.to_string())), f.req.buf));
            }
            return;
        }
        let done: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (id, res) in done {
            if id == WAKE {
                wake_armed = false;
                continue;
            }
            let Some(mut f) = inflight.remove(&id) else { continue };
            if res < 0 {
                let _ = f.reply.send((Err(io::Error::from_raw_os_error(-res)), f.req.buf));
                continue;
            }
            f.done_bytes += res as usize;
            if res == 0 || f.done_bytes >= f.req.len {
                let n = f.done_bytes;
                let _ = f.reply.send((Ok(n), f.req.buf));
            } else {
                backlog.push_back(f);
            }
        }
    }
}

fn build(f: &mut InFlight, id: u64) -> io_uring::squeue::Entry {
    let fd = types::Fd(f.req.file.as_raw_fd());
    let left = (f.req.len - f.done_bytes).min(MAX_OP) as u32;
    let off = f.req.offset + f.done_bytes as u64;
    match f.req.kind {
        OpKind::Write => {
            // SAFETY: pointer arithmetic stays inside the buffer (len <= capacity, checked in submit).
            let p = unsafe { f.req.buf.ptr().add(f.done_bytes) };
            let flags = if f.req.dsync { libc::RWF_DSYNC } else { 0 };
            opcode::Write::new(fd, p, left).offset(off).rw_flags(flags).build().user_data(id)
        }
        OpKind::Read => {
            // submit() refuses reads into memory we do not own, so this is always Some.
            let base = f.req.buf.mut_ptr().unwrap_or(std::ptr::null_mut());
            // SAFETY: as above; the request owns the buffer exclusively while in flight.
            let p = unsafe { base.add(f.done_bytes) };
            opcode::Read::new(fd, p, left).offset(off).build().user_data(id)
        }
    }
}

/// An operation already queued by `start`.
pub enum Started {
    Ring(oneshot::Receiver<Outcome>),
    Blocking(tokio::task::JoinHandle<Outcome>),
    Failed(io::Error, IoBuf),
}

impl Started {
    /// Waits for the operation's completion: bytes moved, and the buffer back.
    pub async fn wait(self) -> (io::Result<usize>, IoBuf) {
        match self {
            Started::Ring(rx) => match rx.await {
                Ok(r) => r,
                // The io thread never drops a reply without sending, short of a panic there.
                Err(_) => {
                    (Err(io::Error::other("io thread dropped the request")), IoBuf::Pooled(crate::aligned::empty_buf()))
                }
            },
            Started::Blocking(h) => match h.await {
                Ok(r) => r,
                Err(e) => {
                    (Err(io::Error::other(format!("io task failed: {e}"))), IoBuf::Pooled(crate::aligned::empty_buf()))
                }
            },
            Started::Failed(e, buf) => (Err(e), buf),
        }
    }
}

/// Queues a request on the ring, or, where io_uring is refused (seccomp profiles of many
/// container runtimes block it), on tokio's blocking pool with pread/pwrite: slower but the
/// store keeps working. `engine_name` reports which one is in use. Must be called inside a
/// tokio runtime.
pub fn start(req: Request) -> Started {
    match engine() {
        Ok(e) => match e.send(req) {
            Ok(rx) => Started::Ring(rx),
            Err((err, buf)) => Started::Failed(err, buf),
        },
        Err(_) => Started::Blocking(tokio::task::spawn_blocking(move || blocking(req))),
    }
}

/// Runs a request to completion (see `start`).
pub async fn run(req: Request) -> (io::Result<usize>, IoBuf) {
    start(req).wait().await
}

/// "io_uring" or "threads" (the pread/pwrite fallback).
pub fn engine_name() -> &'static str {
    if engine().is_ok() {
        "io_uring"
    } else {
        "threads"
    }
}

fn blocking(mut req: Request) -> (io::Result<usize>, IoBuf) {
    use std::os::unix::fs::FileExt;
    if req.len > req.buf.capacity() {
        return (Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer does not fit the request")), req.buf);
    }
    let mut done = 0usize;
    while done < req.len {
        let off = req.offset + done as u64;
        let r = match req.kind {
            OpKind::Write => {
                let end = req.len;
                let src: &[u8] = match &req.buf {
                    IoBuf::Pooled(p) => &p.as_slice_full()[done..end],
                    IoBuf::Shared(s) => &(**s).as_ref()[done..end],
                };
                req.file.write_at(src, off)
            }
            OpKind::Read => {
                let end = req.len;
                match &mut req.buf {
                    IoBuf::Pooled(p) => req.file.read_at(&mut p.full_mut()[done..end], off),
                    IoBuf::Shared(_) => {
                        Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot read into shared memory"))
                    }
                }
            }
        };
        match r {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), req.buf),
        }
    }
    if req.dsync && req.kind == OpKind::Write {
        if let Err(e) = req.file.sync_data() {
            return (Err(e), req.buf);
        }
    }
    (Ok(done), req.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::PIECE_POOL;

    #[tokio::test]
    async fn ring_and_thread_fallback_move_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(dir.path().join("f"))
                .unwrap(),
        );
        let mut buf = PIECE_POOL.get(10_000).unwrap();
        buf.as_mut_slice().iter_mut().enumerate().for_each(|(i, b)| *b = (i % 251) as u8);
        let expected = buf.as_slice().to_vec();
        let (r, _) = run(Request {
            kind: OpKind::Write,
            file: file.clone(),
            buf: IoBuf::Pooled(buf),
            len: 10_000,
            offset: 5,
            dsync: false,
        })
        .await;
        assert_eq!(r.unwrap(), 10_000);
        let (r, back) = blocking(Request {
            kind: OpKind::Read,
            file: file.clone(),
            buf: IoBuf::Pooled(PIECE_POOL.get(10_000).unwrap()),
            len: 10_000,
            offset: 5,
            dsync: false,
        });
        assert_eq!(r.unwrap(), 10_000);
        assert_eq!(back.into_pooled().as_slice(), &expected[..]);
        let mut w = PIECE_POOL.get(3).unwrap();
        w.as_mut_slice().copy_from_slice(b"abc");
        let (r, _) = blocking(Request {
            kind: OpKind::Write,
            file: file.clone(),
            buf: IoBuf::Pooled(w),
            len: 3,
            offset: 0,
            dsync: false,
        });
        assert_eq!(r.unwrap(), 3);
        let (r, got) = run(Request {
            kind: OpKind::Read,
            file: file.clone(),
            buf: IoBuf::Pooled(PIECE_POOL.get(8).unwrap()),
            len: 8,
            offset: 0,
            dsync: false,
        })
        .await;
        assert_eq!(r.unwrap(), 8);
        assert_eq!(&got.into_pooled().as_slice()[..8], &[b'a', b'b', b'c', 0, 0, 0, 1, 2]);
        // Writes straight from caller memory; reads into it are refused.
        let shared = IoBuf::Shared(Box::new(b"XY".to_vec()));
        let (r, _) =
            run(Request { kind: OpKind::Write, file: file.clone(), buf: shared, len: 2, offset: 1, dsync: false })
                .await;
        assert_eq!(r.unwrap(), 2);
        let (r, _) = run(Request {
            kind: OpKind::Read,
            file,
            buf: IoBuf::Shared(Box::new(vec![0u8; 4])),
            len: 4,
            offset: 0,
            dsync: false,
        })
        .await;
        assert!(r.is_err());
        assert_eq!(engine_name(), "io_uring");
    }
}
