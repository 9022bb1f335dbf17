//! Data-parallel training (`--world 2`: two ranks, one thread each, gradients all-reduced by
//! burn-collective) on the CPU, through `xtask pretrain --stage vae` at a tiny size:
//!
//! - two ranks, and two ranks of two accumulated micro-batches, give the losses of one rank at
//!   the same global batch;
//! - so do two ranks with the optimizer state sharded over them (`--shard-optimizer`), whose
//!   checkpoints hold one shard per rank and resume on one rank unsharded, and vice versa;
//! - a two-rank run killed mid-run resumes from its newest checkpoint on one rank and continues
//!   the one-rank trajectory;
//! - a rank that fails mid-run (`TMD_INJECT_FAULT=1:6:fail`) ends the run with its error, and one
//!   that stops answering (`1:6:hang`) ends it with exit status 75 once `--peer-timeout` passes;
//!   both keep the checkpoint before the fault, and the rerun continues the one-rank trajectory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// The recipe's VAE stage at a tiny size: 5-frame 16x16 crops, batch 4.
fn pretrain(run_dir: &Path, steps: u64) -> Command {
    let mut cmd = Command::new(XTASK);
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["pretrain", "--stage", "vae", "--run-dir"])
        .arg(run_dir)
        .env_remove("TMD_WORLD")
        .env_remove("TMD_RANK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for set in [
        "world.frames=5",
        "world.height=32",
        "world.width=32",
        "world.vae_frames=5",
        "world.vae_crop=16",
        "vae.base_dim=4",
        "vae.z_dim=4",
        "vae_train.batch=4",
        "vae_train.checkpoint.every=4",
        "vae_train.checkpoint.keep_last=0",
        "vae_train.progress=false",
        &format!("vae_train.steps={steps}"),
    ] {
        cmd.args(["--set", set]);
    }
    cmd
}

fn run_ok(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(step, loss)` of the run's loss log.
fn losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("vae/loss.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (s, v) = l.split_once(',').unwrap();
            (s.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

fn checkpoints(run_dir: &Path) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(run_dir.join("vae")) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("step-")?.parse().ok()
        })
        .collect();
    steps.sort();
    steps
}

fn assert_same_losses(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (&(sa, la), &(sb, lb)) in a.iter().zip(b) {
        assert_eq!(sa, sb, "{what}");
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
            "{what}: step {sa}: {la} vs {lb}"
        );
    }
}

#[test]
fn two_ranks_follow_one_rank_and_a_killed_run_resumes_on_another_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };

    // One rank, 40 steps: the reference trajectory.
    run_ok(pretrain(&path("one"), 40), "one-rank run");
    let reference = losses(&path("one"));
    assert_eq!(reference.len(), 40);

    // Two ranks, 8 steps, the same global batch.
    let mut two = pretrain(&path("two"), 8);
    two.args(["--world", "2"]);
    run_ok(two, "two-rank run");
    assert_same_losses(&losses(&path("two")), &reference[..8], "2 ranks vs 1");
    assert_eq!(
        checkpoints(&path("two")),
        vec![4, 8],
        "rank 0 alone checkpoints"
    );

    // Two ranks with the optimizer state sharded: the same losses; each checkpoint holds one
    // optimizer shard per rank, each about half of the unsharded state.
    let mut sharded = pretrain(&path("sharded"), 8);
    sharded.args(["--world", "2", "--shard-optimizer"]);
    run_ok(sharded, "two-rank sharded run");
    assert_same_losses(
        &losses(&path("sharded")),
        &reference[..8],
        "2 sharded ranks vs 1",
    );
    let size = |p: PathBuf| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    let full = size(path("two").join("vae/step-000008/optimizer.mpk"));
    let shards: Vec<u64> = (0..2)
        .map(|r| size(path("sharded").join(format!("vae/step-000008/optimizer-shard-{r}.mpk"))))
        .collect();
    assert!(full > 0, "unsharded optimizer state");
    assert!(
        shards.iter().all(|&s| s > full / 4 && s < full * 3 / 4),
        "shards {shards:?} vs unsharded {full}"
    );
    assert!(!path("sharded")
        .join("vae/step-000008/optimizer.mpk")
        .exists());
    // Resumed on one rank, unsharded, from the shards; and the unsharded two-rank run resumed
    // sharded: both continue the one-rank trajectory (the optimizer state came through whole).
    run_ok(
        pretrain(&path("sharded"), 12),
        "sharded run resumed on 1 rank",
    );
    assert_same_losses(
        &losses(&path("sharded")),
        &reference[..12],
        "sharded on 2, resumed on 1, vs 1",
    );
    let mut reshard = pretrain(&path("two"), 12);
    reshard.args(["--world", "2", "--shard-optimizer"]);
    run_ok(reshard, "unsharded run resumed sharded");
    assert_same_losses(
        &losses(&path("two")),
        &reference[..12],
        "unsharded on 2, resumed sharded on 2, vs 1",
    );

    // Two ranks on a long run, killed once a checkpoint past step 4 exists.
    let mut run = pretrain(&path("fault"), 10_000);
    run.args(["--world", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = run.spawn().unwrap();
    let start = Instant::now();
    while checkpoints(&path("fault")).last().is_none_or(|&s| s < 8) {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Resume on one rank: from the newest checkpoint, along the one-rank trajectory.
    let newest = *checkpoints(&path("fault")).last().unwrap();
    let until = (newest + 4).min(40);
    assert!(
        until > newest,
        "rank 0 ran past the reference ({newest} steps)"
    );
    run_ok(pretrain(&path("fault"), until), "resumed run");
    let resumed = losses(&path("fault"));
    assert_eq!(resumed.len() as u64, until, "{resumed:?}");
    assert_same_losses(
        &resumed,
        &reference[..until as usize],
        "killed on 2 ranks, resumed on 1, vs 1",
    );
}

#[test]
fn a_failed_or_lost_rank_stops_the_run_which_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    run_ok(pretrain(&path("one"), 8), "one-rank run");
    let reference = losses(&path("one"));

    // Rank 1 fails at step 6: the run ends with its error; step 4's checkpoint holds the run.
    let mut fail = pretrain(&path("fail"), 12);
    fail.args(["--world", "2"])
        .env("TMD_INJECT_FAULT", "1:6:fail");
    let out = fail.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rank 1 of 2 failed") && stderr.contains("injected failure at step 6"),
        "{stderr}"
    );
    assert_eq!(checkpoints(&path("fail")), vec![4]);
    let mut again = pretrain(&path("fail"), 8);
    again.args(["--world", "2"]);
    run_ok(again, "rerun after a failed rank");
    assert_same_losses(
        &losses(&path("fail")),
        &reference,
        "rank 1 failed, rerun on 2, vs 1",
    );

    // Rank 1 stops answering at step 6: rank 0's collective waits past the timeout and the
    // process exits with 75; rerun on one rank.
    let mut hang = pretrain(&path("hang"), 12);
    hang.args(["--world", "2", "--peer-timeout", "2"])
        .env("TMD_INJECT_FAULT", "1:6:hang");
    let start = Instant::now();
    let out = hang.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("waited more than 2 s"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(120));
    assert_eq!(checkpoints(&path("hang")), vec![4]);
    run_ok(pretrain(&path("hang"), 8), "rerun after a lost rank");
    assert_same_losses(
        &losses(&path("hang")),
        &reference,
        "rank 1 lost, rerun on 1, vs 1",
    );
}
