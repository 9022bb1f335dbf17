//! Stage-2 losses at tiny size: the VSD gradient is `w (x0_fake - x0_teacher)` over the element count, CFG in
//! `model_x0` is the two-branch combination, the fake score learns to denoise samples, and backward
//! simulation reaches the sampler's own states.

use burn::backend::{Autodiff, NdArray};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use tmd_distill::distill::fake_score::fake_score_loss;
use tmd_distill::distill::vsd::vsd_loss;
use tmd_distill::distill::{model_x0, x0_from_velocity};
use tmd_distill::train::run::adamw;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;

type B = NdArray;
type A = Autodiff<NdArray>;

#[test]
fn vsd_gradient_points_from_the_fake_score_to_the_teacher() {
    let device = Default::default();
    let shape = [2, 4, 2, 4, 4];
    let x_hat = gaussian::<A, 5>(shape, 1, &device).require_grad();
    let teacher = gaussian::<B, 5>(shape, 2, &device);
    let fake = gaussian::<B, 5>(shape, 3, &device);
    let loss = vsd_loss::<A>(x_hat.clone(), teacher.clone(), fake.clone());
    let grad = x_hat.grad(&loss.backward()).unwrap();

    let numel = (4 * 2 * 4 * 4) as f32;
    let x = x_hat.inner();
    let w = (x - teacher.clone())
        .abs()
        .reshape([2, 128])
        .mean_dim(1)
        .recip()
        .reshape([2, 1, 1, 1, 1]);
    // loss = 0.5 * sum((x - target)^2) / (2 numel) with target = x - w (fake - teacher), so
    // d loss / dx = (x - target) / (2 numel) = w (fake - teacher) / (2 numel).
    let expected = (fake - teacher.clone()) * w / (2.0 * numel);
    let err: f32 = (grad - expected).abs().max().into_scalar();
    assert!(err < 1e-7, "VSD gradient error {err}");

    // Where fake score and teacher agree there is nothing to learn.
    let x_hat = gaussian::<A, 5>(shape, 1, &device).require_grad();
    let loss = vsd_loss::<A>(x_hat.clone(), teacher.clone(), teacher);
    let grad: f32 = x_hat
        .grad(&loss.backward())
        .unwrap()
        .abs()
        .max()
        .into_scalar();
    assert_eq!(grad, 0.0);
}

#[test]
fn model_x0_combines_the_two_branches_like_cfg() {
    let device = Default::default();
    let model = WanConfig::tiny().init::<B>(&device);
    let x_t = gaussian::<B, 5>([2, 4, 2, 4, 4], 4, &device);
    let t = Tensor::<B, 1>::from_floats([0.7, 0.2], &device);
    let cond = gaussian::<B, 3>([2, 16, 32], 5, &device);
    let uncond = gaussian::<B, 3>([2, 16, 32], 6, &device);
    let guided = model_x0(
        &model,
        x_t.clone(),
        t.clone(),
        cond.clone(),
        Some((uncond.clone(), 5.0)),
    )
    .unwrap();
    let ts = t.clone() * 1000.0;
    let v_c = model
        .forward(x_t.clone(), ts.clone(), cond.clone())
        .unwrap();
    let v_u = model.forward(x_t.clone(), ts, uncond).unwrap();
    let expected = x0_from_velocity(x_t.clone(), v_u.clone() + (v_c - v_u) * 5.0, t.clone());
    let err: f32 = (guided - expected).abs().max().into_scalar();
    assert!(err < 1e-4, "CFG x0 error {err}");
    let plain = model_x0(&model, x_t.clone(), t.clone(), cond.clone(), None).unwrap();
    let one = model_x0(&model, x_t, t, cond.clone(), Some((cond, 1.0))).unwrap();
    let err: f32 = (plain - one).abs().max().into_scalar();
    assert!(err < 1e-5, "w = 1 is no guidance: {err}");
}

#[test]
fn the_fake_score_learns_to_denoise_student_samples() {
    let device = Default::default();
    let mut fake = WanConfig::tiny().init::<A>(&device);
    let x = gaussian::<A, 5>([4, 4, 2, 4, 4], 7, &device);
    let context = gaussian::<A, 3>([4, 16, 32], 8, &device);
    let t = Tensor::<A, 1>::from_floats([0.3, 0.5, 0.7, 0.9], &device);
    // Judged on a fixed set of noises, so the per-step noise draw does not decide the verdict.
    let held_out = |fake: &WanModel<A>| -> f32 {
        (0..4)
            .map(|k| {
                let eps = gaussian::<A, 5>([4, 4, 2, 4, 4], 1000 + k, &device);
                let loss = fake_score_loss(fake, x.clone(), eps, t.clone(), context.clone());
                loss.unwrap().into_scalar()
            })
            .sum::<f32>()
            / 4.0
    };
    let before = held_out(&fake);
    let mut optimizer = adamw(0.9, 0.99, 1e-8, 0.01, 1.0).init();
    for step in 0..80 {
        let eps = gaussian::<A, 5>([4, 4, 2, 4, 4], 100 + step, &device);
        let loss = fake_score_loss(&fake, x.clone(), eps, t.clone(), context.clone()).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &fake);
        fake = optimizer.step(1e-3, fake, grads);
    }
    let after = held_out(&fake);
    eprintln!(
        "fake score held-out loss {before} -> {after} ({:.3})",
        after / before
    );
    assert!(
        after < 0.75 * before,
        "fake score held-out loss {before} -> {after}"
    );
}

#[test]
fn the_discriminator_reads_teacher_features_and_learns_to_separate() {
    use tmd_distill::distill::discriminator::{
        discriminator_loss, generator_gan_loss, unpatchify_features, DiscriminatorConfig,
    };
    let device = Default::default();
    let teacher = WanConfig::tiny().init::<A>(&device);
    let context = gaussian::<A, 3>([2, 16, 32], 1, &device);
    let t = Tensor::<A, 1>::from_floats([500.0, 500.0], &device);
    let features = |x: Tensor<A, 5>| {
        let (_, f) = teacher
            .forward_with_features(x, t.clone(), context.clone(), &[0, 1])
            .unwrap();
        f.into_iter()
            .map(|tokens| unpatchify_features(tokens, [2, 2, 2]))
            .collect::<Vec<_>>()
    };
    let real = gaussian::<A, 5>([2, 4, 2, 4, 4], 2, &device);
    let fake = (gaussian::<A, 5>([2, 4, 2, 4, 4], 3, &device) * 0.3 + 1.0).require_grad();
    let (real_f, fake_f) = (features(real), features(fake.clone()));
    assert_eq!(real_f[0].dims(), [2, 48, 2, 2, 2]);

    let mut d = DiscriminatorConfig::new(48, vec![0, 1])
        .with_hidden(16)
        .init::<A>(&device);
    // The generator's GAN loss reaches the student's samples through the frozen teacher.
    let g = generator_gan_loss(d.forward(fake_f.clone()));
    let grad: f32 = fake.grad(&g.backward()).unwrap().abs().sum().into_scalar();
    assert!(grad > 0.0);

    let detach = |f: &[Tensor<A, 5>]| f.iter().map(|x| x.clone().detach()).collect::<Vec<_>>();
    let mut optimizer = adamw(0.9, 0.99, 1e-8, 0.01, 1.0).init();
    let mut losses = Vec::new();
    for _ in 0..40 {
        let loss = discriminator_loss(d.forward(detach(&fake_f)), d.forward(detach(&real_f)));
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &d);
        d = optimizer.step(1e-3, d, grads);
    }
    assert!(
        (losses[0] - 2.0 * 2f32.ln()).abs() < 0.3,
        "start {}",
        losses[0]
    );
    assert!(
        losses[39] < 0.5 * losses[0],
        "D loss {} -> {}",
        losses[0],
        losses[39]
    );
}

#[test]
fn the_tmd_generator_backpropagates_through_every_head_pass() {
    use tmd_distill::distill::generator::{generator_input, tmd_generate};
    use tmd_flowhead::{rollout, FlowHeadConfig, TmdStudent};
    let device = Default::default();
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let student =
        TmdStudent::from_teacher(config.init::<A>(&device), &FlowHeadConfig::paper(1)).unwrap();
    let x = gaussian::<A, 5>([2, 4, 2, 4, 4], 1, &device);
    let eps = gaussian::<A, 5>([2, 4, 2, 4, 4], 2, &device);
    let (x_t, t) = generator_input(x, eps, &[0.999, 0.908, 0.0], &[0, 1]);
    assert_eq!(
        t.clone().into_data().to_vec::<f32>().unwrap(),
        vec![0.999, 0.908]
    );
    let context = gaussian::<A, 3>([2, 16, 32], 3, &device);
    let y1 = gaussian::<A, 5>([2, 4, 2, 4, 4], 4, &device);
    let grid = [0.999, 0.5, 0.0];
    let x_hat = tmd_generate(
        &student,
        x_t.clone(),
        t.clone(),
        context.clone(),
        y1.clone(),
        &grid,
    )
    .unwrap();
    let grads = x_hat.powi_scalar(2).mean().backward();
    let full = student
        .fusion
        .gated
        .as_ref()
        .unwrap()
        .gate_logit
        .grad(&grads)
        .unwrap();

    // The same sample with the first head pass cut off from the graph: a different gradient, so the
    // full rollout's gradient does go through both passes.
    let bb = student.backbone(x_t.clone(), t.clone(), context).unwrap();
    let y_mid = rollout(&student, &bb, y1.clone(), &grid[..2])
        .unwrap()
        .detach();
    let [b] = t.dims();
    let s = Tensor::<A, 1>::full([b], 0.5, &device);
    let r = Tensor::<A, 1>::zeros([b], &device);
    let y = student.flow_map(&bb, y_mid, s, r, y1).unwrap();
    let cut = x_t - y * t.reshape([b, 1, 1, 1, 1]);
    let grads = cut.powi_scalar(2).mean().backward();
    let last_only = student
        .fusion
        .gated
        .as_ref()
        .unwrap()
        .gate_logit
        .grad(&grads)
        .unwrap();
    let diff: f32 = (full - last_only).abs().sum().into_scalar();
    assert!(diff > 0.0, "the first head pass gets no gradient");
}

#[test]
fn backward_simulation_reaches_the_samplers_states() {
    use tmd_distill::distill::generator::{generator_input, simulated_input, tmd_generate};
    use tmd_flowhead::{FlowHeadConfig, TmdStudent};
    use tmd_sampler::tmd::{head_noise_seed, tmd_sample, TmdGrids};
    let device = Default::default();
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let student =
        TmdStudent::from_teacher(config.init::<B>(&device), &FlowHeadConfig::paper(1)).unwrap();
    let shape = [3, 4, 2, 4, 4];
    let x = gaussian::<B, 5>(shape, 1, &device);
    let eps = gaussian::<B, 5>(shape, 2, &device);
    let context = gaussian::<B, 3>([3, 16, 32], 3, &device);
    let (outer, inner) = ([0.999, 0.9, 0.6, 0.0], vec![0.999, 0.5, 0.0]);
    // M = 3: one row at each outer time.
    let ks = [0, 1, 2];
    let (x_t, _) = generator_input(x, eps.clone(), &outer, &ks);
    let seed = 7;
    let mut calls = Vec::new();
    let simulated = simulated_input(x_t.clone(), eps.clone(), &outer, &ks, |j, x, t| {
        calls.push(j);
        assert!(t
            .clone()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| (v - outer[j] as f32).abs() < 1e-7));
        let y1 = gaussian::<B, 5>(shape, head_noise_seed(seed, j), &device);
        tmd_generate(&student, x, t, context.clone(), y1, &inner)
    })
    .unwrap();
    assert_eq!(
        calls,
        [0, 1],
        "one student pass per outer step before the latest input time"
    );

    let row = |x: &Tensor<B, 5>, i: usize| x.clone().slice(s![i..i + 1]);
    // Row 0 (the first outer time) keeps its data-built input.
    assert_eq!(row(&simulated, 0).into_data(), row(&x_t, 0).into_data());
    // Rows 1 and 2: Algorithm 1 from the same noise, stopped at their outer time.
    for k in [1, 2] {
        let grids = TmdGrids {
            outer: outer[..=k].to_vec(),
            inner: inner.clone(),
        };
        let sampled = tmd_sample(
            &student,
            eps.clone(),
            context.clone(),
            &grids,
            seed,
            &mut |_, _| {},
        )
        .unwrap();
        let diff: f32 = (row(&simulated, k) - row(&sampled, k))
            .abs()
            .max()
            .into_scalar();
        let apart: f32 = (row(&x_t, k) - row(&sampled, k)).abs().max().into_scalar();
        assert!(diff < 1e-5, "row {k}: {diff} from the sampler's state");
        assert!(
            apart > 0.1,
            "row {k}: the data-built input is not the sampler's state"
        );
    }

    // Every row at the first outer time: no student pass, the data-built input as it is.
    let unchanged = simulated_input(x_t.clone(), eps, &outer, &[0, 0, 0], |_, _, _| {
        panic!("no student pass is needed")
    })
    .unwrap();
    assert_eq!(unchanged.into_data(), x_t.into_data());
}
