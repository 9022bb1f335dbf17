//! A tiny, version-stable pseudo-random generator (SplitMix64).
//!
//! The world must render identical pixels for the same seed forever, across `rand` releases, so it uses
//! its own few lines of arithmetic instead of a library generator whose stream may change.

/// Mixes a 64-bit value into a well-scrambled 64-bit value (the SplitMix64 finaliser).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a seed together with a list of words (indices, stream tags) into one 64-bit value.
pub(crate) fn hash(seed: u64, words: &[u64]) -> u64 {
    let mut h = mix64(seed ^ 0x6a09_e667_f3bc_c909);
    for &w in words {
        h = mix64(h ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    h
}

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next raw 64-bit value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform `f32` in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform `f32` in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for n far below 2^32.
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}
