//! Frechet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, the FID formula):
//! `d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`.
//!
//! The trace of the matrix square root is computed without a non-symmetric square root:
//! `(S_a S_b)^(1/2)` has the same eigenvalues as the symmetric `S_a^(1/2) S_b S_a^(1/2)`, so its
//! trace is the sum of the square roots of that matrix's (clamped non-negative) eigenvalues.
//! Accumulation is in f64.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Mean, `[dim]`.
    pub mean: DVector<f64>,
    /// Covariance (unbiased, `n - 1` in the denominator), `[dim, dim]`.
    pub cov: DMatrix<f64>,
    /// Number of vectors.
    pub count: usize,
}

impl FeatureStats {
    /// Statistics of `rows` (each one feature vector of width `dim`).
    ///
    /// # Panics
    /// If a row's width is not `dim`.
    pub fn from_rows(rows: &[Vec<f32>], dim: usize) -> Self {
        let n = rows.len();
        let mut mean = DVector::<f64>::zeros(dim);
        for r in rows {
            assert_eq!(
                r.len(),
                dim,
                "feature row of width {} (expected {dim})",
                r.len()
            );
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
            }
        }
        if n > 0 {
            mean /= n as f64;
        }
        let mut cov = DMatrix::<f64>::zeros(dim, dim);
        for r in rows {
            let d = DVector::from_iterator(dim, r.iter().map(|&v| v as f64)) - &mean;
            cov += &d * d.transpose();
        }
        if n > 1 {
            cov /= (n - 1) as f64;
        }
        Self {
            mean,
            cov,
            count: n,
        }
    }
}

/// Symmetric positive semi-definite square root (eigenvalues clamped at 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Frechet distance `d^2` between the Gaussians of `a` and `b` (see the module docs).
///
/// # Panics
/// If the two have different widths.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    assert_eq!(a.mean.len(), b.mean.len(), "feature widths differ");
    let diff = (&a.mean - &b.mean).norm_squared();
    let root_a = sqrt_psd(&a.cov);
    let middle = &root_a * &b.cov * &root_a;
    let middle = (&middle + middle.transpose()) * 0.5;
    let tr_cross: f64 = SymmetricEigen::new(middle)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    (diff + a.cov.trace() + b.cov.trace() - 2.0 * tr_cross).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sets_have_zero_distance() {
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                vec![
                    (i as f32 * 0.37).sin(),
                    (i as f32 * 0.11).cos(),
                    i as f32 * 0.01,
                ]
            })
            .collect();
        let s = FeatureStats::from_rows(&rows, 3);
        assert!(frechet_distance(&s, &s) < 1e-9);
    }

    #[test]
    fn matches_the_closed_form_for_diagonal_gaussians() {
        // For diagonal covariances the distance is sum((mu_a - mu_b)^2 + (sd_a - sd_b)^2).
        let a = FeatureStats {
            mean: DVector::from_vec(vec![0.0, 1.0]),
            cov: DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 1.0])),
            count: 10,
        };
        let b = FeatureStats {
            mean: DVector::from_vec(vec![1.0, 1.0]),
            cov: DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 9.0])),
            count: 10,
        };
        let expected = 1.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((frechet_distance(&a, &b) - expected).abs() < 1e-9);
        // Symmetric in its arguments.
        assert!((frechet_distance(&b, &a) - expected).abs() < 1e-9);
    }

    #[test]
    fn covariance_is_unbiased() {
        let rows = vec![vec![1.0f32], vec![3.0]];
        let s = FeatureStats::from_rows(&rows, 1);
        assert_eq!(s.mean[0], 2.0);
        assert_eq!(s.cov[(0, 0)], 2.0);
    }
}
