//! Who is at the other end of a local unix socket: the kernel's SO_PEERCRED record (the
//! credentials the peer had when it connected). The dfdaemon's download socket asks this per
//! connection so output files are written with the caller's rights, not the daemon's.

use crate::error::{CoreError, ErrorCode};
use std::os::fd::RawFd;

/// Process id (0 when the peer's process is outside this pid namespace), user id and group id
/// of a unix socket's peer at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of the connected unix stream socket `fd` (Linux). The fd stays owned by the
/// caller; it is only read.
pub fn peer_credentials(fd: RawFd) -> Result<PeerCredentials, CoreError> {
    if fd < 0 {
        return Err(CoreError::new(ErrorCode::InvalidArgument, format!("peer credentials: invalid fd {fd}")));
    }
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a live, properly aligned `ucred` on this stack frame and `len` holds its
    // exact size, which is what getsockopt(SOL_SOCKET, SO_PEERCRED) writes at most; the kernel
    // validates `fd` (EBADF / ENOTSOCK come back as errors) and never keeps either pointer.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len)
    };
    if rc != 0 {
        return Err(CoreError::io("peer credentials (SO_PEERCRED)", std::io::Error::last_os_error()));
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(CoreError::new(
            ErrorCode::Unsupported,
            format!("peer credentials: kernel returned {len} bytes, not a ucred"),
        ));
    }
    // A socket without a peer reports uid/gid -1: nobody must be mistaken for a caller with
    // those ids. pid 0 alone is a real peer whose process is outside this pid namespace (a
    // host process calling a containerised daemon): its ids still hold, its pid tells nothing.
    if cred.uid == u32::MAX || cred.gid == u32::MAX {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("peer credentials: fd {fd} has no connected unix peer"),
        ));
    }
    Ok(PeerCredentials { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socketpair_peer_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_credentials(a.as_raw_fd()).unwrap();
        // SAFETY: getpid/getuid/getgid only read this process's ids.
        let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
        assert_eq!(c, PeerCredentials { pid, uid, gid });
    }

    #[test]
    fn a_file_or_a_bad_fd_is_refused() {
        let f = tempfile::tempfile().unwrap();
        assert!(peer_credentials(f.as_raw_fd()).is_err());
        assert_eq!(peer_credentials(-1).unwrap_err().code, ErrorCode::InvalidArgument);
    }
}
