//! Host capability probes for `damselfly doctor`, run in one call.

use damselfly_core::probe::{self, Probe};
use napi_derive::napi;
use std::path::Path;

#[napi(object)]
pub struct ProbeResult {
    pub ok: bool,
    pub reason: Option<String>,
}

impl From<Probe> for ProbeResult {
    fn from(p: Probe) -> Self {
        Self { ok: p.ok, reason: p.reason }
    }
}

#[napi(object)]
pub struct ProbeOptions {
    /// Directory where piece files will live (O_DIRECT and sendfile are probed there).
    pub data_dir: String,
    /// Directory meant to be the tmpfs tier.
    pub tmpfs_dir: String,
}

#[napi(object)]
pub struct ProbeReport {
    pub io_uring: ProbeResult,
    pub o_direct: ProbeResult,
    pub tmpfs: ProbeResult,
    pub sendfile: ProbeResult,
    pub zstd: ProbeResult,
    pub aes_gcm: ProbeResult,
}

#[napi]
pub fn probe_host(options: ProbeOptions) -> ProbeReport {
    let data = Path::new(&options.data_dir);
    ProbeReport {
        io_uring: probe::io_uring().into(),
        o_direct: probe::o_direct(data).into(),
        tmpfs: probe::tmpfs(Path::new(&options.tmpfs_dir)).into(),
        sendfile: probe::sendfile(data).into(),
        zstd: probe::zstd().into(),
        aes_gcm: probe::aes_gcm().into(),
    }
}
