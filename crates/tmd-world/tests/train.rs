//! Tests of the training infrastructure and DiT pretraining at tiny sizes on `Autodiff<NdArray>`:
//! loss decreases, exact resume, corrupt checkpoints skipped, NaN/Inf stops with the last good
//! checkpoint kept, config file/override precedence.
//!
//! Run: `cargo test -p tmd-world --test train -- --nocapture`

use std::path::Path;

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tmd_distill::train::{latest_valid, list_checkpoints, load_stage_config, TrainError};
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};
use tmd_sampler::noise::gaussian;
use tmd_world::pretrain::teacher::warm_start_dit;
use tmd_world::pretrain::{flow_matching_loss, pretrain_dit, DitBatch, DitPretrainConfig};

type B = Autodiff<NdArray<f32>>;

const BATCH: usize = 2;
const LATENT: [usize; 5] = [BATCH, 4, 2, 4, 4];

/// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-train-{name}-"))
        .tempdir()
        .expect("create scratch dir")
}

/// The same tiny random DiT every time: initialised once, saved, and reloaded from the file.
fn initial_model(dir: &Path) -> WanModel<B> {
    let device = Default::default();
    let file = dir.join("init.bpk");
    if !file.exists() {
        <B as Backend>::seed(&device, 1234);
        let model = WanConfig::tiny().init::<B>(&device);
        save_burnpack::<B, _>(&model, &file).expect("save initial model");
    }
    let source = WeightSource::open_files(&[file]).expect("open initial model");
    load_module::<B, _>(
        WanConfig::tiny().init::<B>(&device),
        &source,
        &KeyMap::identity(),
        &[],
        "dit",
    )
    .expect("load initial model")
}

/// A fixed tiny batch: smooth latents (so there is structure to learn) and random text.
fn fixed_batch() -> DitBatch<B> {
    let device = Default::default();
    let base = gaussian::<B, 5>([BATCH, 4, 1, 1, 1], 11, &device);
    let latents = base.expand(LATENT) + gaussian::<B, 5>(LATENT, 12, &device) * 0.1;
    let cfg = WanConfig::tiny();
    let context = gaussian::<B, 3>([BATCH, cfg.text_len, cfg.text_dim], 13, &device);
    DitBatch { latents, context }
}

/// A batch that depends on the step only.
fn batch_of(step: u64) -> DitBatch<B> {
    let device = Default::default();
    let cfg = WanConfig::tiny();
    DitBatch {
        latents: gaussian::<B, 5>(LATENT, 100 + step, &device),
        context: gaussian::<B, 3>([BATCH, cfg.text_len, cfg.text_dim], 200 + step, &device),
    }
}

fn negative() -> Tensor<B, 3> {
    let cfg = WanConfig::tiny();
    Tensor::zeros([1, cfg.text_len, cfg.text_dim], &Default::default())
}

fn config(steps: u64) -> DitPretrainConfig {
    DitPretrainConfig {
        optimizer: OptimizerConfig {
            lr: 1e-3,
            ..DitPretrainConfig::default().optimizer
        },
        batch: BATCH,
        steps,
        seed: 5,
        text_dropout: 0.3,
        checkpoint: CheckpointConfig {
            every: 2,
            keep_last: 0,
            ..DitPretrainConfig::default().checkpoint
        },
        progress: false,
        ..Default::default()
    }
}

/// A run of `cfg` in `dir/name` from the shared initial model on the step-dependent batches:
/// the trained model and the report.
fn train(
    dir: &Path,
    name: &str,
    cfg: &DitPretrainConfig,
) -> (WanModel<B>, tmd_world::pretrain::PretrainReport) {
    pretrain_dit(
        initial_model(dir),
        cfg,
        &dir.join(name),
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("run")
}

/// Each step's loss as exact bits.
fn loss_bits(losses: &[(u64, f64)]) -> Vec<(u64, u64)> {
    losses.iter().map(|&(s, l)| (s, l.to_bits())).collect()
}

fn eval_loss(model: &WanModel<B>) -> f64 {
    let device = Default::default();
    let b = fixed_batch();
    let t = Tensor::<B, 1>::from_floats([0.3, 0.7], &device);
    let noise = gaussian::<B, 5>(LATENT, 99, &device);
    flow_matching_loss(model, b.latents, b.context, t, noise)
        .expect("loss")
        .into_scalar()
        .elem()
}

#[test]
fn loss_decreases_on_a_fixed_batch() {
    let tmp = scratch("decrease");
    let dir = tmp.path();
    let model = initial_model(dir);
    let before = eval_loss(&model);
    let mut cfg = config(30);
    cfg.text_dropout = 0.0;
    cfg.checkpoint.every = 1000;
    let (model, report) =
        pretrain_dit(model, &cfg, &dir.join("run"), None, |_| Ok(fixed_batch())).expect("train");
    let after = eval_loss(&model);
    let losses: Vec<f64> = report.losses.iter().map(|&(_, l)| l).collect();
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    println!(
        "eval loss {before:.5} -> {after:.5}; mean train loss first 5 {first:.5}, last 5 {last:.5}"
    );
    assert_eq!(losses.len(), 30);
    assert!(after < 0.7 * before, "eval loss {before} -> {after}");
    assert!(last < first, "train loss {first} -> {last}");
    // Only the final checkpoint (step 30) is written with checkpoint.every = 1000.
    let ckpts = list_checkpoints(&dir.join("run")).expect("list");
    assert_eq!(ckpts.iter().map(|c| c.step).collect::<Vec<_>>(), vec![30]);
}

#[test]
fn resume_repeats_an_uninterrupted_run_bit_for_bit() {
    let tmp = scratch("resume");
    let dir = tmp.path();
    let (full_model, full) = pretrain_dit(
        initial_model(dir),
        &config(8),
        &dir.join("full"),
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("uninterrupted run");

    // Interrupted after step 5: the newest checkpoint is step 4, step 5 is redone.
    let (_, first) = pretrain_dit(
        initial_model(dir),
        &config(5),
        &dir.join("split"),
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("first half");
    std::fs::remove_dir_all(dir.join("split/step-000005")).expect("drop the step-5 checkpoint");
    let (split_model, second) = pretrain_dit(
        initial_model(dir),
        &config(8),
        &dir.join("split"),
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("resumed run");
    assert_eq!(second.start_step, 4);
    assert!(second.resumed_from.is_some());
    let mut joined: Vec<(u64, f64)> = first.losses[..4].to_vec();
    joined.extend(second.losses.iter().copied());
    println!("uninterrupted: {:?}", full.losses);
    println!("resumed:       {joined:?}");
    let bits = |v: &[(u64, f64)]| v.iter().map(|&(s, l)| (s, l.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&joined), bits(&full.losses));
    // Weights agree bit for bit too.
    let a = full_model.head.proj.weight.val().into_data();
    let b = split_model.head.proj.weight.val().into_data();
    assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    // The loss log holds every step once.
    let log = std::fs::read_to_string(dir.join("split/loss.csv")).expect("loss log");
    assert_eq!(log.lines().count(), 8);
}

#[test]
fn a_constant_rate_run_continues_with_a_decay() {
    // The bundled teacher's DiT ran at a constant rate, then was continued with a decay: the
    // decay is not part of the resume hash, and it changes only the steps after `decay_start`.
    let tmp = scratch("decay");
    let dir = tmp.path();
    let decayed = |steps| DitPretrainConfig {
        decay_start: 4,
        ..config(steps)
    };
    assert_eq!(config(8).resume_hash(), decayed(8).resume_hash());
    let run = |name: &str, cfg: &DitPretrainConfig| train(dir, name, cfg).1;
    let constant = run("constant", &config(8));
    run("continued", &config(4));
    let continued = run("continued", &decayed(8));
    assert_eq!(continued.start_step, 4);
    // Step 5's loss is taken before its update, from the same weights as the constant run's ...
    assert_eq!(
        loss_bits(&continued.losses[..1]),
        loss_bits(&constant.losses[4..5])
    );
    // ... and the updates from step 5 on use the decayed rate, so the later losses differ.
    assert_ne!(
        loss_bits(&continued.losses[1..]),
        loss_bits(&constant.losses[5..])
    );
}

#[test]
fn a_warm_up_changes_only_the_first_updates_and_keeps_the_resume_hash() {
    let tmp = scratch("warmup");
    let dir = tmp.path();
    let warm = |warmup_steps| DitPretrainConfig {
        warmup_steps,
        ..config(4)
    };
    assert_eq!(config(4).resume_hash(), warm(3).resume_hash());
    let run = |name: &str, cfg: &DitPretrainConfig| loss_bits(&train(dir, name, cfg).1.losses);
    let plain = run("plain", &config(4));
    // A one-step warm-up reaches the full rate at step 1: the same run.
    assert_eq!(run("one", &warm(1)), plain);
    // Three steps: step 1's loss is taken before any update, step 2's after a third of it.
    let warmed = run("three", &warm(3));
    assert_eq!(warmed[0], plain[0]);
    assert_ne!(warmed[1], plain[1]);
}

#[test]
fn a_warm_start_takes_the_weights_of_another_run() {
    let tmp = scratch("warm-start");
    let dir = tmp.path();
    let (trained, _) = train(dir, "first", &config(4));
    let want = eval_loss(&trained);
    assert_ne!(want.to_bits(), eval_loss(&initial_model(dir)).to_bits());
    // From the run directory (its newest checkpoint) and from the checkpoint directory itself.
    for from in [dir.join("first"), dir.join("first/step-000004")] {
        let warm = warm_start_dit(initial_model(dir), &from).expect("warm start");
        assert_eq!(
            eval_loss(&warm).to_bits(),
            want.to_bits(),
            "{}",
            from.display()
        );
    }
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = warm_start_dit(initial_model(dir), &empty)
        .expect_err("no checkpoint")
        .to_string();
    assert!(err.contains(&empty.display().to_string()), "{err}");
}

#[test]
fn corrupt_checkpoint_is_skipped_and_the_previous_one_used() {
    let tmp = scratch("corrupt");
    let dir = tmp.path();
    let run = dir.join("run");
    let (_, reference) = pretrain_dit(
        initial_model(dir),
        &config(6),
        &run,
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("run");
    // Flip one byte in the newest checkpoint's weights, leave a stale temporary directory.
    let file = run.join("step-000006/dit.bpk");
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, bytes).expect("write");
    std::fs::create_dir_all(run.join("step-000008.tmp")).expect("tmp dir");

    let latest = latest_valid(&run).expect("scan");
    println!("skipped: {:?}", latest.skipped);
    assert_eq!(latest.checkpoint.as_ref().map(|c| c.step), Some(4));
    assert_eq!(latest.skipped.len(), 1);
    assert!(
        latest.skipped[0].1.contains("dit.bpk"),
        "{}",
        latest.skipped[0].1
    );

    let (_, resumed) = pretrain_dit(
        initial_model(dir),
        &config(6),
        &run,
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("resume");
    assert_eq!(resumed.start_step, 4);
    assert_eq!(resumed.skipped_corrupt.len(), 1);
    assert_eq!(resumed.losses, reference.losses[4..].to_vec());
    assert!(latest_valid(&run).expect("scan").skipped.is_empty());
}

/// Bad-input table row 1: the three newest checkpoints all corrupt. The old code restarted at
/// step 1, truncated `loss.csv`, and pruned every new checkpoint at once (keep_last = 3, the
/// corrupt ones having higher step numbers). Now the corrupt ones are moved aside, the run stops
/// with an error naming them, and `loss.csv` is untouched; a second attempt stops again.
#[test]
fn all_checkpoints_corrupt_stops_instead_of_starting_over() {
    let tmp = scratch("all-corrupt");
    let dir = tmp.path();
    let run = dir.join("run");
    let mut cfg = config(6);
    cfg.checkpoint.keep_last = 3;
    pretrain_dit(initial_model(dir), &cfg, &run, Some(negative()), |s| {
        Ok(batch_of(s))
    })
    .expect("run");
    for step in [2, 4, 6] {
        let file = run.join(format!("step-{step:06}/dit.bpk"));
        let mut bytes = std::fs::read(&file).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&file, bytes).expect("write");
    }
    let log_before = std::fs::read_to_string(run.join("loss.csv")).expect("loss.csv");
    assert_eq!(log_before.lines().count(), 6);
    for attempt in 0..2 {
        let err = pretrain_dit(initial_model(dir), &cfg, &run, Some(negative()), |s| {
            Ok(batch_of(s))
        })
        .map(|(_, r)| r)
        .expect_err("no valid checkpoint: must not start over");
        let msg = err.to_string();
        println!("attempt {attempt}: {msg}");
        assert!(
            matches!(&err, TrainError::NoValidCheckpoint { corrupt, .. } if corrupt.len() == 3),
            "{msg}"
        );
        assert!(msg.contains("step-000006.corrupt"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(run.join("loss.csv")).expect("loss.csv"),
            log_before
        );
        assert!(list_checkpoints(&run).expect("list").is_empty());
    }
}

/// Row 1, the partial case: the two newest checkpoints corrupt. The run resumes from the valid
/// one, keeps the corrupt ones aside (never deleted), and keep_last prunes only older ones.
#[test]
fn corrupt_newer_checkpoints_are_moved_aside_not_deleted() {
    let tmp = scratch("newer-corrupt");
    let dir = tmp.path();
    let run = dir.join("run");
    let mut cfg = config(6);
    cfg.checkpoint.keep_last = 1;
    cfg.checkpoint.every = 2;
    pretrain_dit(
        initial_model(dir),
        &config(6),
        &run,
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("run");
    for step in [4, 6] {
        let file = run.join(format!("step-{step:06}/state.json"));
        std::fs::write(&file, b"{}").expect("write");
    }
    let (_, report) = pretrain_dit(initial_model(dir), &cfg, &run, Some(negative()), |s| {
        Ok(batch_of(s))
    })
    .expect("resume");
    assert_eq!(report.start_step, 2);
    assert_eq!(report.skipped_corrupt.len(), 2);
    for step in [4, 6] {
        assert!(run.join(format!("step-{step:06}.corrupt")).is_dir());
    }
    let steps: Vec<u64> = list_checkpoints(&run)
        .expect("list")
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(steps, vec![6]);
}

/// Row 1, the log: a run stopped before its first checkpoint, run again, keeps the old log aside
/// instead of truncating it.
#[test]
fn a_loss_log_without_checkpoint_is_kept_aside() {
    let tmp = scratch("log-aside");
    let dir = tmp.path();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(run.join("loss.csv"), "1,0.5\n2,0.4\n").expect("write");
    pretrain_dit(
        initial_model(dir),
        &config(2),
        &run,
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("run");
    assert_eq!(
        std::fs::read_to_string(run.join("loss.csv.old")).expect("old log"),
        "1,0.5\n2,0.4\n"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("loss.csv"))
            .expect("log")
            .lines()
            .count(),
        2
    );
}

#[test]
fn keep_last_prunes_old_checkpoints() {
    let tmp = scratch("keep");
    let dir = tmp.path();
    let mut cfg = config(6);
    cfg.checkpoint.every = 1;
    cfg.checkpoint.keep_last = 2;
    pretrain_dit(
        initial_model(dir),
        &cfg,
        &dir.join("run"),
        Some(negative()),
        |s| Ok(batch_of(s)),
    )
    .expect("run");
    let steps: Vec<u64> = list_checkpoints(&dir.join("run"))
        .expect("list")
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(steps, vec![5, 6]);
}

#[test]
fn nan_input_stops_with_the_last_good_checkpoint() {
    let tmp = scratch("nan");
    let dir = tmp.path();
    let run = dir.join("run");
    let result = pretrain_dit(
        initial_model(dir),
        &config(8),
        &run,
        Some(negative()),
        |s| {
            let mut b = batch_of(s);
            if s == 5 {
                b.latents = b.latents * f32::NAN;
            }
            Ok(b)
        },
    );
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
fn infinite_learning_rate_never_checkpoints_bad_weights() {
    let tmp = scratch("inf-lr");
    let dir = tmp.path();
    let run = dir.join("run");
    let mut cfg = config(4);
    cfg.optimizer.lr = f64::INFINITY;
    cfg.checkpoint.every = 1;
    match pretrain_dit(initial_model(dir), &cfg, &run, Some(negative()), |s| {
        Ok(batch_of(s))
    }) {
        Err(TrainError::NonFinite { step, what, .. }) => {
            println!("stopped: step {step}, {what}");
            assert_eq!(step, 1);
            assert!(what.starts_with("parameter "), "{what}");
        }
        other => panic!("expected NonFinite, got {:?}", other.map(|(_, r)| r)),
    }
    assert!(latest_valid(&run).expect("scan").checkpoint.is_none());
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(default)]
struct Nested {
    width: usize,
    name: String,
}

impl Default for Nested {
    fn default() -> Self {
        Self {
            width: 8,
            name: "tiny".into(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(default)]
struct Stage {
    lr: f64,
    steps: u64,
    seed: u64,
    ema: bool,
    model: Nested,
}

impl Default for Stage {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            steps: 10,
            seed: 1,
            ema: false,
            model: Nested::default(),
        }
    }
}

#[test]
fn config_file_then_overrides_and_errors_name_file_and_key() {
    let tmp = scratch("config");
    let dir = tmp.path();
    let file = dir.join("stage.toml");
    std::fs::write(&file, "lr = 0.5\nsteps = 7\n[model]\nwidth = 16\n").expect("write");

    let defaults: Stage = load_stage_config(None, &[]).expect("defaults");
    assert_eq!(defaults, Stage::default());

    let s: Stage = load_stage_config(
        Some(&file),
        &["steps=9".into(), "ema=true".into(), "model.name=big".into()],
    )
    .expect("file + overrides");
    assert_eq!(s.lr, 0.5); // file
    assert_eq!(s.steps, 9); // override beats file
    assert_eq!(s.seed, 1); // default
    assert!(s.ema);
    assert_eq!(
        s.model,
        Nested {
            width: 16,
            name: "big".into()
        }
    );

    let lr: Stage = load_stage_config(Some(&file), &["lr=1e-4".into()]).expect("float override");
    assert_eq!(lr.lr, 1e-4);

    std::fs::write(&file, "lr = 0.5\nlrr = 1\n").expect("write");
    let err = load_stage_config::<Stage>(Some(&file), &[]).expect_err("unknown key");
    println!("{err}");
    match &err {
        TrainError::Config {
            file: Some(f),
            key: Some(k),
            ..
        } => {
            assert_eq!(f, &file);
            assert_eq!(k, "lrr");
        }
        other => panic!("expected Config error, got {other:?}"),
    }
    assert!(err.to_string().contains("stage.toml") && err.to_string().contains("lrr"));

    let err =
        load_stage_config::<Stage>(None, &["model.depth=3".into()]).expect_err("unknown override");
    assert!(
        matches!(&err, TrainError::Config { key: Some(k), .. } if k == "model.depth"),
        "{err}"
    );

    let err = load_stage_config::<Stage>(None, &["steps".into()]).expect_err("malformed override");
    assert!(err.to_string().contains("key=value"), "{err}");

    std::fs::write(&file, "steps = \"many\"\n").expect("write");
    let err = load_stage_config::<Stage>(Some(&file), &[]).expect_err("wrong type");
    println!("{err}");
    assert!(
        err.to_string().contains("stage.toml") && err.to_string().contains("steps"),
        "{err}"
    );

    let err =
        load_stage_config::<Stage>(Some(&dir.join("missing.toml")), &[]).expect_err("missing");
    assert!(err.to_string().contains("missing.toml"), "{err}");

    // The DiT pretraining config goes through the same path.
    let p: DitPretrainConfig =
        load_stage_config(None, &["shift=3.0".into(), "batch=4".into()]).expect("dit");
    assert_eq!(
        (p.shift, p.batch, p.optimizer.lr),
        (3.0, 4, DitPretrainConfig::default().optimizer.lr)
    );
}

/// Bad-input table row 10: `motion_weight = true` was read as 1.0 and a negative learning rate was
/// accepted; `lr = nan` too. Each is now an error naming the key.
#[test]
fn wrong_types_negative_and_non_finite_numbers_are_named() {
    let tmp = scratch("config-types");
    let dir = tmp.path();
    let file = dir.join("stage.toml");
    for (text, key, needle) in [
        ("lr = true\n", "lr", "boolean"),
        ("ema = 1\n", "ema", "integer"),
        ("steps = 2.5\n", "steps", "float"),
        ("[model]\nwidth = false\n", "model.width", "boolean"),
        ("lr = -0.001\n", "lr", "negative"),
        ("lr = nan\n", "lr", "finite"),
        ("lr = inf\n", "lr", "finite"),
    ] {
        std::fs::write(&file, text).expect("write");
        let err = load_stage_config::<Stage>(Some(&file), &[]).expect_err(text);
        println!("{text:?}: {err}");
        assert!(
            matches!(&err, TrainError::Config { key: Some(k), .. } if k == key),
            "{text:?}: {err}"
        );
        assert!(err.to_string().contains(needle), "{text:?}: {err}");
    }
    let err = load_stage_config::<Stage>(None, &["lr=-1".into()]).expect_err("override");
    assert!(err.to_string().contains("negative"), "{err}");
    // Integers for floats stay fine.
    std::fs::write(&file, "lr = 1\n").expect("write");
    let s: Stage = load_stage_config(Some(&file), &[]).expect("integer for a float");
    assert_eq!(s.lr, 1.0);
}

/// Bad-input table row 12: a full disk during a checkpoint (an injected writer error for the
/// optimizer state, `/dev/full` for the weights) says "No space left on device", not "invalid
/// value write: ... MessagePack value" or "corrupt"; nothing is committed.
#[test]
fn a_full_disk_during_a_checkpoint_says_no_space_left() {
    use tmd_distill::train::CheckpointWriter;
    let tmp = scratch("full-ckpt");
    let dir = tmp.path();
    let run = dir.join("run");
    let model = initial_model(dir);
    let optimizer = burn::optim::AdamWConfig::new().init::<B, WanModel<B>>();
    let writer = CheckpointWriter::begin(&run, 1).expect("begin");
    tmd_model::output::fail_writes_after(Some(10));
    let err = writer.save_optimizer::<B, WanModel<B>, _>("optimizer", &optimizer);
    tmd_model::output::fail_writes_after(None);
    let msg = err.expect_err("disk full").to_string();
    println!("{msg}");
    assert!(
        msg.contains("No space left on device") && msg.contains("optimizer.mpk"),
        "{msg}"
    );
    assert!(!msg.contains("MessagePack"), "{msg}");
    #[cfg(target_os = "linux")]
    {
        let tmp = writer
            .path()
            .join(format!("dit.bpk.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &tmp).expect("symlink");
        let msg = writer
            .save_module::<B, _>("dit", &model)
            .expect_err("disk full")
            .to_string();
        println!("{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(!msg.contains("corrupt"), "{msg}");
    }
    assert!(list_checkpoints(&run).expect("list").is_empty());
}

#[test]
fn checkpoint_round_trip_restores_weights_and_parameter_ids() {
    use tmd_distill::train::{CheckpointWriter, TrainState};
    let tmp = scratch("roundtrip");
    let dir = tmp.path();
    let model = initial_model(dir);
    let writer = CheckpointWriter::begin(&dir.join("run"), 3).expect("begin");
    writer.save_module::<B, _>("dit", &model).expect("save");
    let state = TrainState {
        step: 3,
        seed: 9,
        config_hash: "abc".into(),
        losses: vec![(3, 0.5)],
        optimizer_shards: 0,
    };
    writer.save_state(&state).expect("state");
    let ckpt = writer.commit(0).expect("commit");
    assert_eq!(ckpt.path, dir.join("run/step-000003"));
    ckpt.verify().expect("verify");
    assert_eq!(ckpt.state().expect("state"), state);
    let fresh = WanConfig::tiny().init::<B>(&Default::default());
    assert_ne!(
        fresh.patch_embedding.weight.id,
        model.patch_embedding.weight.id
    );
    let loaded = ckpt.load_module::<B, _>("dit", fresh).expect("load");
    assert_eq!(
        loaded.patch_embedding.weight.id,
        model.patch_embedding.weight.id
    );
    assert_eq!(
        loaded.blocks[1].ffn.fc1.weight.id,
        model.blocks[1].ffn.fc1.weight.id
    );
    let a = model.head.proj.weight.val().into_data();
    let b = loaded.head.proj.weight.val().into_data();
    assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
}
