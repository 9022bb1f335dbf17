//! Tests of VAE pretraining at tiny sizes on `Autodiff<NdArray>`: the tiny Wan VAE on 5-frame
//! 16x16 clips of the synthetic world.

use std::path::Path;
use std::sync::Mutex;

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use tempfile::TempDir;
use tmd_distill::train::{latest_valid, list_checkpoints, load_stage_config, TrainError};
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_model::vae::{WanVae, WanVaeConfig};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};
use tmd_world::pretrain::{
    decode_unclamped, pretrain_vae, vae_reconstruction_loss, VaeLossWeights, VaePretrainConfig,
};
use tmd_world::{to_tensor, ClipSpec, Split, WorldDataset};

type B = Autodiff<NdArray<f32>>;

const BATCH: usize = 2;

/// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-vae-{name}-"))
        .tempdir()
        .expect("create scratch dir")
}

/// Serialises seeding + initialisation: the backend's RNG is shared by the test threads.
static INIT: Mutex<()> = Mutex::new(());

/// The same tiny random VAE every time: initialised once, saved, and reloaded from the file.
fn initial_vae(dir: &Path) -> WanVae<B> {
    let device = Default::default();
    let file = dir.join("init.bpk");
    if !file.exists() {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        <B as Backend>::seed(&device, 4321);
        let vae = WanVaeConfig::tiny().init::<B>(&device);
        save_burnpack::<B, _>(&vae, &file).expect("save initial VAE");
    }
    let source = WeightSource::open_files(&[file]).expect("open initial VAE");
    load_module::<B, _>(
        WanVaeConfig::tiny().init::<B>(&device),
        &source,
        &KeyMap::identity(),
        &[],
        "vae",
    )
    .expect("load initial VAE")
}

fn dataset() -> WorldDataset {
    let spec = ClipSpec::new(5, 16, 16).expect("tiny clip spec");
    WorldDataset::new(Some(Split::Train), 3, spec)
}

/// The clips of step `step` (1-based): world clips `(step - 1) * BATCH ..`.
fn clips_of(step: u64) -> Result<Tensor<B, 5>, TrainError> {
    let clips = dataset().batch((step - 1) * BATCH as u64, BATCH);
    to_tensor::<B>(&clips, &Default::default()).map_err(|e| TrainError::Data {
        step,
        message: e.to_string(),
    })
}

fn config(steps: u64) -> VaePretrainConfig {
    VaePretrainConfig {
        optimizer: OptimizerConfig {
            lr: 2e-3,
            ..VaePretrainConfig::default().optimizer
        },
        warmup_steps: 0,
        batch: BATCH,
        steps,
        seed: 3,
        checkpoint: CheckpointConfig {
            every: 2,
            keep_last: 0,
            ..VaePretrainConfig::default().checkpoint
        },
        progress: false,
        ..Default::default()
    }
}

fn eval_loss(vae: &WanVae<B>, clips: Tensor<B, 5>) -> (f64, f64, f64) {
    let (loss, parts) =
        vae_reconstruction_loss(vae, clips, &config(0).loss_weights()).expect("loss");
    (
        loss.into_scalar().elem(),
        parts.reconstruction.into_scalar().elem(),
        parts.latent_l2.into_scalar().elem(),
    )
}

fn params(vae: &WanVae<B>) -> Vec<f32> {
    let mut out = Vec::new();
    for t in [
        vae.quant_conv.weight.val(),
        vae.post_quant_conv.weight.val(),
    ] {
        out.extend(t.into_data().to_vec::<f32>().expect("f32"));
    }
    out.extend(
        vae.decoder
            .conv_out
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .expect("f32"),
    );
    out
}

#[test]
fn unclamped_decode_clamps_to_wan_decode() {
    let tmp = scratch("unclamped");
    let dir = tmp.path();
    let vae = initial_vae(dir);
    let device = Default::default();
    let z = Tensor::<B, 5>::random(
        [1, 4, 2, 2, 2],
        burn::tensor::Distribution::Normal(0.0, 3.0),
        &device,
    );
    let raw = decode_unclamped(&vae, z.clone()).expect("decode unclamped");
    let reference = vae.decode(z).expect("decode");
    assert_eq!(raw.dims(), [1, 3, 5, 16, 16]);
    let out_of_range: i64 = raw
        .clone()
        .abs()
        .greater_elem(1.0)
        .int()
        .sum()
        .into_scalar()
        .elem();
    let diff: f32 = (raw.clamp(-1.0, 1.0) - reference)
        .abs()
        .max()
        .into_scalar()
        .elem();
    println!(
        "max |clamp(decode_unclamped) - decode| = {diff:e}, {out_of_range} values outside [-1, 1]"
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn gradient_difference_terms_compare_neighbours_of_the_reconstruction_and_the_clip() {
    let tmp = scratch("difference-terms");
    let dir = tmp.path();
    let vae = initial_vae(dir);
    let clips = clips_of(1).expect("clips");
    let weights = |edge, motion| VaeLossWeights {
        latent_l2: 0.0,
        edge,
        motion,
    };
    let (plain, parts) = vae_reconstruction_loss(&vae, clips.clone(), &weights(0.0, 0.0)).unwrap();
    let (weighted, _) = vae_reconstruction_loss(&vae, clips.clone(), &weights(2.0, 3.0)).unwrap();
    let value = |t: Tensor<B, 1>| -> f64 { t.into_scalar().elem() };
    let (recon, edge, motion) = (
        value(parts.reconstruction.clone()),
        value(parts.edge.clone()),
        value(parts.motion.clone()),
    );
    assert!((value(plain) - recon).abs() < 1e-6);
    assert!((value(weighted) - (recon + 2.0 * edge + 3.0 * motion)).abs() < 1e-5);
    // By hand: the mean of squared differences of horizontal neighbours, of the reconstruction
    // minus of the clip (plus the same for vertical neighbours).
    let z = vae.encode(clips.clone()).unwrap();
    let rec = decode_unclamped(&vae, z).unwrap();
    let [_, _, t, h, w] = rec.dims();
    let dx = |x: &Tensor<B, 5>| x.clone().narrow(4, 1, w - 1) - x.clone().narrow(4, 0, w - 1);
    let dy = |x: &Tensor<B, 5>| x.clone().narrow(3, 1, h - 1) - x.clone().narrow(3, 0, h - 1);
    let dt = |x: &Tensor<B, 5>| x.clone().narrow(2, 1, t - 1) - x.clone().narrow(2, 0, t - 1);
    let mse = |a: Tensor<B, 5>, b: Tensor<B, 5>| value((a - b).powi_scalar(2).mean());
    let edge_by_hand = mse(dx(&rec), dx(&clips)) + mse(dy(&rec), dy(&clips));
    assert!(
        (edge - edge_by_hand).abs() < 1e-6,
        "{edge} vs {edge_by_hand}"
    );
    assert!((motion - mse(dt(&rec), dt(&clips))).abs() < 1e-6);
    assert!(edge > 0.0 && motion > 0.0);
    // A single frame has no motion term.
    let first = clips.narrow(2, 0, 1);
    let (_, single) = vae_reconstruction_loss(&vae, first, &weights(1.0, 1.0)).unwrap();
    assert_eq!(value(single.motion), 0.0);
}

#[test]
fn loss_decreases_on_a_fixed_batch() {
    let tmp = scratch("decrease");
    let dir = tmp.path();
    let vae = initial_vae(dir);
    let fixed = clips_of(1).expect("clips");
    let centred = fixed.clone() - fixed.clone().mean_dim(0);
    let batch_mean_mse: f64 = centred.powi_scalar(2).mean().into_scalar().elem();
    let zero_mse: f64 = fixed.clone().powi_scalar(2).mean().into_scalar().elem();
    println!(
        "MSE of predicting 0: {zero_mse:.5}; of predicting the batch mean: {batch_mean_mse:.5}"
    );
    let before = eval_loss(&vae, fixed.clone());
    let mut cfg = config(20);
    cfg.checkpoint.every = 1000;
    let t0 = std::time::Instant::now();
    let (vae, report) =
        pretrain_vae(vae, &cfg, &dir.join("run"), |_| Ok(fixed.clone())).expect("train");
    println!("20 steps in {:.1}s", t0.elapsed().as_secs_f64());
    let after = eval_loss(&vae, fixed);
    let losses: Vec<f64> = report.losses.iter().map(|&(_, l)| l).collect();
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    println!(
        "loss (total, recon, mean z^2) {before:?} -> {after:?}; mean train loss first 3 {first:.5}, last 3 {last:.5}"
    );
    println!("losses {losses:?}");
    assert_eq!(losses.len(), 20);
    // At this size and step count the run reaches the level of predicting the mean colour
    // (about the batch-mean MSE printed above) and no further: 0.884 -> 0.781 when measured.
    assert!(
        after.0 < 0.95 * before.0,
        "eval loss {before:?} -> {after:?}"
    );
    assert!(
        after.1 < zero_mse,
        "reconstruction {after:?} vs predicting 0: {zero_mse}"
    );
    assert!(last < first, "train loss {first} -> {last}");
    let ckpts = list_checkpoints(&dir.join("run")).expect("list");
    assert_eq!(ckpts.iter().map(|c| c.step).collect::<Vec<_>>(), vec![20]);
    let log = std::fs::read_to_string(dir.join("run").join("loss.csv")).expect("loss.csv");
    assert_eq!(log.lines().count(), 20);
}

#[test]
fn resume_repeats_an_uninterrupted_run_bit_for_bit() {
    let tmp = scratch("resume");
    let dir = tmp.path();
    let (full_vae, full) =
        pretrain_vae(initial_vae(dir), &config(6), &dir.join("full"), clips_of).expect("full run");

    // Interrupted: the data source fails at step 4, after the checkpoint of step 2 and the
    // uncheckpointed step 3 (whose loss.csv line must be dropped on resume).
    let split = dir.join("split");
    let first = pretrain_vae(initial_vae(dir), &config(6), &split, |s| {
        if s == 4 {
            Err(TrainError::Data {
                step: s,
                message: "interrupted".into(),
            })
        } else {
            clips_of(s)
        }
    });
    assert!(matches!(first, Err(TrainError::Data { step: 4, .. })));
    let (split_vae, second) =
        pretrain_vae(initial_vae(dir), &config(6), &split, clips_of).expect("resumed run");
    assert_eq!(second.start_step, 2);
    assert!(second.resumed_from.is_some());

    let full_tail: Vec<(u64, u64)> = full.losses[2..]
        .iter()
        .map(|&(s, l)| (s, l.to_bits()))
        .collect();
    let resumed: Vec<(u64, u64)> = second
        .losses
        .iter()
        .map(|&(s, l)| (s, l.to_bits()))
        .collect();
    println!("uninterrupted {:?}", full.losses);
    println!("resumed       {:?}", second.losses);
    assert_eq!(full_tail, resumed);
    assert_eq!(params(&full_vae), params(&split_vae));
    let log_full = std::fs::read_to_string(dir.join("full").join("loss.csv")).expect("log");
    let log_split = std::fs::read_to_string(split.join("loss.csv")).expect("log");
    assert_eq!(log_full, log_split);

    // A different latent weight refuses to resume from these checkpoints.
    let mut other = config(8);
    other.latent_l2 = 0.5;
    assert!(matches!(
        pretrain_vae(initial_vae(dir), &other, &split, clips_of),
        Err(TrainError::ConfigMismatch { .. })
    ));
}

#[test]
fn nan_input_stops_with_the_last_good_checkpoint() {
    let tmp = scratch("nan");
    let dir = tmp.path();
    let run = dir.join("run");
    let result = pretrain_vae(initial_vae(dir), &config(8), &run, |s| {
        let clips = clips_of(s)?;
        Ok(if s == 5 { clips * f32::NAN } else { clips })
    });
    match result {
        Err(TrainError::NonFinite { step, what, value }) => {
            println!("stopped: step {step}, {what} = {value}");
            assert_eq!((step, what.as_str()), (5, "loss"));
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {:?}", other.map(|(_, r)| r)),
    }
    let latest = latest_valid(&run).expect("scan");
    assert_eq!(latest.checkpoint.map(|c| c.step), Some(4));
    assert!(latest.skipped.is_empty());
}

#[test]
fn config_reads_overrides_and_rejects_unknown_keys() {
    let cfg: VaePretrainConfig =
        load_stage_config(None, &["latent_l2=0.001".into(), "batch=4".into()]).expect("config");
    assert_eq!((cfg.latent_l2, cfg.batch), (0.001, 4));
    assert_eq!(cfg.optimizer.lr, VaePretrainConfig::default().optimizer.lr);
    assert_ne!(
        cfg.resume_hash(),
        VaePretrainConfig::default().resume_hash()
    );
    match load_stage_config::<VaePretrainConfig>(None, &["kl_weight=1".into()]) {
        Err(TrainError::Config { key, .. }) => assert_eq!(key.as_deref(), Some("kl_weight")),
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// Share of `x` that varies across the batch: rms(x - batch mean) / rms(x).
fn input_dependence(x: Tensor<NdArray<f32>, 5>) -> f64 {
    let mean = x.clone().mean_dim(0);
    let varying: f64 = (x.clone() - mean)
        .powi_scalar(2)
        .mean()
        .sqrt()
        .into_scalar() as f64;
    let all: f64 = x.powi_scalar(2).mean().sqrt().into_scalar() as f64;
    varying / all
}

#[test]
fn training_init_keeps_the_input_in_the_latent_and_the_reconstruction() {
    use tmd_world::pretrain::vae::init_for_training;
    let device = Default::default();
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    <NdArray<f32> as Backend>::seed(&device, 7);
    // The world recipe's VAE layout (8x spatial, 4x temporal), narrow.
    let config = WanVaeConfig::new()
        .with_base_dim(8)
        .with_num_res_blocks(1)
        .with_latents_mean(vec![0.0; 16])
        .with_latents_std(vec![1.0; 16]);
    let fresh = config.init::<NdArray<f32>>(&device);
    let clips = to_tensor::<NdArray<f32>>(
        &WorldDataset::new(Some(Split::Train), 0, ClipSpec::new(1, 32, 32).unwrap()).batch(0, 4),
        &device,
    )
    .unwrap();
    let dependence = |vae: &WanVae<NdArray<f32>>| {
        let z = vae.encode(clips.clone()).unwrap();
        let out = decode_unclamped(vae, z.clone()).unwrap();
        (input_dependence(z), input_dependence(out))
    };
    // Default init: biases swamp the signal (measured ~0.01 for z, ~0.1 for the output).
    let (z0, out0) = dependence(&fresh);
    let trained = init_for_training(fresh);
    let (z1, out1) = dependence(&trained);
    assert!(
        z1 > 0.5 && out1 > 0.15 && z1 > 2.0 * z0,
        "input dependence of z / output: default {z0:.3} / {out0:.3}, training init {z1:.3} / {out1:.3}"
    );
    // Every bias is zero and every residual block starts as the identity.
    let block = &trained.decoder.up_blocks[0].resnets[0];
    let max = |t: Tensor<NdArray<f32>, 1>| -> f32 { t.abs().max().into_scalar() };
    assert_eq!(max(block.conv2.weight.val().flatten(0, 4)), 0.0);
    assert_eq!(max(trained.encoder.conv_in.bias.val()), 0.0);
    assert!(max(block.conv1.weight.val().flatten(0, 4)) > 0.0);
}
