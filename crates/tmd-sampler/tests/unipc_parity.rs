//! Parity of the teacher samplers with diffusers 0.42.1.
//!
//! Fixtures: `tests/fixtures/unipc/*.safetensors`, written by
//! `python3 scripts/reference/unipc_fixtures.py` (see its header). Each holds the reference
//! scheduler's sigmas and timesteps, an initial latent `x_init`, the "model outputs" `v[k]` fed at step `k`, and
//! the sample `x[k]` the scheduler returned. Here the same grid is built through the public API, the solver is run
//! closed-loop on its own outputs with the same `v[k]`, and every step is compared (f32, NdArray).
//!
//! rel err = max|ours - ref| / max|ref| per step.

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use tmd_sampler::{EulerSolver, FlowSchedule, FlowSolver, UniPcConfig};

type B = NdArray<f32>;
const D: usize = 5;

/// Max relative error allowed per step (f32 host-vs-torch rounding only).
const REL_TOL: f64 = 1e-5;
/// Max absolute sigma difference allowed.
const SIGMA_TOL: f64 = 1e-6;

struct Fixture {
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    x_init: Tensor<B, D>,
    v: Vec<Tensor<B, D>>,
    x: Vec<Tensor<B, D>>,
    x0_last: Option<Tensor<B, D>>,
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/unipc")
        .join(format!("{name}.safetensors"))
}

fn to_f64(view: &safetensors::tensor::TensorView<'_>) -> Vec<f64> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("unexpected fixture dtype {other:?}"),
    }
}

fn load(name: &str) -> Fixture {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let device = Default::default();
    let get = |key: &str| {
        st.tensor(key)
            .unwrap_or_else(|e| panic!("{name}: {key}: {e}"))
    };
    let tensor = |values: Vec<f64>, shape: &[usize]| -> Tensor<B, D> {
        let values: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
        Tensor::from_data(TensorData::new(values, shape.to_vec()), &device)
    };
    let stack = |key: &str| -> Vec<Tensor<B, D>> {
        let view = get(key);
        let shape = view.shape().to_vec();
        let per = shape[1..].iter().product::<usize>();
        to_f64(&view)
            .chunks(per)
            .map(|c| tensor(c.to_vec(), &shape[1..]))
            .collect()
    };
    let x_init = {
        let view = get("x_init");
        tensor(to_f64(&view), view.shape())
    };
    let x0_last = st
        .tensor("x0_last")
        .ok()
        .map(|view| tensor(to_f64(&view), view.shape()));
    Fixture {
        sigmas: to_f64(&get("sigmas")),
        timesteps: to_f64(&get("timesteps")),
        x_init,
        v: stack("v"),
        x: stack("x"),
        x0_last,
    }
}

fn max_abs(t: Tensor<B, D>) -> f64 {
    t.abs().max().into_scalar() as f64
}

/// (max abs diff, rel err).
fn errors(ours: &Tensor<B, D>, reference: &Tensor<B, D>) -> (f64, f64) {
    let abs = max_abs(ours.clone().sub(reference.clone()));
    (abs, abs / max_abs(reference.clone()))
}

fn check_grid(name: &str, schedule: &FlowSchedule, fx: &Fixture, timestep_tol: f64) {
    assert_eq!(
        schedule.sigmas().len(),
        fx.sigmas.len(),
        "{name}: grid length"
    );
    let sigma_err = schedule
        .sigmas()
        .iter()
        .zip(&fx.sigmas)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let t_err = schedule
        .timesteps()
        .iter()
        .zip(&fx.timesteps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("{name}: grid max |sigma diff| = {sigma_err:.3e}, max |timestep diff| = {t_err:.3e}");
    assert!(
        sigma_err <= SIGMA_TOL,
        "{name}: sigmas differ by {sigma_err}"
    );
    assert_eq!(*schedule.sigmas().last().unwrap(), 0.0);
    assert!(t_err <= timestep_tol, "{name}: timesteps differ by {t_err}");
}

/// Runs a solver closed-loop with the fixture's velocities; returns the final sample and the last step's input.
fn run<S: FlowSolver<B, D>>(
    name: &str,
    solver: &mut S,
    fx: &Fixture,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let mut x = fx.x_init.clone();
    let mut last_input = x.clone();
    let (mut worst_rel, mut worst_abs) = (0.0f64, 0.0f64);
    for (k, (v, reference)) in fx.v.iter().zip(&fx.x).enumerate() {
        assert_eq!(solver.step_index(), k);
        last_input = x.clone();
        x = solver.step(v.clone(), x).unwrap();
        let (abs, rel) = errors(&x, reference);
        worst_rel = worst_rel.max(rel);
        worst_abs = worst_abs.max(abs);
        assert!(
            rel <= REL_TOL,
            "{name}: step {k}: rel err {rel:.3e} (abs {abs:.3e})"
        );
    }
    assert!(solver.is_done());
    let (abs, rel) = errors(&x, fx.x.last().unwrap());
    println!(
        "{name}: {} steps, worst step rel err {worst_rel:.3e} (abs {worst_abs:.3e}); final rel err {rel:.3e} (abs {abs:.3e})",
        fx.v.len()
    );
    (x, last_input)
}

fn unipc_case(name: &str, schedule: FlowSchedule, config: UniPcConfig) {
    let fx = load(name);
    check_grid(name, &schedule, &fx, 0.0);
    let s_last = schedule.sigmas()[schedule.steps() - 1];
    let mut solver = config.init::<B, D>(schedule).unwrap();
    let (x, last_input) = run(name, &mut solver, &fx);

    // The last step goes to sigma = 0 with order 1: the output is exactly x0 = x_{N-1} - s_{N-1} v_{N-1}.
    let x0 = last_input.sub(fx.v.last().unwrap().clone().mul_scalar(s_last));
    x.to_data().assert_eq(&x0.into_data(), true);
    let x0_ref = fx.x0_last.as_ref().expect("UniPC fixture holds x0_last");
    let (abs, rel) = errors(&x, x0_ref);
    println!(
        "{name}: final output == x0 exactly; vs reference x0: rel err {rel:.3e} (abs {abs:.3e})"
    );
    assert!(rel <= REL_TOL);

    // reset() restarts the same trajectory.
    solver.reset();
    let mut again = fx.x_init.clone();
    for v in &fx.v {
        again = solver.step(v.clone(), again).unwrap();
    }
    again.into_data().assert_eq(&x.into_data(), true);
}

#[test]
fn unipc_diffusers_10_steps() {
    unipc_case(
        "unipc_diffusers_shift5_10",
        FlowSchedule::diffusers_unipc(10, 5.0).unwrap(),
        UniPcConfig::new(),
    );
}

#[test]
fn unipc_diffusers_50_steps() {
    unipc_case(
        "unipc_diffusers_shift5_50",
        FlowSchedule::diffusers_unipc(50, 5.0).unwrap(),
        UniPcConfig::new(),
    );
}

#[test]
fn unipc_wan_original_grid_10_steps() {
    unipc_case(
        "unipc_wan_original_shift5_10",
        FlowSchedule::wan_original(10, 5.0).unwrap(),
        UniPcConfig::new(),
    );
}

#[test]
fn unipc_order3_10_steps() {
    unipc_case(
        "unipc_order3_shift5_10",
        FlowSchedule::diffusers_unipc(10, 5.0).unwrap(),
        UniPcConfig::new().with_solver_order(3),
    );
}

#[test]
fn euler_diffusers_10_steps() {
    let name = "euler_diffusers_shift5_10";
    let fx = load(name);
    let schedule = FlowSchedule::diffusers_euler(10, 5.0).unwrap();
    // diffusers' Euler timesteps are float32 products s * 1000: allow float32 rounding at ~1000.
    check_grid(name, &schedule, &fx, 1e-4);
    let mut solver = EulerSolver::new(schedule);
    run(name, &mut solver, &fx);
}
