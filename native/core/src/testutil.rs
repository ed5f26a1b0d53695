//! Helpers shared by the crate's unit tests.

/// Deterministic bytes that do not repeat with any short period (so a misplaced range shows).
pub(crate) fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8).collect()
}
