//! Helpers shared by the crate's unit tests.

/// Deterministic bytes that do not repeat with any short period (so a misplaced range shows).
pub(crate) fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8).collect()
}

/// Inputs per fuzz target when DAMSELFLY_FUZZ_CASES is unset: a few seconds per target on
/// 2 cores, so every `cargo test` (CI's `npm test`) runs them.
const DEFAULT_FUZZ_CASES: u32 = 100_000;

/// Runs one proptest-driven fuzz target for DAMSELFLY_FUZZ_CASES inputs (the dedicated run is
/// `npm run fuzz -- --cases 1000000`) and prints how many it ran, which `scripts/fuzz.mjs`
/// reports. A failing input is shrunk by proptest and panics with it; such an input is then
/// kept as a named regression test next to the target.
pub(crate) fn fuzz<S>(
    name: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) where
    S: proptest::strategy::Strategy,
    S::Value: std::fmt::Debug,
{
    use proptest::test_runner::{Config, TestRunner};
    let cases = fuzz_cases();
    // No proptest-regressions files written into the source tree: regressions are named tests.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let ran = std::cell::Cell::new(0u64);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        check(input)
    });
    eprintln!("fuzz {name}: {} inputs in {:.1} s", ran.get(), started.elapsed().as_secs_f64());
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// Fails a fuzz target whose inputs never reached one of its accepting branches (a generator
/// that only produces garbage tests the refusals alone). Checked from 1000 inputs up.
pub(crate) fn reached(what: &str, count: u64) {
    if fuzz_cases() >= 1000 {
        assert!(count > 0, "fuzz: no input reached {what}; the generator needs valid-looking inputs");
    }
    eprintln!("fuzz reached {what}: {count}");
}

fn fuzz_cases() -> u32 {
    match std::env::var("DAMSELFLY_FUZZ_CASES") {
        Ok(v) => v.parse::<u32>().unwrap_or_else(|_| panic!("DAMSELFLY_FUZZ_CASES={v:?} is not a whole number")),
        Err(_) => DEFAULT_FUZZ_CASES,
    }
}

/// Arbitrary bytes up to `max` long, the unstructured half of every fuzz target's input.
pub(crate) fn any_bytes(max: usize) -> proptest::collection::VecStrategy<proptest::num::u8::Any> {
    proptest::collection::vec(proptest::num::u8::ANY, 0..=max)
}

/// Applies `edits` to `bytes`: each flips one byte (position and mask from the pair), then the
/// result is cut at `cut` (if any; modulo its length + 1) and `tail` appended. Mutations of valid
/// frames reach the decoders' deeper branches that random bytes almost never do.
pub(crate) fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>, tail: &[u8]) -> Vec<u8> {
    for &(at, mask) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes.extend_from_slice(tail);
    bytes
}

/// Edits for `mutate`: up to 3 byte flips, an optional cut, up to 8 appended bytes.
pub(crate) type Mutation = (Vec<(usize, u8)>, Option<usize>, Vec<u8>);

pub(crate) fn mutations() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    (
        proptest::collection::vec((any::<usize>(), 1u8..), 0..4),
        proptest::option::of(any::<usize>()),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
}
