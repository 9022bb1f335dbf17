//! The flow-matching time grid: the one place that defines the time shift and the teacher's sigma grid.
//!
//! Flow matching as used by Wan2.1 (WAN21.md, "Sampling (teacher)"): `x_s = (1 - s) x0 + s eps`, the model
//! predicts `v = eps - x0` at time `s` in `[0, 1]` (`s = 1` pure noise) and is fed the timestep `s * 1000`.
//! Sampling walks a decreasing grid `s_0 > s_1 > ... > s_N = 0`.
//!
//! ```no_run
//! use tmd_sampler::schedule::{FlowSchedule, shift};
//! let schedule = FlowSchedule::diffusers_unipc(50, 5.0).unwrap();
//! assert_eq!(schedule.sigmas().len(), 51);
//! assert_eq!(shift(0.5, 5.0), 5.0 * 0.5 / (1.0 + 4.0 * 0.5));
//! ```

use burn::config::Config;

use crate::error::{Result, SamplerError};

pub use tmd_model::dit::NUM_TRAIN_TIMESTEPS;

/// The flow-matching time shift `shift(t) = g t / (1 + (g - 1) t)`.
///
/// Maps `[0, 1]` onto itself (`shift(0) = 0`, `shift(1) = 1`), is strictly increasing for `g > 0`, and for
/// `g > 1` moves grid points towards `t = 1` (more steps at high noise). WAN21.md ("Schedule"), TMD.md ("Grids",
/// written `g t / ((g - 1) t + 1)`); diffusers' `flow_shift`, Wan's `sample_shift`.
pub fn shift(t: f64, g: f64) -> f64 {
    g * t / (1.0 + (g - 1.0) * t)
}

/// `num` evenly spaced values from `start` to `end` inclusive, computed as numpy's `linspace` does
/// (`start + i * step` with `step = (end - start) / (num - 1)`, last value set to `end` exactly), so grids agree
/// bit for bit with the Python references.
pub fn linspace(start: f64, end: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = end;
            v
        }
    }
}

/// The shifted grid `shift(linspace(start, end, steps + 1), g)`: `steps + 1` points, both ends included.
///
/// With `start = 0.999, end = 0` this is the teacher grid of WAN21.md. (TMD's outer and inner grids
/// scale `shift(linspace(1, 0, ...))` by 0.999 instead: see [`crate::TmdGrids`].) Errors if `steps == 0`, `g` is not finite and positive, or an end
/// lies outside `[0, 1]`.
pub fn shifted_grid(start: f64, end: f64, steps: usize, g: f64) -> Result<Vec<f64>> {
    check_steps_shift(steps, g)?;
    for (index, value) in [(0, start), (steps, end)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(SamplerError::InvalidSigmas {
                index,
                value,
                reason: "grid ends must lie in [0, 1]",
            });
        }
    }
    Ok(linspace(start, end, steps + 1)
        .into_iter()
        .map(|t| shift(t, g))
        .collect())
}

fn check_steps_shift(steps: usize, g: f64) -> Result<()> {
    if steps == 0 {
        return Err(SamplerError::ZeroSteps { steps });
    }
    if !(g.is_finite() && g > 0.0) {
        return Err(SamplerError::InvalidShift { shift: g });
    }
    Ok(())
}

/// Rounds to the nearest `f32`, as the references store their sigma grids (`np.float32` / `torch.float32`).
fn f32_round(x: f64) -> f64 {
    x as f32 as f64
}

/// How the sigma grid of a [`FlowSchedule`] is built from `steps` and `shift`.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum SigmaGrid {
    /// Wan's original `FlowUniPCMultistepScheduler(shift=1)` + `set_timesteps(N, shift=g)`
    /// (Wan-Video/Wan2.1 `wan/utils/fm_solvers_unipc.py`, used by `wan/text2video.py`):
    /// `s = shift(linspace(sigma_max, 0, N + 1)[:N])` with `sigma_max = float32(0.999)`, final 0 appended,
    /// stored as float32; timesteps `trunc(s * 1000)` (int64 cast, from the unrounded f64 values).
    WanOriginal,
    /// diffusers `UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=g)` (diffusers 0.42.1, as configured by
    /// Wan-AI/Wan2.1-T2V-*-Diffusers): `s = shift(linspace(1, 1/1000, N + 1)[:N])`, then `s_0 -= 1e-6` when
    /// `|s_0 - 1| < 1e-6` (always, since `shift(1) = 1`), final 0 appended, stored as float32; timesteps
    /// `trunc(s * 1000)` from the f64 values (so the first is 999).
    DiffusersUniPc,
    /// diffusers `FlowMatchEulerDiscreteScheduler(shift=g)`: `s = shift(linspace(1, shift(1/1000), N))` (the end
    /// point is shifted twice, a quirk of diffusers), final 0 appended, float32; timesteps `s * 1000` in float32
    /// (not truncated).
    DiffusersEuler,
}

/// Configuration of a [`FlowSchedule`]: the teacher's sampling grid.
#[derive(Config, Debug)]
pub struct FlowScheduleConfig {
    /// Number of sampling steps (model evaluations per guidance branch). Wan2.1 default: 50 (WAN21.md).
    #[config(default = 50)]
    pub steps: usize,
    /// Time shift factor `g` of [`shift`]. Wan2.1 T2V default: 5.0 (WAN21.md; the Wan README suggests 8-12 for
    /// 1.3B, the diffusers scheduler config ships 3.0).
    #[config(default = 5.0)]
    pub shift: f64,
    /// How the grid is laid out. Default: diffusers' UniPC grid, the one pinned by `tests/fixtures/unipc`.
    #[config(default = "SigmaGrid::DiffusersUniPc")]
    pub grid: SigmaGrid,
}

impl FlowScheduleConfig {
    /// Builds the schedule.
    pub fn init(&self) -> Result<FlowSchedule> {
        match self.grid {
            SigmaGrid::WanOriginal => FlowSchedule::wan_original(self.steps, self.shift),
            SigmaGrid::DiffusersUniPc => FlowSchedule::diffusers_unipc(self.steps, self.shift),
            SigmaGrid::DiffusersEuler => FlowSchedule::diffusers_euler(self.steps, self.shift),
        }
    }
}

/// A sampling schedule: `steps + 1` decreasing sigmas in `[0, 1]` and the `steps` timesteps fed to the model.
///
/// Step `k` evaluates the model at `(x, timesteps[k])` and moves `x` from `sigmas[k]` to `sigmas[k + 1]`.
/// Host-side values are `f64`; the presets hold exactly the values the references compute (float32-rounded where
/// the reference stores float32: UniPC's log-SNR near `s = 1` is sensitive to it, and without the rounding the
/// 10-step UniPC fixture drifts by 2e-6 relative instead of 3e-7).
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSchedule {
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
}

impl FlowSchedule {
    /// A schedule from explicit sigmas (`steps + 1` values, strictly decreasing, within `[0, 1]`) and model
    /// timesteps (`steps` values).
    pub fn new(sigmas: Vec<f64>, timesteps: Vec<f64>) -> Result<Self> {
        if sigmas.len() < 2 {
            return Err(SamplerError::ZeroSteps {
                steps: sigmas.len().saturating_sub(1),
            });
        }
        for (index, &value) in sigmas.iter().enumerate() {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(SamplerError::InvalidSigmas {
                    index,
                    value,
                    reason: "sigmas must be finite and in [0, 1]",
                });
            }
            if index > 0 && value >= sigmas[index - 1] {
                return Err(SamplerError::InvalidSigmas {
                    index,
                    value,
                    reason: "sigmas must strictly decrease",
                });
            }
        }
        if timesteps.len() != sigmas.len() - 1 {
            return Err(SamplerError::TimestepCount {
                steps: sigmas.len() - 1,
                timesteps: timesteps.len(),
            });
        }
        Ok(Self { sigmas, timesteps })
    }

    /// A schedule from explicit sigmas, with timesteps `sigma * 1000` (not truncated).
    pub fn from_sigmas(sigmas: Vec<f64>) -> Result<Self> {
        let n = sigmas.len().saturating_sub(1);
        let timesteps = sigmas[..n]
            .iter()
            .map(|s| s * NUM_TRAIN_TIMESTEPS)
            .collect();
        Self::new(sigmas, timesteps)
    }

    /// The grid of Wan's original `FlowUniPCMultistepScheduler`; see [`SigmaGrid::WanOriginal`].
    pub fn wan_original(steps: usize, shift: f64) -> Result<Self> {
        let sigma_max = f32_round(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS);
        let grid = shifted_grid(sigma_max, 0.0, steps, shift)?;
        Self::truncated(&grid[..steps])
    }

    /// The grid of diffusers' `UniPCMultistepScheduler(use_flow_sigmas=True)`; see [`SigmaGrid::DiffusersUniPc`].
    pub fn diffusers_unipc(steps: usize, shift: f64) -> Result<Self> {
        let mut grid = shifted_grid(1.0, 1.0 / NUM_TRAIN_TIMESTEPS, steps, shift)?;
        grid.truncate(steps);
        let eps = 1e-6;
        if (grid[0] - 1.0).abs() < eps {
            grid[0] -= eps;
        }
        Self::truncated(&grid)
    }

    /// The grid of diffusers' `FlowMatchEulerDiscreteScheduler(shift)`; see [`SigmaGrid::DiffusersEuler`].
    pub fn diffusers_euler(steps: usize, shift: f64) -> Result<Self> {
        check_steps_shift(steps, shift)?;
        // sigma_min of the training grid, computed in float32 as torch does: shift(1/1000) (shift(1) = 1 exactly).
        let t = 1.0f32 / NUM_TRAIN_TIMESTEPS as f32;
        let g = shift as f32;
        let sigma_min = (g * t / (1.0 + (g - 1.0) * t)) as f64;
        let ts = linspace(NUM_TRAIN_TIMESTEPS, sigma_min * NUM_TRAIN_TIMESTEPS, steps);
        let mut sigmas: Vec<f64> = ts
            .iter()
            .map(|t| f32_round(self::shift(t / NUM_TRAIN_TIMESTEPS, shift)))
            .collect();
        let timesteps = sigmas
            .iter()
            .map(|&s| (s as f32 * NUM_TRAIN_TIMESTEPS as f32) as f64)
            .collect();
        sigmas.push(0.0);
        Self::new(sigmas, timesteps)
    }

    /// float32-rounded sigmas + final 0, timesteps truncated from the unrounded values (int64 cast).
    fn truncated(grid: &[f64]) -> Result<Self> {
        let timesteps = grid
            .iter()
            .map(|s| (s * NUM_TRAIN_TIMESTEPS).trunc())
            .collect();
        let mut sigmas: Vec<f64> = grid.iter().map(|&s| f32_round(s)).collect();
        sigmas.push(0.0);
        Self::new(sigmas, timesteps)
    }

    /// Number of steps (model evaluations per guidance branch).
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The `steps + 1` sigmas, decreasing, usually ending at 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The `steps` timesteps fed to the model, one per step.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// The sigma at which step `k` evaluates the model, `None` past the end.
    pub fn sigma(&self, k: usize) -> Option<f64> {
        (k < self.steps()).then(|| self.sigmas[k])
    }

    /// The timestep fed to the model at step `k`, `None` past the end.
    pub fn timestep(&self, k: usize) -> Option<f64> {
        self.timesteps.get(k).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_fixes_ends_and_is_monotone() {
        for g in [0.5, 1.0, 3.0, 5.0, 10.0] {
            assert_eq!(shift(0.0, g), 0.0);
            assert_eq!(shift(1.0, g), 1.0);
            let ts = linspace(0.0, 1.0, 1001);
            for w in ts.windows(2) {
                assert!(
                    shift(w[1], g) > shift(w[0], g),
                    "g={g} not increasing at {}",
                    w[0]
                );
            }
        }
        assert_eq!(shift(0.3, 1.0), 0.3);
        assert!(shift(0.5, 5.0) > 0.5);
    }

    #[test]
    fn linspace_matches_numpy_layout() {
        assert_eq!(linspace(1.0, 0.0, 5), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(linspace(2.0, 3.0, 1), vec![2.0]);
        assert!(linspace(0.0, 1.0, 0).is_empty());
    }

    #[test]
    fn tmd_two_step_grid() {
        // TMD.md: 2-step outer grid with g = 10 is [0.999, 0.908, 0].
        let g = shifted_grid(0.999, 0.0, 2, 10.0).unwrap();
        assert_eq!(g.len(), 3);
        assert!(
            (g[0] - 0.999_9).abs() < 1e-3 && (g[1] - 0.908).abs() < 1e-3 && g[2] == 0.0,
            "{g:?}"
        );
    }

    #[test]
    fn presets_are_valid() {
        for steps in [1, 2, 10, 50] {
            for s in [
                FlowSchedule::wan_original(steps, 5.0).unwrap(),
                FlowSchedule::diffusers_unipc(steps, 5.0).unwrap(),
                FlowSchedule::diffusers_euler(steps, 5.0).unwrap(),
            ] {
                assert_eq!(s.steps(), steps);
                assert_eq!(*s.sigmas().last().unwrap(), 0.0);
                assert!(s.sigmas()[0] < 1.0 || steps > 0);
            }
        }
        let s = FlowSchedule::diffusers_unipc(10, 5.0).unwrap();
        assert_eq!(s.timestep(0), Some(999.0));
        assert_eq!(s.sigma(10), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            shifted_grid(1.0, 0.0, 0, 5.0),
            Err(SamplerError::ZeroSteps { .. })
        ));
        assert!(matches!(
            shifted_grid(1.0, 0.0, 4, 0.0),
            Err(SamplerError::InvalidShift { .. })
        ));
        assert!(matches!(
            shifted_grid(1.5, 0.0, 4, 5.0),
            Err(SamplerError::InvalidSigmas { .. })
        ));
        assert!(matches!(
            FlowSchedule::from_sigmas(vec![0.5, 0.6, 0.0]),
            Err(SamplerError::InvalidSigmas { index: 1, .. })
        ));
        assert!(matches!(
            FlowSchedule::new(vec![0.5, 0.0], vec![]),
            Err(SamplerError::TimestepCount { .. })
        ));
        assert!(FlowScheduleConfig::new().with_steps(0).init().is_err());
    }
}
