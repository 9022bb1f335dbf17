//! Sampling for Wan2.1 flow matching, in Burn: the teacher and the distilled few-step students.
//!
//! * [`Sampler`]: the public entry point, a model directory in and clips out ([`sampler`]).
//! * [`schedule`]: the time shift and the sigma grid (the one place that defines them).
//! * [`euler`]: FlowMatch Euler, `x <- x + (s_next - s) v`.
//! * [`unipc`]: UniPC multistep (bh2, order 2, x0 prediction), equal to diffusers' `UniPCMultistepScheduler`.
//! * [`tmd`]: the TMD few-step sampler (Algorithm 1: `M` outer steps, `N` flow-head steps each).
//! * [`dmd`]: the DMD2-v baseline's few-step sampler (`M` deterministic steps, one DiT pass each).
//! * [`cfg`]: classifier-free guidance, `uncond + g (cond - uncond)`, two-pass or batched.
//!
//! Conventions (WAN21.md, "Sampling (teacher)"): `x_s = (1 - s) x0 + s eps`; the model predicts `v = eps - x0`
//! at the timestep `s * 1000`; latents are `[batch, channels, frames, height, width]`, but every solver is
//! generic over the tensor rank.
//!
//! A sampling loop, for any model `v = f(x, timestep)`:
//! ```no_run
//! use burn::backend::NdArray;
//! use burn::tensor::Tensor;
//! use tmd_sampler::{FlowSchedule, FlowSolver, UniPcConfig};
//!
//! let device = Default::default();
//! let schedule = FlowSchedule::diffusers_unipc(50, 5.0).unwrap();
//! let mut solver = UniPcConfig::new().init::<NdArray, 5>(schedule).unwrap();
//! let mut x = Tensor::<NdArray, 5>::random([1, 16, 21, 60, 104], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
//! while let Some(t) = solver.timestep() {
//!     let v = x.clone().mul_scalar(0.0); // model(x, t)
//!     let _ = t;
//!     x = solver.step(v, x).unwrap();
//! }
//! ```

use burn::tensor::{backend::Backend, Tensor};

pub mod budget;
pub mod cfg;
pub mod device;
pub mod dmd;
pub mod effective_nfe;
pub mod error;
pub mod euler;
pub mod noise;
pub mod pipeline;
pub mod sampler;
pub mod schedule;
pub mod tmd;
pub mod unipc;
pub mod video;

pub use cfg::{cfg_combine, CfgMode};
pub use dmd::dmd_sample;
pub use error::{Result, SamplerError};
pub use euler::{euler_step, EulerSolver};
pub use pipeline::{
    DecoderKind, Solver, StudentOptions, StudentPipeline, TeacherOptions, TeacherPipeline, Timings,
};
pub use sampler::{SampleOptions, Sampler};
pub use schedule::{shift, shifted_grid, FlowSchedule, FlowScheduleConfig, SigmaGrid};
pub use tmd::{tmd_sample, TmdGrids};
pub use unipc::{UniPcConfig, UniPcSolver, UniPcVariant};
pub use video::{Video, VideoError};

/// A multistep flow-matching solver walking a [`FlowSchedule`], one model evaluation per step.
///
/// Usage: while [`FlowSolver::timestep`] is `Some(t)`, evaluate the model's velocity `v` at `(x, t)` and set
/// `x = step(v, x)`. After the last step `x` is the sample at `sigma = 0`.
pub trait FlowSolver<B: Backend, const D: usize> {
    /// The schedule being walked.
    fn schedule(&self) -> &FlowSchedule;

    /// Index of the next step (number of steps already taken).
    fn step_index(&self) -> usize;

    /// Advances `x` from `sigmas[k]` to `sigmas[k + 1]` given the model's velocity `v = eps - x0` at `x`.
    ///
    /// # Shapes
    /// - `v`, `x`: the same shape, e.g. latents `[batch, channels, frames, height, width]`.
    ///
    /// # Returns
    /// The sample at `sigmas[k + 1]`, same shape. Errors if the schedule is exhausted or the shapes differ.
    fn step(&mut self, v: Tensor<B, D>, x: Tensor<B, D>) -> Result<Tensor<B, D>>;

    /// Forgets all state and restarts at step 0 of the same schedule.
    fn reset(&mut self);

    /// The sigma at which the model is evaluated next, `None` once all steps are taken.
    fn sigma(&self) -> Option<f64> {
        self.schedule().sigma(self.step_index())
    }

    /// The timestep to feed the model next (`sigma * 1000`, as the reference computes it), `None` once done.
    fn timestep(&self) -> Option<f64> {
        self.schedule().timestep(self.step_index())
    }

    /// Whether all steps have been taken.
    fn is_done(&self) -> bool {
        self.step_index() >= self.schedule().steps()
    }
}

/// Checks that two tensors share a shape.
pub(crate) fn check_same_shape<B: Backend, const D: usize>(
    what: &'static str,
    expected: &Tensor<B, D>,
    found: &Tensor<B, D>,
) -> Result<()> {
    let (e, f) = (expected.dims(), found.dims());
    if e != f {
        return Err(SamplerError::ShapeMismatch {
            what,
            expected: e.to_vec(),
            found: f.to_vec(),
        });
    }
    Ok(())
}
