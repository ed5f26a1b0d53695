//! Damselfly's native data core. Pure Rust: nothing here knows about Node.js, so the
//! same code is unit-tested and benchmarked with cargo and bound to JS by `binding`.

pub mod aligned;
pub mod cancel;
pub mod client;
pub mod codec;
pub mod digest;
pub mod error;
pub mod origin;
pub mod peercred;
pub mod probe;
pub mod quic;
pub mod seal;
pub mod server;
pub mod store;
mod tee;
#[cfg(test)]
mod testutil;
pub mod tls;
pub mod uring;
pub mod vortex;

pub use error::{BackendAnswer, CoreError, ErrorCode};

/// Version of the core crate, reported by `damselfly doctor` next to the addon version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
