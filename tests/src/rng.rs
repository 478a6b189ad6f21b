//! Reproducible randomness for the kill/rotate matrix without an extra
//! dependency: SplitMix64, seeded from `CUSTODY_TEST_SEED` or the clock,
//! with the seed printed so any failure can be replayed.

use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64: tiny, fast, and good enough to pick kill points.
#[derive(Debug, Clone)]
pub struct TestRng {
    state: u64,
    seed: u64,
}

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed, seed }
    }

    /// Seeds from `CUSTODY_TEST_SEED` (decimal) if set, else from the clock,
    /// and prints `<test>: seed <n>` (replay with `CUSTODY_TEST_SEED=<n>`).
    pub fn from_env(test: &str) -> Self {
        let seed = match std::env::var("CUSTODY_TEST_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("CUSTODY_TEST_SEED={s:?} is not a decimal u64")),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        eprintln!("{test}: seed {seed} (replay with CUSTODY_TEST_SEED={seed})");
        Self::new(seed)
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p` (0.0 ..= 1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The number of kill cycles to run: `CUSTODY_TEST_CYCLES` if set (the long
/// mode, e.g. 300), else `default`.
pub fn cycles_from_env(default: usize) -> usize {
    match std::env::var("CUSTODY_TEST_CYCLES") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CUSTODY_TEST_CYCLES={s:?} is not a number")),
        Err(_) => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let mut a = TestRng::new(42);
        let mut b = TestRng::new(42);
        for _ in 0..100 {
            let x = a.range(3, 7);
            assert_eq!(x, b.range(3, 7));
            assert!((3..=7).contains(&x));
        }
        assert_ne!(TestRng::new(1).next_u64(), TestRng::new(2).next_u64());
    }
}
