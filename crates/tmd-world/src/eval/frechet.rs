//! Frechet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, the FID formula):
//! `d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`.
//!
//! The trace of the matrix square root is computed without a non-symmetric square root:
//! `(S_a S_b)^(1/2)` has the same eigenvalues as the symmetric `S_a^(1/2) S_b S_a^(1/2)`, so its
//! trace is the sum of the square roots of that matrix's (clamped non-negative) eigenvalues.
//! Both symmetric eigen-decompositions go through the SVD ([`psd_eigen`]): nalgebra 0.34's
//! `SymmetricEigen` returns NaN on some rank-deficient covariances, which this evaluator's
//! features give (few clips, feature channels that are constant over a set), and that NaN came
//! out of the final clamp as a distance of 0. Accumulation is in f64.

use nalgebra::{DMatrix, DVector, SVD};

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

/// Eigenvalues and eigenvectors of a symmetric positive semi-definite matrix (symmetrised
/// first), through its SVD `M = U S V^T`: column `i` of `U` is an eigenvector with eigenvalue
/// `s_i` where `u_i . v_i > 0`, and with the rounding-level negative eigenvalue `-s_i`, returned
/// as 0, where it is negative. `None` if the SVD does not converge.
fn psd_eigen(m: &DMatrix<f64>) -> Option<(DVector<f64>, DMatrix<f64>)> {
    let sym = (m + m.transpose()) * 0.5;
    let svd = SVD::try_new(sym, true, true, f64::EPSILON, 10_000)?;
    let (u, v_t) = (svd.u?, svd.v_t?);
    let values = DVector::from_iterator(
        svd.singular_values.len(),
        svd.singular_values.iter().enumerate().map(|(i, &s)| {
            // u_i = -v_i: a (rounding-level) negative eigenvalue, clamped to 0
            let positive = u.column(i).dot(&v_t.row(i).transpose()) > 0.0;
            if positive {
                s
            } else {
                0.0
            }
        }),
    );
    Some((values, u))
}

/// Symmetric positive semi-definite square root (negative rounding eigenvalues clamped at 0).
fn sqrt_psd(m: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    let (values, vectors) = psd_eigen(m)?;
    let roots = values.map(f64::sqrt);
    Some(&vectors * DMatrix::from_diagonal(&roots) * vectors.transpose())
}

/// The Frechet distance `d^2` between the Gaussians of `a` and `b` (see the module docs).
///
/// NaN, never a silent 0, if a statistic is not finite or a decomposition does not converge.
///
/// # Panics
/// If the two have different widths.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    assert_eq!(a.mean.len(), b.mean.len(), "feature widths differ");
    let finite = |s: &FeatureStats| s.mean.iter().chain(s.cov.iter()).all(|v| v.is_finite());
    if !finite(a) || !finite(b) {
        return f64::NAN;
    }
    let diff = (&a.mean - &b.mean).norm_squared();
    let tr_cross = sqrt_psd(&a.cov)
        .and_then(|root_a| psd_eigen(&(&root_a * &b.cov * &root_a)))
        .map(|(values, _)| values.iter().map(|l| l.sqrt()).sum::<f64>());
    let Some(tr_cross) = tr_cross else {
        return f64::NAN;
    };
    let d = diff + a.cov.trace() + b.cov.trace() - 2.0 * tr_cross;
    // `f64::max` would turn a NaN into 0, the best possible score
    if d.is_finite() {
        d.max(0.0)
    } else {
        f64::NAN
    }
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
    fn rank_one_covariances_with_constant_channels_match_the_closed_form() {
        // Two vectors per set give rank-1 covariances S = p p^T with p = (x_1 - x_2) / sqrt(2),
        // so tr((S_a S_b)^(1/2)) = |p_a . q_b| and d^2 = |mu_a - mu_b|^2 + |p|^2 + |q|^2 - 2 |p . q|.
        // Channels 1, 3 and 4 are constant in both sets (zero rows and columns of both
        // covariances), as dead feature channels of a few clips make them.
        let a_rows = vec![
            vec![0.3f32, 2.0, -1.0, 0.0, 5.0, 0.25],
            vec![1.1, 2.0, 0.5, 0.0, 5.0, -0.75],
        ];
        let b_rows = vec![
            vec![-0.4f32, 1.0, 2.0, 0.0, 4.0, 0.5],
            vec![0.6, 1.0, 1.0, 0.0, 4.0, 2.5],
        ];
        let (a, b) = (
            FeatureStats::from_rows(&a_rows, 6),
            FeatureStats::from_rows(&b_rows, 6),
        );
        let half_diff = |rows: &[Vec<f32>]| -> Vec<f64> {
            (0..6)
                .map(|j| (rows[0][j] as f64 - rows[1][j] as f64) / 2f64.sqrt())
                .collect()
        };
        let (p, q) = (half_diff(&a_rows), half_diff(&b_rows));
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(u, v)| u * v).sum::<f64>();
        let expected = (&a.mean - &b.mean).norm_squared() + dot(&p, &p) + dot(&q, &q)
            - 2.0 * dot(&p, &q).abs();
        let d = frechet_distance(&a, &b);
        assert!(
            (d - expected).abs() < 1e-9 * expected,
            "{d} against {expected}"
        );
    }

    #[test]
    fn a_sparse_rank_one_covariance_gives_the_closed_form() {
        // nalgebra 0.34's `SymmetricEigen` returns NaN eigenvalues for this p p^T (16 channels,
        // 4 of them varying: what two clips with dead feature channels give); the NaN left the
        // old trace term at 0 (the distance too large) or inf (a distance of 0). Closed form
        // for S_a = p p^T, S_b = q q^T and equal means: |p|^2 + |q|^2 - 2 |p . q|.
        let mut p = DVector::<f64>::zeros(16);
        (p[0], p[1], p[11], p[13]) = (0.017, 0.0199, 0.0283, -0.039);
        let mut q = DVector::<f64>::zeros(16);
        (q[0], q[2], q[11], q[13]) = (0.5, -0.25, 0.125, 1.0);
        let stats = |v: &DVector<f64>| FeatureStats {
            mean: DVector::zeros(16),
            cov: v * v.transpose(),
            count: 2,
        };
        let expected = p.norm_squared() + q.norm_squared() - 2.0 * p.dot(&q).abs();
        let d = frechet_distance(&stats(&p), &stats(&q));
        assert!(
            (d - expected).abs() < 1e-7 * expected,
            "{d} against {expected}"
        );
    }

    #[test]
    fn non_finite_features_give_nan_not_zero() {
        let rows = vec![vec![1.0f32, f32::NAN], vec![2.0, 0.5]];
        let s = FeatureStats::from_rows(&rows, 2);
        assert!(frechet_distance(&s, &s).is_nan());
    }

    #[test]
    fn covariance_is_unbiased() {
        let rows = vec![vec![1.0f32], vec![3.0]];
        let s = FeatureStats::from_rows(&rows, 1);
        assert_eq!(s.mean[0], 2.0);
        assert_eq!(s.cov[(0, 0)], 2.0);
    }
}
