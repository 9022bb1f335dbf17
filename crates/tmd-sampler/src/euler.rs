//! FlowMatch Euler: the first-order flow ODE step `x <- x + (s_next - s) v`.
//!
//! Equal to diffusers' `FlowMatchEulerDiscreteScheduler.step` (deterministic branch) and to one outer step of the
//! TMD sampler, `x <- x - (t_i - t_{i-1}) y` (TMD.md, Algorithm 1).

use burn::tensor::{backend::Backend, Tensor};

use crate::error::{Result, SamplerError};
use crate::schedule::FlowSchedule;
use crate::{check_same_shape, FlowSolver};

/// One Euler step of the flow ODE `dx/ds = v` from time `s` to `s_next`: `x + (s_next - s) v`.
///
/// Going from `s` to `0` with `v = eps - x0` of a straight path returns `x0` exactly (up to rounding).
///
/// # Shapes
/// - `x`, `v`: the same shape (any rank).
///
/// # Returns
/// The sample at `s_next`, same shape.
pub fn euler_step<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    v: Tensor<B, D>,
    s: f64,
    s_next: f64,
) -> Tensor<B, D> {
    x.add(v.mul_scalar(s_next - s))
}

/// The Euler solver over a [`FlowSchedule`]: step `k` applies [`euler_step`] from `sigmas[k]` to `sigmas[k + 1]`.
#[derive(Clone, Debug)]
pub struct EulerSolver {
    schedule: FlowSchedule,
    step_index: usize,
}

impl EulerSolver {
    /// A solver at step 0 of `schedule`.
    pub fn new(schedule: FlowSchedule) -> Self {
        Self {
            schedule,
            step_index: 0,
        }
    }
}

impl<B: Backend, const D: usize> FlowSolver<B, D> for EulerSolver {
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
        check_same_shape("Euler step: velocity vs sample", &x, &v)?;
        let sigmas = self.schedule.sigmas();
        let out = euler_step(x, v, sigmas[k], sigmas[k + 1]);
        self.step_index += 1;
        Ok(out)
    }

    fn reset(&mut self) {
        self.step_index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = NdArray<f32>;

    #[test]
    fn euler_on_a_straight_flow_hits_the_target() {
        // x_s = (1 - s) x0 + s eps has constant velocity v = eps - x0: Euler is exact on any grid.
        let device = Default::default();
        let x0 = Tensor::<B, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<B, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let v = eps.clone().sub(x0.clone());
        let schedule = FlowSchedule::diffusers_unipc(7, 5.0).unwrap();
        let s0 = schedule.sigmas()[0];
        let mut x = x0
            .clone()
            .mul_scalar(1.0 - s0)
            .add(eps.clone().mul_scalar(s0));
        let mut solver = EulerSolver::new(schedule);
        while FlowSolver::<B, 3>::timestep(&solver).is_some() {
            x = solver.step(v.clone(), x).unwrap();
        }
        x.into_data()
            .assert_approx_eq::<f32>(&x0.into_data(), Tolerance::absolute(1e-5));
        assert!(matches!(
            solver.step(v.clone(), v.clone()),
            Err(SamplerError::ScheduleExhausted { steps: 7 })
        ));
    }

    #[test]
    fn euler_step_values() {
        let device = Default::default();
        let x = Tensor::<B, 1>::from_floats([1.0, 2.0], &device);
        let v = Tensor::<B, 1>::from_floats([4.0, -2.0], &device);
        let out = euler_step(x, v, 0.75, 0.25);
        out.into_data()
            .assert_eq(&TensorData::from([-1.0f32, 3.0]), false);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let device = Default::default();
        let mut solver = EulerSolver::new(FlowSchedule::diffusers_unipc(2, 5.0).unwrap());
        let x = Tensor::<B, 2>::zeros([2, 3], &device);
        let v = Tensor::<B, 2>::zeros([3, 2], &device);
        assert!(matches!(
            solver.step(v, x),
            Err(SamplerError::ShapeMismatch { .. })
        ));
    }
}
