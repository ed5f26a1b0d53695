// napi-derive registers exports only outside `cfg(test)`, so the test build sees them as dead.
#![cfg_attr(test, allow(dead_code))]

//! napi-rs binding: converts JS values to core types and core errors to JS errors whose
//! `code` is the stable string of `ErrorCode`. No logic lives here.

mod codec;
mod digest;
mod error;
mod origin;
mod peercred;
mod probe;
mod store;

use napi_derive::napi;

/// Versions of the addon and of the core crate it was built from.
#[napi(object)]
pub struct AddonVersion {
    pub addon: String,
    pub core: String,
}

#[napi]
pub fn version() -> AddonVersion {
    AddonVersion { addon: env!("CARGO_PKG_VERSION").to_string(), core: damselfly_core::VERSION.to_string() }
}
