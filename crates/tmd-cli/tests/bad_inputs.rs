//! `tmd-cli generate` on the bad inputs of the sweep in docs/bad-inputs.md (rows 5, 8-11, 14):
//! each is refused before sampling with a message naming the flag, key or file, or warned about.
//! Every case here stops before the DiT runs, so the file is fast.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// A fresh output folder, removed when the returned guard drops (at the end of the test, after
/// every `tmd-cli` it ran has exited).
fn out_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-cli-bad-{name}-"))
        .tempdir()
        .unwrap()
}

fn assets(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .join(name)
}

fn generate(model: &Path) -> Command {
    let mut cmd = Command::cargo_bin("tmd-cli").unwrap();
    cmd.env_remove("TMD_MODEL")
        .arg("generate")
        .arg("--model")
        .arg(model);
    cmd
}

fn stderr_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure:\n{err}");
    println!("{err}");
    err
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A request far too large for any machine: refused by the memory estimate before sampling (used
/// here to stop a run right after the checks that come before it).
const HUGE: [&str; 6] = ["--frames", "4001", "--height", "512", "--width", "512"];

/// Row 8: a guidance scale so large the clip is constant (1e30: every pixel 128), NaN, negative.
#[test]
fn degenerate_guidance_is_refused() {
    let dir = out_dir("guidance");
    let gif = dir.path().join("c.gif");
    for g in ["1e30", "NaN", "-3", "101"] {
        let err = stderr_of(
            generate(&assets("tiny-random"))
                .args([
                    "--prompt",
                    "a red circle",
                    &format!("--guidance={g}"),
                    "--out",
                ])
                .arg(&gif),
        );
        assert!(
            err.contains("--guidance") && err.contains("range"),
            "{g}: {err}"
        );
    }
    assert!(!gif.exists());
}

/// Row 9: `--frames 4001` or 4096x4096 is refused at once with the figure (the old code aborted
/// after 110 s in an allocation of 131 GB).
#[test]
fn requests_that_cannot_fit_in_memory_are_refused_with_the_figure() {
    let dir = out_dir("memory");
    let gif = dir.path().join("c.gif");
    for args in [&["--height", "4096", "--width", "4096"][..], &HUGE[..]] {
        let start = std::time::Instant::now();
        let err = stderr_of(
            generate(&assets("tiny-random"))
                .args(["--prompt", "a red circle", "--steps", "1"])
                .args(args)
                .arg("--out")
                .arg(&gif),
        );
        assert!(
            err.contains("needs about") && err.contains("GiB") && err.contains("available"),
            "{err}"
        );
        assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    }
}

/// Row 10: `frames = true` in a generate config was a 1-frame clip; now a type error naming the
/// key. Negative and fractional numbers likewise.
#[test]
fn config_values_of_the_wrong_type_are_named() {
    let tmp = out_dir("config-types");
    let dir = tmp.path();
    let cfg = dir.join("gen.toml");
    for (text, key) in [
        ("frames = true\n", "frames"),
        ("steps = -2\n", "steps"),
        ("height = 32.5\n", "height"),
        ("guidance = \"high\"\n", "guidance"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let err = stderr_of(
            generate(&assets("tiny-random"))
                .args(["--prompt", "x", "--out"])
                .arg(dir.join("c.gif"))
                .arg("--config")
                .arg(&cfg),
        );
        assert!(
            err.contains("gen.toml") && err.contains(&format!("'{key}'")),
            "{text}: {err}"
        );
    }
}

/// Row 11: `--out` into a missing folder is refused before the model is even loaded.
#[test]
fn an_output_in_a_missing_folder_is_refused_before_sampling() {
    let tmp = out_dir("missing");
    let dir = tmp.path();
    for out in ["nope/c.gif", "nope/frames"] {
        let err = stderr_of(
            generate(&assets("tiny-random"))
                .args(["--prompt", "a red circle", "--out"])
                .arg(dir.join(out)),
        );
        assert!(err.contains("does not exist"), "{err}");
        assert!(!err.contains("text encoder"), "{err}");
    }
}

/// Row 14: the world model reads 24 tokens and knows ~80 words: a long prompt, unknown words and
/// another script get a warning naming what is dropped or cannot be drawn.
#[test]
fn prompts_the_model_cannot_follow_are_warned_about() {
    let dir = out_dir("prompt");
    let gif = dir.path().join("c.gif");
    let long = "a red ball moves left ".repeat(1000);
    for (prompt, needle) in [
        ("an orange star spins", "'orange'"),
        (long.as_str(), "5001 tokens"),
        ("красный шар", "'красный'"),
    ] {
        let err = stderr_of(
            generate(&assets("world"))
                .args(["--prompt", prompt])
                .args(HUGE)
                .arg("--out")
                .arg(&gif),
        );
        assert!(
            err.contains("warning: --prompt") && err.contains(needle),
            "{err}"
        );
    }
    let err = stderr_of(
        generate(&assets("world"))
            .args(["--prompt", "a red ball moves left"])
            .args(HUGE)
            .arg("--out")
            .arg(&gif),
    );
    assert!(!err.contains("warning"), "{err}");
}

/// Row 5: one byte flipped in `student/model.bpk` of a model directory: refused with the file and
/// its SHA-256 (the old code sampled a clip off by up to 100 grey levels); `--no-verify` skips the
/// check.
#[test]
fn a_flipped_byte_in_the_student_is_refused_unless_no_verify() {
    let tmp = out_dir("flip");
    let dir = tmp.path();
    let model = dir.join("world");
    copy(&assets("world"), &model);
    let file = model.join("student/model.bpk");
    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.len() - 100;
    bytes[i] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let gif = dir.join("c.gif");
    let err = stderr_of(
        generate(&model)
            .args(["--prompt", "a red ball moves left", "--out"])
            .arg(&gif),
    );
    assert!(
        err.contains("student/model.bpk") && err.contains("SHA-256"),
        "{err}"
    );
    // With --no-verify it loads and goes on to the next check (the memory refusal here).
    let err = stderr_of(
        generate(&model)
            .args(["--prompt", "a red ball moves left", "--no-verify"])
            .args(HUGE)
            .arg("--out")
            .arg(&gif),
    );
    assert!(err.contains("needs about"), "{err}");
}
