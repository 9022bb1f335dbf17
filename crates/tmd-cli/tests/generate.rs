//! End-to-end tests of `tmd-cli generate`: the bundled world model is the default and writes a
//! clip; the option handling runs on the random-weight tiny model (fast, and a plain teacher), and
//! bad input gets a message that names the value at fault.

use std::path::PathBuf;

use assert_cmd::Command;
use tempfile::TempDir;

/// A fresh output folder, removed when the returned guard drops (at the end of the test, after
/// every `tmd-cli` it ran has exited).
fn out_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-cli-{name}-"))
        .tempdir()
        .unwrap()
}

fn tiny_random() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random")
}

/// `generate` with no model chosen: the bundled default.
fn generate_default() -> Command {
    let mut cmd = Command::cargo_bin("tmd-cli").unwrap();
    cmd.env_remove("TMD_MODEL").arg("generate");
    cmd
}

/// `generate` on the tiny random model (a teacher-only directory).
fn generate() -> Command {
    let mut cmd = generate_default();
    cmd.arg("--model").arg(tiny_random());
    cmd
}

#[test]
fn the_default_is_the_bundled_world_student() {
    let tmp = out_dir("default");
    let dir = tmp.path();
    let gif = dir.join("clip.gif");
    let out = generate_default()
        .args([
            "--prompt",
            "A large red circle moves left on a black background.",
            "--timings",
            "--out",
        ])
        .arg(&gif)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TMD student"), "{stderr}");
    // The bundled student: M = 2 outer steps, N = 2, H = 2 of the world DiT's 4 blocks.
    assert!(stdout.contains("effective NFE 3.00"), "{stdout}");
    // The bundled model ships its distilled decoder-light/ (docs/results/light-decoder.md): it
    // decodes by default, and `--timings` says so.
    assert!(stdout.contains("(light decoder)"), "{stdout}");
    let frames = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&gif).unwrap(),
    ))
    .unwrap();
    let frames: Vec<_> = image::AnimationDecoder::into_frames(frames)
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 17);
    let first = frames[0].buffer();
    assert_eq!((first.width(), first.height()), (64, 64));
    // The caption asks for a black background: most of the last frame is dark.
    let last = frames[16].buffer();
    let dark = last
        .pixels()
        .filter(|p| p.0[..3].iter().all(|&c| c < 64))
        .count();
    assert!(
        dark * 2 > (64 * 64) as usize,
        "{dark} of 4096 pixels dark for a black background"
    );
}

/// Runs `cmd`, which must succeed; its stdout.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "expected failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn writes_a_gif_and_png_frames_with_timings() {
    let tmp = out_dir("ok");
    let dir = tmp.path();
    let gif = dir.join("clip.gif");
    let out = generate()
        .args([
            "--prompt",
            "a red circle moves to the left",
            "--steps",
            "2",
            "--timings",
            "--out",
        ])
        .arg(&gif)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("text encoder") && stdout.contains("DiT") && stdout.contains("VAE"),
        "{stdout}"
    );
    let img = image::open(&gif).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    // Same seed, same clip; PNG folder output.
    let frames = dir.join("frames");
    generate()
        .args([
            "--prompt",
            "a red circle moves to the left",
            "--steps",
            "2",
            "--out",
        ])
        .arg(&frames)
        .assert()
        .success();
    assert!(frames.join("frame_0008.png").exists());
}

#[test]
fn decoder_flag_picks_the_decoder_and_names_a_missing_light_one() {
    let tmp = out_dir("decoder");
    let dir = tmp.path();
    let gif = dir.join("clip.gif");
    let stdout = stdout_of(
        generate_default()
            .args([
                "--prompt",
                "A small blue square moves up.",
                "--decoder",
                "full",
            ])
            .args(["--timings", "--out"])
            .arg(&gif),
    );
    assert!(stdout.contains("(full VAE)"), "{stdout}");

    // The bundled world has a decoder-light/: without --decoder it is the one that runs.
    let stdout = stdout_of(
        generate_default()
            .args([
                "--prompt",
                "A small blue square moves up.",
                "--timings",
                "--out",
            ])
            .arg(&gif),
    );
    assert!(stdout.contains("(light decoder)"), "{stdout}");

    // tiny-random has no decoder-light/: asking for it names the folder and the channels.
    let err = stderr_of(
        generate()
            .args([
                "--prompt",
                "a red circle",
                "--steps",
                "1",
                "--decoder",
                "light",
                "--out",
            ])
            .arg(&gif),
    );
    assert!(
        err.contains("decoder-light") && err.contains("4 latent channels"),
        "{err}"
    );
    let err = stderr_of(
        generate()
            .args(["--prompt", "a red circle", "--decoder", "fast", "--out"])
            .arg(&gif),
    );
    assert!(err.contains("--decoder") && err.contains("fast"), "{err}");
}

#[test]
fn config_file_sets_options_and_flags_win() {
    let tmp = out_dir("config");
    let dir = tmp.path();
    let cfg = dir.join("gen.toml");
    std::fs::write(
        &cfg,
        "steps = 1\nheight = 32\nwidth = 48\nframes = 5\nseed = 3\n",
    )
    .unwrap();
    let gif = dir.join("c.gif");
    generate()
        .args(["--prompt", "a blue square", "--width", "32", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&gif)
        .assert()
        .success();
    let img = image::open(&gif).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));

    std::fs::write(&cfg, "stepz = 1\n").unwrap();
    let err = stderr_of(
        generate()
            .args(["--prompt", "x", "--out", "x.gif", "--config"])
            .arg(&cfg),
    );
    assert!(err.contains("gen.toml") && err.contains("stepz"), "{err}");
}

#[test]
fn bad_input_is_named() {
    let tmp = out_dir("bad");
    let dir = tmp.path();
    let gif = dir.join("c.gif");
    let run = |args: &[&str]| stderr_of(generate().args(args).arg("--out").arg(&gif));

    let err = run(&["--prompt", "   "]);
    assert!(err.contains("prompt") && err.contains("empty"), "{err}");

    let err = run(&["--prompt", "a red circle", "--height", "60"]);
    assert!(
        err.contains("height = 60") && err.contains("multiple of 16"),
        "{err}"
    );

    let err = run(&["--prompt", "a red circle", "--frames", "10"]);
    assert!(err.contains("frames = 10") && err.contains("4k+1"), "{err}");

    let err = stderr_of(
        generate_default()
            .args([
                "--prompt",
                "a red circle",
                "--model",
                "/nonexistent/model",
                "--out",
            ])
            .arg(&gif),
    );
    assert!(err.contains("/nonexistent/model"), "{err}");

    let err = stderr_of(
        generate()
            .args(["--prompt", "a red circle", "--steps", "1", "--out"])
            .arg(dir.join("c.avi")),
    );
    assert!(err.contains("c.avi") && err.contains(".gif"), "{err}");

    #[cfg(not(feature = "mp4"))]
    {
        let err = stderr_of(
            generate()
                .args(["--prompt", "a red circle", "--steps", "1", "--out"])
                .arg(dir.join("c.mp4")),
        );
        assert!(err.contains("--features mp4"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    {
        let err = run(&["--prompt", "a red circle", "--device", "cuda"]);
        assert!(err.contains("--features cuda"), "{err}");
    }
}

/// A student directory made from the bundled model: its files plus `student/` (a fresh student,
/// H = 1, sampling 1 x 2 steps by default), as `model/` in a scratch folder removed when the
/// returned guard drops.
fn student_dir(name: &str) -> (TempDir, PathBuf) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random");
    let tmp = out_dir(name);
    let dir = tmp.path().join("model");
    copy(&root, &dir);
    type B = burn::backend::NdArray;
    let device = Default::default();
    let teacher = tmd_model::model_dir::ModelDir::open(&dir)
        .unwrap()
        .load_transformer::<B>(&device)
        .unwrap();
    let head = tmd_flowhead::FlowHeadConfig::paper(1);
    let student = tmd_flowhead::TmdStudent::from_teacher(teacher, &head).unwrap();
    let defaults = tmd_flowhead::StudentDefaults {
        outer_steps: 1,
        inner_steps: 2,
        ..Default::default()
    };
    tmd_flowhead::save_student(
        &dir,
        &student,
        &tmd_flowhead::StudentManifest {
            method: tmd_flowhead::StudentMethod::Tmd { head },
            defaults,
            source: "test".into(),
        },
    )
    .unwrap();
    (tmp, dir)
}

#[test]
fn a_student_directory_samples_the_student_unless_asked_for_the_teacher() {
    let (_tmp, model) = student_dir("student");
    let gif = model.parent().unwrap().join("clip.gif");
    let out = generate_default()
        .arg("--model")
        .arg(&model)
        .args([
            "--prompt",
            "a red circle moves to the left",
            "--timings",
            "--out",
        ])
        .arg(&gif)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("TMD student"), "{stderr}");
    // 1 outer step, N = 2, H = 1 of the bundled model's 2 blocks: 1.5 full DiT passes.
    assert!(String::from_utf8_lossy(&out.stdout).contains("effective NFE 1.50"));
    assert!(gif.is_file());

    let err = stderr_of(
        generate_default()
            .arg("--model")
            .arg(&model)
            .args(["--prompt", "a red circle", "--steps", "2", "--out"])
            .arg(&gif),
    );
    assert!(err.contains("--steps applies to the teacher"), "{err}");

    let out = generate_default()
        .arg("--model")
        .arg(&model)
        .args([
            "--prompt",
            "a red circle",
            "--teacher",
            "--steps",
            "2",
            "--out",
        ])
        .arg(&gif)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("teacher"),
        "{stderr}"
    );

    let err = stderr_of(generate().args([
        "--prompt",
        "a red circle",
        "--outer-steps",
        "1",
        "--out",
        gif.to_str().unwrap(),
    ]));
    assert!(err.contains("need a distilled student"), "{err}");
}
