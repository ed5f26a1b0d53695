//! SO_PEERCRED of an accepted unix socket, for the dfdaemon's download socket.

use crate::error::{to_js, Result};
use damselfly_core::peercred;
use napi_derive::napi;

/// The kernel's record of who connected: process id, user id, group id.
#[napi(object)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Credentials of the peer of the connected unix socket `fd` (owned by the caller, only read).
#[napi]
pub fn peer_credentials(fd: i32) -> Result<PeerCredentials> {
    let c = peercred::peer_credentials(fd).map_err(to_js)?;
    Ok(PeerCredentials { pid: c.pid, uid: c.uid, gid: c.gid })
}
