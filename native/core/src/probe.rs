//! Host capability probes for `damselfly doctor`. Each probe really exercises the kernel
//! feature (a ring is set up, an O_DIRECT write is issued, bytes go through sendfile) because
//! containers and seccomp profiles often expose the syscall but refuse it at run time.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Result of one probe: `ok` plus the reason when it is not.
#[derive(Debug, Clone)]
pub struct Probe {
    pub ok: bool,
    pub reason: Option<String>,
}

impl Probe {
    fn pass() -> Self {
        Self { ok: true, reason: None }
    }
    fn fail(reason: impl Into<String>) -> Self {
        Self { ok: false, reason: Some(reason.into()) }
    }
    fn from_result(r: std::result::Result<(), String>) -> Self {
        match r {
            Ok(()) => Self::pass(),
            Err(e) => Self::fail(e),
        }
    }
}

/// Sets up a small ring and completes one NOP through it.
pub fn io_uring() -> Probe {
    Probe::from_result((|| {
        let mut ring = io_uring::IoUring::new(4).map_err(|e| format!("io_uring_setup: {e}"))?;
        let nop = io_uring::opcode::Nop::new().build().user_data(7);
        // SAFETY: a NOP entry references no memory.
        unsafe { ring.submission().push(&nop) }.map_err(|e| format!("submission queue full: {e}"))?;
        ring.submit_and_wait(1).map_err(|e| format!("io_uring_enter: {e}"))?;
        let cqe = ring.completion().next().ok_or("no completion for NOP")?;
        if cqe.result() < 0 {
            return Err(format!("NOP failed: errno {}", -cqe.result()));
        }
        Ok(())
    })())
}

/// Writes and reads back one aligned 4 KiB block with O_DIRECT in `dir`.
pub fn o_direct(dir: &Path) -> Probe {
    with_scratch_file(dir, "odirect", |path| {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| format!("open with O_DIRECT in {}: {e}", dir.display()))?;
        let mut buf = crate::aligned::AlignedBuf::zeroed(4096, 4096).ok_or("cannot allocate an aligned buffer")?;
        buf.as_mut_slice().fill(0x5a);
        let fd = file.as_raw_fd();
        // SAFETY: buf is 4096 bytes, aligned to 4096, alive for the call.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), 4096, 0) };
        if n != 4096 {
            return Err(format!("O_DIRECT write: {}", std::io::Error::last_os_error()));
        }
        buf.as_mut_slice().fill(0);
        // SAFETY: as above.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 4096, 0) };
        if n != 4096 || buf.as_slice().iter().any(|b| *b != 0x5a) {
            return Err("O_DIRECT read-back differs from what was written".into());
        }
        Ok(())
    })
}

/// Runs `f` on a scratch file path in `dir` and removes the file whatever happens.
fn with_scratch_file(dir: &Path, what: &str, f: impl FnOnce(&Path) -> std::result::Result<(), String>) -> Probe {
    let path = dir.join(format!(".damselfly-{what}-probe-{}", std::process::id()));
    let result = f(&path);
    let _ = std::fs::remove_file(&path);
    Probe::from_result(result)
}

/// Checks that `dir` lives on tmpfs (statfs magic) and can hold a file.
pub fn tmpfs(dir: &Path) -> Probe {
    Probe::from_result((|| {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| "path contains a NUL byte".to_string())?;
        // SAFETY: zeroed statfs is a valid out-parameter.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid C string, st a valid out-pointer.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(format!("statfs {}: {}", dir.display(), std::io::Error::last_os_error()));
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        #[allow(clippy::unnecessary_cast)]
        if st.f_type as i64 != TMPFS_MAGIC {
            return Err(format!("{} is not a tmpfs mount", dir.display()));
        }
        let path = dir.join(format!(".damselfly-tmpfs-probe-{}", std::process::id()));
        let r = std::fs::write(&path, b"damselfly").map_err(|e| format!("write {}: {e}", path.display()));
        let _ = std::fs::remove_file(&path);
        r
    })())
}

/// Sends 64 KiB from a file into a socket with sendfile(2) and reads it back.
pub fn sendfile(dir: &Path) -> Probe {
    with_scratch_file(dir, "sendfile", |path| {
        let payload: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("create probe file: {e}"))?;
        f.write_all(&payload).map_err(|e| format!("write probe file: {e}"))?;
        let (tx, mut rx) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(65536);
            let _ = rx.read_to_end(&mut got);
            got
        });
        let mut off: libc::off_t = 0;
        let mut left = payload.len();
        while left > 0 {
            // SAFETY: both fds are open for the duration of the call.
            let n = unsafe { libc::sendfile(tx.as_raw_fd(), f.as_raw_fd(), &mut off, left) };
            if n <= 0 {
                return Err(format!("sendfile: {}", std::io::Error::last_os_error()));
            }
            left -= n as usize;
        }
        drop(tx);
        let got = reader.join().map_err(|_| "reader thread panicked".to_string())?;
        if got != payload {
            return Err("bytes received through sendfile differ from the file".into());
        }
        Ok(())
    })
}

/// Round-trips a sample through zstd.
pub fn zstd() -> Probe {
    Probe::from_result((|| {
        let sample = b"damselfly damselfly damselfly damselfly".repeat(64);
        let packed = crate::codec::zstd_compress(&sample, 3).map_err(|e| e.message)?;
        let back = crate::codec::zstd_decompress(&packed, sample.len()).map_err(|e| e.message)?;
        if back != sample {
            return Err("zstd round trip changed the bytes".into());
        }
        Ok(())
    })())
}

/// Seals and opens a sample with AES-256-GCM, and checks a flipped bit is refused.
pub fn aes_gcm() -> Probe {
    Probe::from_result((|| {
        let key = [7u8; 32];
        let nonce = [9u8; 12];
        let sample = b"damselfly piece".to_vec();
        let mut sealed = crate::codec::aes_gcm_seal(&key, &nonce, &sample).map_err(|e| e.message)?;
        let opened = crate::codec::aes_gcm_open(&key, &nonce, &sealed).map_err(|e| e.message)?;
        if opened != sample {
            return Err("AES-256-GCM round trip changed the bytes".into());
        }
        if let Some(b) = sealed.first_mut() {
            *b ^= 1;
        }
        if crate::codec::aes_gcm_open(&key, &nonce, &sealed).is_ok() {
            return Err("AES-256-GCM accepted a tampered ciphertext".into());
        }
        Ok(())
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_work() {
        assert!(zstd().ok);
        assert!(aes_gcm().ok);
    }

    #[test]
    fn tmpfs_rejects_non_tmpfs_dir() {
        let p = tmpfs(Path::new("/proc"));
        assert!(!p.ok);
        assert!(p.reason.unwrap_or_default().contains("not a tmpfs"));
    }

    #[test]
    fn sendfile_roundtrip() {
        let dir = std::env::temp_dir();
        let p = sendfile(&dir);
        assert!(p.ok, "{:?}", p.reason);
    }
}
