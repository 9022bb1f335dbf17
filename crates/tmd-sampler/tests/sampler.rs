//! The public `Sampler` on the bundled tiny model: the teacher without a student, the student
//! (TMD and DMD2-v) when the directory holds one, and options that do not apply refused by name.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use tmd_sampler::{SampleOptions, Sampler, SamplerError};

type B = NdArray;

const PROMPT: &str = "A small red circle moves to the left on a black background.";

fn bundled() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random")
}

fn copy(from: &Path, to: &Path) {
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

/// A copy of the bundled model with a student of `method` saved into it.
fn with_student(root: &Path, method: tmd_flowhead::StudentMethod) -> PathBuf {
    let dir = root.join("model");
    copy(&bundled(), &dir);
    let device = Default::default();
    let teacher = tmd_model::model_dir::ModelDir::open(&dir)
        .unwrap()
        .load_transformer::<B>(&device)
        .unwrap();
    let defaults = tmd_flowhead::StudentDefaults {
        outer_steps: 2,
        inner_steps: 2,
        ..Default::default()
    };
    let manifest = tmd_flowhead::StudentManifest {
        method: method.clone(),
        defaults,
        source: "test".into(),
    };
    match method {
        tmd_flowhead::StudentMethod::Tmd { head } => {
            let student = tmd_flowhead::TmdStudent::from_teacher(teacher, &head).unwrap();
            tmd_flowhead::save_student(&dir, &student, &manifest).unwrap();
        }
        tmd_flowhead::StudentMethod::Dmd2V => {
            tmd_flowhead::save_student(&dir, &teacher, &manifest).unwrap();
        }
    }
    dir
}

#[test]
fn a_directory_without_student_samples_the_teacher_with_overrides() {
    let device = Default::default();
    let sampler = Sampler::<B>::load(bundled(), &device).unwrap();
    assert_eq!(sampler.kind(), "teacher");
    let opts = SampleOptions {
        steps: Some(2),
        seed: 3,
        ..Default::default()
    };
    let (video, timings) = sampler
        .generate_timed(PROMPT, &opts, &mut |_, _| {})
        .unwrap();
    assert!(video.num_frames() > 0);
    assert_eq!(timings.dit_evaluations, 4); // 2 steps x (cond + uncond)
    let again = sampler.generate(PROMPT, &opts).unwrap();
    assert_eq!(again.frames, video.frames, "same seed, same clip");

    let err = sampler
        .generate(
            PROMPT,
            &SampleOptions {
                inner_steps: Some(2),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(
        err,
        SamplerError::OptionNotApplicable {
            option: "inner_steps",
            ..
        }
    ));
    assert!(matches!(
        sampler.generate("  ", &opts).unwrap_err(),
        SamplerError::EmptyPrompt
    ));
}

#[test]
fn students_are_sampled_by_default_and_refuse_cfg() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let tmd = with_student(
        &tmp.path().join("tmd"),
        tmd_flowhead::StudentMethod::Tmd {
            head: tmd_flowhead::FlowHeadConfig::paper(1),
        },
    );
    let sampler = Sampler::<B>::load(&tmd, &device).unwrap();
    assert_eq!(sampler.kind(), "TMD student");
    let opts = SampleOptions {
        steps: Some(1),
        inner_steps: Some(3),
        ..Default::default()
    };
    let (_, timings) = sampler
        .generate_timed(PROMPT, &opts, &mut |_, _| {})
        .unwrap();
    assert_eq!(timings.dit_evaluations, 4); // 1 backbone + 3 head passes
    let cfg = SampleOptions {
        guidance: Some(5.0),
        ..Default::default()
    };
    let err = sampler.generate(PROMPT, &cfg).unwrap_err().to_string();
    assert!(
        err.contains("guidance") && err.contains("TMD student"),
        "{err}"
    );
    assert_eq!(
        Sampler::<B>::load_teacher(&tmd, &device).unwrap().kind(),
        "teacher"
    );

    let dmd = with_student(&tmp.path().join("dmd"), tmd_flowhead::StudentMethod::Dmd2V);
    let sampler = Sampler::<B>::load(&dmd, &device).unwrap();
    assert_eq!(sampler.kind(), "DMD2-v student");
    let (_, timings) = sampler
        .generate_timed(PROMPT, &SampleOptions::default(), &mut |_, _| {})
        .unwrap();
    assert_eq!((timings.dit_evaluations, timings.effective_nfe), (2, 2.0));
    let err = sampler.generate(PROMPT, &opts).unwrap_err().to_string();
    assert!(
        err.contains("inner_steps") && err.contains("DMD2-v"),
        "{err}"
    );
}

#[test]
fn the_light_decoder_is_the_default_when_the_directory_has_one() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = with_student(
        &tmp.path().join("tmd"),
        tmd_flowhead::StudentMethod::Tmd {
            head: tmd_flowhead::FlowHeadConfig::paper(1),
        },
    );
    let opts = SampleOptions {
        steps: Some(1),
        inner_steps: Some(1),
        frames: Some(5),
        ..Default::default()
    };
    // Without decoder-light/: the full VAE by default, and asking for the light one is an error
    // that names the folder and the latent channels it must take.
    let sampler = Sampler::<B>::load(&dir, &device).unwrap();
    let (full, timings) = sampler
        .generate_timed(PROMPT, &opts, &mut |_, _| {})
        .unwrap();
    assert_eq!(timings.decoder, tmd_sampler::DecoderKind::Full);
    let light_opts = SampleOptions {
        decoder: Some(tmd_sampler::DecoderKind::Light),
        ..opts.clone()
    };
    let err = sampler
        .generate(PROMPT, &light_opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder-light") && err.contains("4 latent channels"),
        "{err}"
    );

    // With one: light by default (and said so in the timings), full on request.
    let config = tmd_model::light_decoder::LightDecoderConfig::tiny();
    tmd_model::model_dir::save_light_decoder(&dir, &config.init::<B>(&device), &config).unwrap();
    let sampler = Sampler::<B>::load(&dir, &device).unwrap();
    let (light, timings) = sampler
        .generate_timed(PROMPT, &opts, &mut |_, _| {})
        .unwrap();
    assert_eq!(timings.decoder, tmd_sampler::DecoderKind::Light);
    assert!(timings.to_string().contains("light decoder"));
    assert_eq!(light.num_frames(), 5);
    assert_eq!((light.width, light.height), (full.width, full.height));
    assert_ne!(
        light.frames, full.frames,
        "a random light decoder is not the VAE"
    );
    let full_opts = SampleOptions {
        decoder: Some(tmd_sampler::DecoderKind::Full),
        ..opts
    };
    let again = sampler.generate(PROMPT, &full_opts).unwrap();
    assert_eq!(again.frames, full.frames);
}
