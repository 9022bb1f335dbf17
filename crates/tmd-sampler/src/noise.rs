//! Seeded Gaussian noise, drawn on the host so a seed gives the same latent on every backend.

use burn::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Standard normal noise of `shape`, a pure function of `seed` (Box-Muller over `StdRng`).
///
/// # Shapes
/// - returns `shape`, e.g. latents `[batch, channels, frames, height, width]`.
pub fn gaussian<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(n + 1);
    while values.len() < n {
        // u1 in (0, 1] keeps ln finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        values.push((r * a.cos()) as f32);
        values.push((r * a.sin()) as f32);
    }
    values.truncate(n);
    Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device).reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn same_seed_same_noise_and_unit_moments() {
        let device = Default::default();
        let a = gaussian::<NdArray, 2>([64, 64], 7, &device);
        let b = gaussian::<NdArray, 2>([64, 64], 7, &device);
        let c = gaussian::<NdArray, 2>([64, 64], 8, &device);
        let (va, vb, vc): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            a.into_data().to_vec().unwrap(),
            b.into_data().to_vec().unwrap(),
            c.into_data().to_vec().unwrap(),
        );
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let mean = va.iter().sum::<f32>() / va.len() as f32;
        let var = va.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / va.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.08, "var {var}");
    }
}
