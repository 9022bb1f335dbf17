//! Counter-based randomness: every draw is a pure function of `(seed, step, stream, index)`, so a
//! resumed run needs only the seed and the step to continue bit for bit.
//!
//! A training run has one seed (its config's `seed`, e.g. `--set train.seed=1`) and draws
//! everything from it through named streams: the data order ([`picks`]), the per-step noise and
//! times ([`step_seed`], [`uniform`]) and the initialisation of fresh parameters ([`init_seed`]).
//! Two runs with different seeds are independent; evals keep their own sampling seeds.

/// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit seed for one `(step, stream)` of a run seeded with `seed`.
///
/// Streams separate independent uses within a step (noise, timesteps, dropout...).
pub fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    mix64(mix64(mix64(seed) ^ step) ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// The `index`-th uniform draw in `[0, 1)` of `(seed, step, stream)` (53 random bits).
pub fn uniform(seed: u64, step: u64, stream: u64, index: u64) -> f64 {
    let bits = mix64(step_seed(seed, step, stream) ^ mix64(index));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The seed of the backend's generator (`B::seed`) for initialising the fresh parameters of a run
/// seeded with `seed` (stream `stream` names what is initialised), so that two stages with the same
/// run seed, or two runs with different seeds, do not start from the same draws.
pub fn init_seed(seed: u64, stream: u64) -> u64 {
    step_seed(seed, u64::MAX, stream)
}

/// The data order: the `batch` item indices (of `len`, drawn with replacement) of step `step` of
/// stream `stream` of a run seeded with `seed`.
///
/// # Panics
/// If `len` is 0.
pub fn picks(seed: u64, step: u64, stream: u64, batch: usize, len: usize) -> Vec<usize> {
    assert!(len > 0, "picks from an empty data set");
    (0..batch as u64)
        .map(|i| ((uniform(seed, step, stream, i) * len as f64) as usize).min(len - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_deterministic_in_range_and_spread() {
        let xs: Vec<f64> = (0..4000).map(|i| uniform(3, 7, 1, i)).collect();
        assert_eq!(xs[5], uniform(3, 7, 1, 5));
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_ne!(uniform(3, 7, 1, 0), uniform(3, 8, 1, 0));
        assert_ne!(uniform(3, 7, 1, 0), uniform(3, 7, 2, 0));
    }

    #[test]
    fn picks_follow_the_seed_and_stay_in_range() {
        let a = picks(0, 1, 26, 64, 1024);
        assert_eq!(a, picks(0, 1, 26, 64, 1024));
        assert!(a.iter().all(|&i| i < 1024));
        assert_ne!(a, picks(1, 1, 26, 64, 1024), "another seed, another order");
        assert_ne!(a, picks(0, 2, 26, 64, 1024), "another step, another batch");
        assert_ne!(init_seed(0, 18), init_seed(1, 18));
        assert_ne!(init_seed(0, 18), init_seed(0, 28));
    }
}
