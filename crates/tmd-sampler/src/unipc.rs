//! UniPC multistep sampling (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
//! of Diffusion Models"), data-prediction form, B(h) variants, for flow matching.
//!
//! Numerically equal to diffusers 0.42.1 `UniPCMultistepScheduler` configured as Wan2.1 does
//! (`prediction_type="flow_prediction"`, `use_flow_sigmas=True`, `solver_order=2`, `solver_type="bh2"`,
//! `predict_x0=True`, `lower_order_final=True`, `final_sigmas_type="zero"`) and to Wan's original
//! `FlowUniPCMultistepScheduler`; pinned by `tests/unipc_parity.rs` against `tests/fixtures/unipc`.
//!
//! Flow matching in UniPC's notation: `alpha_s = 1 - s`, `sigma_s = s`, log-SNR `lambda_s = ln(1 - s) - ln(s)`,
//! the data prediction `x0 = x - s v`. Step `k` (model evaluated at `x_k`, time `s_k`):
//! 1. `m_k = x_k - s_k v_k`.
//! 2. Corrector UniC (if `k > 0` and `k - 1` not in `disable_corrector`): recompute the previous step
//!    `s_{k-1} -> s_k` from the stored sample `x_{k-1}` with the new `m_k` added to the fit:
//!    `x_k <- (s_k / s_{k-1}) x_{k-1} - alpha_k (e^{-h} - 1) m_{k-1} - alpha_k B(h) (sum_i rho_i D_i + rho_p (m_k - m_{k-1}))`.
//! 3. Predictor UniP of order `p` from `x_k` to `s_{k+1}`:
//!    `x_{k+1} = (s_{k+1} / s_k) x_k - alpha_{k+1} (e^{-h} - 1) m_k - alpha_{k+1} B(h) sum_i rho_i D_i`,
//!    with `h = lambda_{k+1} - lambda_k`, `D_i = (m_{k-i} - m_k) / r_i`, `r_i = (lambda_{k-i} - lambda_k) / h`,
//!    `B(h) = e^{-h} - 1` (bh2) or `-h` (bh1), and the `rho` solving the order conditions (`rho = 1/2` for order 2).
//!
//! The order is `min(solver_order, steps taken + 1)` (warm-up) and, with `lower_order_final`, at most the number of
//! steps left, so the last step (to `s = 0`, where `lambda = +inf` and `e^{-h} - 1 = -1`) is first order and returns
//! the current `x0` prediction `m_{N-1}` exactly. The corrector reuses the model output at the predicted sample,
//! so it costs no extra evaluation; its corrected sample feeds the next predictor, while `m_k` itself is computed
//! from the uncorrected `x_k` (as in the reference).

use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor};

use crate::error::{Result, SamplerError};
use crate::schedule::FlowSchedule;
use crate::{check_same_shape, FlowSolver};

/// The `B(h)` function of UniPC's update (paper Section 3.2).
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum UniPcVariant {
    /// `B(h) = h` (in the x0 form `-h`); recommended by the UniPC authors for unconditional sampling with very few steps.
    Bh1,
    /// `B(h) = e^h - 1` (in the x0 form `e^{-h} - 1`); Wan2.1's choice.
    Bh2,
}

/// Configuration of a [`UniPcSolver`]. Defaults are Wan2.1's (Wan-AI/Wan2.1-T2V-1.3B-Diffusers
/// `scheduler/scheduler_config.json`: solver_order 2, solver_type bh2, lower_order_final true, disable_corrector []).
#[derive(Config, Debug)]
pub struct UniPcConfig {
    /// Multistep order `p` of the predictor (the corrector raises the accuracy to `p + 1`). Supported: 1 to 3.
    #[config(default = 2)]
    pub solver_order: usize,
    /// The `B(h)` variant.
    #[config(default = "UniPcVariant::Bh2")]
    pub variant: UniPcVariant,
    /// Lower the order over the last steps (order <= steps left), so the final step to `s = 0` is first order.
    #[config(default = true)]
    pub lower_order_final: bool,
    /// Step indices `j` whose corrector is skipped: the corrector applied at step `j + 1` (which corrects the
    /// result of step `j`) is disabled, as diffusers' `disable_corrector`.
    #[config(default = "Vec::new()")]
    pub disable_corrector: Vec<usize>,
}

impl UniPcConfig {
    /// A solver at step 0 of `schedule`. Errors if the order is unsupported or the first sigma is 1 (its log-SNR
    /// is `-inf`; diffusers' grid starts at `1 - 1e-6` for that reason).
    pub fn init<B: Backend, const D: usize>(
        &self,
        schedule: FlowSchedule,
    ) -> Result<UniPcSolver<B, D>> {
        if !(1..=3).contains(&self.solver_order) {
            return Err(SamplerError::InvalidSolverOption {
                name: "solver_order",
                value: self.solver_order.to_string(),
                reason: "UniPC order must be 1, 2 or 3",
            });
        }
        let sigmas = schedule.sigmas();
        if sigmas[0] >= 1.0 {
            return Err(SamplerError::InvalidSigmas {
                index: 0,
                value: sigmas[0],
                reason: "UniPC needs sigma < 1 (log-SNR is -inf at 1); start at 1 - 1e-6 as diffusers does",
            });
        }
        let lambdas = sigmas.iter().map(|&s| log_snr(s)).collect();
        Ok(UniPcSolver {
            solver_order: self.solver_order,
            variant: self.variant,
            lower_order_final: self.lower_order_final,
            disable_corrector: self.disable_corrector.clone(),
            schedule,
            lambdas,
            step_index: 0,
            x0_history: Vec::with_capacity(self.solver_order),
            last_sample: None,
            this_order: 0,
            lower_order_nums: 0,
        })
    }
}

/// Log-SNR of flow matching at time `s`: `ln(1 - s) - ln(s)` (`+inf` at `s = 0`).
pub fn log_snr(s: f64) -> f64 {
    (1.0 - s).ln() - s.ln()
}

/// UniPC multistep solver state over a [`FlowSchedule`]: the last `solver_order` x0 predictions, the last sample
/// and the order bookkeeping. Scalar coefficients are computed on the host in `f64`.
#[derive(Debug)]
pub struct UniPcSolver<B: Backend, const D: usize> {
    solver_order: usize,
    variant: UniPcVariant,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    schedule: FlowSchedule,
    /// `lambda(sigma_k)` for every grid point.
    lambdas: Vec<f64>,
    step_index: usize,
    /// x0 predictions `m_{k-p+1} .. m_k`, oldest first.
    x0_history: Vec<Tensor<B, D>>,
    /// The (corrected) sample the last predictor started from.
    last_sample: Option<Tensor<B, D>>,
    /// Order of the last predictor, reused by the next corrector.
    this_order: usize,
    /// Number of steps taken, capped at `solver_order` (warm-up of the multistep history).
    lower_order_nums: usize,
}

impl<B: Backend, const D: usize> UniPcSolver<B, D> {
    /// The latest x0 prediction `m_k = x_k - s_k v_k` (after the final step: the returned sample itself).
    pub fn denoised(&self) -> Option<&Tensor<B, D>> {
        self.x0_history.last()
    }

    /// Order the next predictor will use (for inspection and tests).
    pub fn next_order(&self) -> usize {
        let k = self.step_index;
        let cap = if self.lower_order_final {
            self.solver_order
                .min(self.schedule.steps().saturating_sub(k))
        } else {
            self.solver_order
        };
        cap.min(self.lower_order_nums + 1)
    }

    /// `h`, `alpha_t * (e^{-h} - 1)`, `alpha_t * B(h)` and `b` (length `order`) for a step from grid index `from`
    /// to `from + 1`.
    fn coefficients(&self, from: usize, order: usize) -> Result<StepCoefficients> {
        let step = self.step_index;
        let t = self.schedule.sigmas()[from + 1];
        let s0 = self.schedule.sigmas()[from];
        let h = self.lambdas[from + 1] - self.lambdas[from];
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = match self.variant {
            UniPcVariant::Bh1 => hh,
            UniPcVariant::Bh2 => hh.exp_m1(),
        };
        // b_i = i! * phi_{i+1}(hh) / B(h), phi built by the recursion phi_{k+1} = phi_k / hh - 1/(k+1)!.
        let mut b = Vec::with_capacity(order);
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        for i in 1..=order {
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        let alpha_t = 1.0 - t;
        let c = StepCoefficients {
            h,
            x_scale: t / s0,
            m0_scale: alpha_t * h_phi_1,
            res_scale: alpha_t * b_h,
            b,
        };
        for (what, value) in [
            ("h", c.h),
            ("sigma ratio", c.x_scale),
            ("alpha*phi1", c.m0_scale),
            ("alpha*B(h)", c.res_scale),
        ] {
            if !value.is_finite() {
                return Err(SamplerError::NonFinite { step, what, value });
            }
        }
        Ok(c)
    }

    /// `r_i = (lambda_{from - i} - lambda_from) / h` for `i = 1..order`, then 1.
    fn ratios(&self, from: usize, order: usize, h: f64) -> Vec<f64> {
        let mut rks: Vec<f64> = (1..order)
            .map(|i| (self.lambdas[from - i] - self.lambdas[from]) / h)
            .collect();
        rks.push(1.0);
        rks
    }

    /// UniP: the sample at `sigmas[k + 1]` from the (corrected) sample `x` at `sigmas[k]`, history ending in `m_k`.
    fn predict(&self, x: Tensor<B, D>, order: usize) -> Result<Tensor<B, D>> {
        let k = self.step_index;
        let n = self.x0_history.len();
        let m0 = &self.x0_history[n - 1];
        if self.schedule.sigmas()[k + 1] == 0.0 {
            // lambda = +inf: x_t = 0 * x - 1 * (-1) * m0 = m0 (the higher-order terms are undefined there).
            return Ok(m0.clone());
        }
        let c = self.coefficients(k, order)?;
        let mut out = x
            .mul_scalar(c.x_scale)
            .sub(m0.clone().mul_scalar(c.m0_scale));
        if order >= 2 {
            let rks = self.ratios(k, order, c.h);
            let rhos = if order == 2 {
                vec![0.5]
            } else {
                let m = order - 1;
                solve(vandermonde(&rks[..m]), c.b[..m].to_vec()).ok_or(SamplerError::NonFinite {
                    step: k,
                    what: "UniP order-condition solve",
                    value: f64::NAN,
                })?
            };
            let mut res: Option<Tensor<B, D>> = None;
            for i in 1..order {
                let mi = &self.x0_history[n - 1 - i];
                let term = mi
                    .clone()
                    .sub(m0.clone())
                    .mul_scalar(rhos[i - 1] / rks[i - 1]);
                res = Some(match res {
                    None => term,
                    Some(r) => r.add(term),
                });
            }
            if let Some(res) = res {
                out = out.sub(res.mul_scalar(c.res_scale));
            }
        }
        Ok(out)
    }

    /// UniC: the corrected sample at `sigmas[k]` from `last_sample` at `sigmas[k - 1]`, the history ending in
    /// `m_{k-1}`, and the new prediction `model_t = m_k`.
    fn correct(
        &self,
        last_sample: Tensor<B, D>,
        model_t: &Tensor<B, D>,
        order: usize,
    ) -> Result<Tensor<B, D>> {
        let k = self.step_index;
        let n = self.x0_history.len();
        let m0 = &self.x0_history[n - 1];
        let c = self.coefficients(k - 1, order)?;
        let rks = self.ratios(k - 1, order, c.h);
        let rhos = if order == 1 {
            vec![0.5]
        } else {
            solve(vandermonde(&rks), c.b.clone()).ok_or(SamplerError::NonFinite {
                step: k,
                what: "UniC order-condition solve",
                value: f64::NAN,
            })?
        };
        let mut res = model_t.clone().sub(m0.clone()).mul_scalar(rhos[order - 1]);
        for i in 1..order {
            let mi = &self.x0_history[n - 1 - i];
            res = mi
                .clone()
                .sub(m0.clone())
                .mul_scalar(rhos[i - 1] / rks[i - 1])
                .add(res);
        }
        Ok(last_sample
            .mul_scalar(c.x_scale)
            .sub(m0.clone().mul_scalar(c.m0_scale))
            .sub(res.mul_scalar(c.res_scale)))
    }
}

/// Host-side scalars of one UniPC update.
struct StepCoefficients {
    h: f64,
    x_scale: f64,
    m0_scale: f64,
    res_scale: f64,
    b: Vec<f64>,
}

/// `R[i][j] = r_j^i`.
fn vandermonde(rks: &[f64]) -> Vec<Vec<f64>> {
    (0..rks.len())
        .map(|i| rks.iter().map(|r| r.powi(i as i32)).collect())
        .collect()
}

/// Solves `a x = b` (tiny dense system) by Gaussian elimination with partial pivoting; `None` if singular or
/// non-finite.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col] == 0.0 || !a[pivot][col].is_finite() {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let (upper, lower) = a.split_at_mut(row);
            for (target, pivot_value) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                *target -= f * pivot_value;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|j| a[row][j] * x[j]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

impl<B: Backend, const D: usize> FlowSolver<B, D> for UniPcSolver<B, D> {
    fn schedule(&self) -> &FlowSchedule {
        &self.schedule
    }

    fn step_index(&self) -> usize {
        self.step_index
    }

    fn step(&mut self, v: Tensor<B, D>, x: Tensor<B, D>) -> Result<Tensor<B, D>> {
        let k = self.step_index;
        if k >= self.schedule.steps() {
            return Err(SamplerError::ScheduleExhausted {
                steps: self.schedule.steps(),
            });
        }
        check_same_shape("UniPC step: velocity vs sample", &x, &v)?;
        if let Some(prev) = self.x0_history.last() {
            check_same_shape("UniPC step: sample vs previous steps", prev, &x)?;
        }
        let s = self.schedule.sigmas()[k];
        let m_k = x.clone().sub(v.mul_scalar(s));

        let mut x = x;
        let use_corrector =
            k > 0 && !self.disable_corrector.contains(&(k - 1)) && self.last_sample.is_some();
        if use_corrector {
            if let Some(last) = self.last_sample.take() {
                x = self.correct(last, &m_k, self.this_order)?;
            }
        }

        if self.x0_history.len() == self.solver_order {
            self.x0_history.remove(0);
        }
        self.x0_history.push(m_k);

        let order = self.next_order();
        self.this_order = order;
        self.last_sample = Some(x.clone());
        let out = self.predict(x, order)?;

        self.lower_order_nums = (self.lower_order_nums + 1).min(self.solver_order);
        self.step_index += 1;
        Ok(out)
    }

    fn reset(&mut self) {
        self.step_index = 0;
        self.x0_history.clear();
        self.last_sample = None;
        self.this_order = 0;
        self.lower_order_nums = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    type B = NdArray<f32>;

    #[test]
    fn solve_small_systems() {
        let x = solve(vec![vec![1.0, 1.0], vec![-2.0, 1.0]], vec![3.0, 0.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12);
        let x = solve(vandermonde(&[-0.5, 2.0, 1.0]), vec![1.0, 0.25, 0.5]).unwrap();
        let r = vandermonde(&[-0.5, 2.0, 1.0]);
        for i in 0..3 {
            let lhs: f64 = (0..3).map(|j| r[i][j] * x[j]).sum();
            assert!((lhs - [1.0, 0.25, 0.5][i]).abs() < 1e-12);
        }
        assert!(solve(vec![vec![1.0, 1.0], vec![1.0, 1.0]], vec![1.0, 2.0]).is_none());
    }

    #[test]
    fn straight_flow_is_recovered_exactly() {
        // With the exact velocity of a straight path every x0 prediction is x0, so UniPC returns x0.
        let device = Default::default();
        let x0 = Tensor::<B, 5>::random([1, 2, 2, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<B, 5>::random([1, 2, 2, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let v = eps.clone().sub(x0.clone());
        for order in 1..=3 {
            let schedule = FlowSchedule::diffusers_unipc(8, 5.0).unwrap();
            let s0 = schedule.sigmas()[0];
            let mut solver = UniPcConfig::new()
                .with_solver_order(order)
                .init::<B, 5>(schedule)
                .unwrap();
            let mut x = x0
                .clone()
                .mul_scalar(1.0 - s0)
                .add(eps.clone().mul_scalar(s0));
            while !solver.is_done() {
                x = solver.step(v.clone(), x).unwrap();
            }
            x.into_data()
                .assert_approx_eq::<f32>(&x0.clone().into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn order_schedule_warms_up_and_lowers_at_the_end() {
        let device = Default::default();
        let mut solver = UniPcConfig::new()
            .init::<B, 1>(FlowSchedule::diffusers_unipc(4, 5.0).unwrap())
            .unwrap();
        let mut orders = Vec::new();
        let mut x = Tensor::<B, 1>::zeros([3], &device);
        while !solver.is_done() {
            orders.push(solver.next_order());
            x = solver.step(x.clone(), x).unwrap();
        }
        assert_eq!(orders, vec![1, 2, 2, 1]);
    }

    #[test]
    fn bad_configs_are_errors() {
        let s = FlowSchedule::diffusers_unipc(4, 5.0).unwrap();
        assert!(UniPcConfig::new()
            .with_solver_order(4)
            .init::<B, 1>(s)
            .is_err());
        let s = FlowSchedule::from_sigmas(vec![1.0, 0.5, 0.0]).unwrap();
        assert!(matches!(
            UniPcConfig::new().init::<B, 1>(s),
            Err(SamplerError::InvalidSigmas { index: 0, .. })
        ));
    }
}
