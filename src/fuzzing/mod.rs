//! Fuzz harnesses: one `pub fn TARGET(&[u8])` per parser of outside data, shared by the
//! libFuzzer binaries in `fuzz/` (coverage-guided, `fuzz/run.sh`) and the `cargo test` smoke
//! test `tests/fuzz_smoke.rs` (seed corpus, regressions, and deterministic mutations).
//!
//! Each harness must not panic, hang or allocate without bound for any input; the `assert!`s in
//! them state the stronger properties checked (same access units whatever the chunking, routes
//! and directives round-trip, a validated config serialises and parses back, ...). A failed
//! assertion is a finding, exactly like a panic in the code under test.
//!
//! Not part of hlsd's interface: `#[doc(hidden)]`, may change with the parsers.

mod config;
mod h264;
mod requests;
mod ts;

pub use config::{config_toml, specs};
pub use h264::{au_parser, sps};
pub use requests::http_request;
pub use ts::ts_demux;

/// A harness: any bytes in, panics on a finding.
pub type Harness = fn(&[u8]);

/// The targets by name, for the smoke test and tools.
pub const TARGETS: &[(&str, Harness)] = &[
    ("au_parser", au_parser),
    ("sps", sps),
    ("http_request", http_request),
    ("config_toml", config_toml),
    ("specs", specs),
    ("ts_demux", ts_demux),
];

/// A small deterministic PRNG (xorshift64*): chunkings derived from the input, and the smoke
/// test's mutations. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Splits `n` bytes of option header off the input (shorter inputs give what they have, padded
/// with zeros), so every byte string is a valid input.
fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let k = data.len().min(N);
    let mut h = [0u8; N];
    h[..k].copy_from_slice(&data[..k]);
    (h, &data[k..])
}
