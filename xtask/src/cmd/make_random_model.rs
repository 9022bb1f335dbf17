//! `cargo xtask make-random-model`: a model directory with random weights at a preset's shapes,
//! optionally with a random student, for measuring what a user waits for (`tmd-cli generate
//! --timings` on a Wan2.1-1.3B-shaped student, `scripts/gpu/clip_bench.sh`) without the official
//! weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::*;
use clap::ValueEnum;
use tmd_flowhead::{
    save_student, FlowHeadConfig, StudentDefaults, StudentManifest, StudentMethod, TmdStudent,
};
use tmd_model::random::{make_random_model_dir, RandomModelSpec};

use crate::common::DeviceKind;

/// Which student to add to the random model directory.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomStudent {
    /// The teacher only.
    None,
    /// A TMD student: backbone of `L - H` blocks and a flow head of `H` (`--head-blocks`).
    Tmd,
    /// A DMD2-v student (a plain DiT of the teacher's shape).
    Dmd2v,
}

/// Arguments of `make-random-model`.
#[derive(clap::Args, Debug)]
pub struct MakeRandomArgs {
    /// Output model directory (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Shapes and sampling defaults: `tiny` or `wan2.1-t2v-1.3b` (DiT 1.3B, Wan2.1 VAE,
    /// umT5-XXL; 480x832, 81 frames; stored as bf16).
    #[arg(long, default_value = "wan2.1-t2v-1.3b")]
    pub preset: String,
    /// Student to add beside the teacher.
    #[arg(long, value_enum, default_value_t = RandomStudent::Tmd)]
    pub student: RandomStudent,
    /// `H`, flow-head blocks of a TMD student (the paper's 1.3B students: 5).
    #[arg(long, default_value_t = 5)]
    pub head_blocks: usize,
    /// `M`, the student's default outer steps.
    #[arg(long, default_value_t = 2)]
    pub outer_steps: usize,
    /// `N`, a TMD student's default flow-head steps.
    #[arg(long, default_value_t = 2)]
    pub inner_steps: usize,
    /// Also write a random light decoder (`decoder-light/`) of this preset (`wan2.1`, `world`,
    /// `tiny`; tmd_model::light_decoder), so that `generate --decoder light` can be timed.
    #[arg(long)]
    pub light_decoder: Option<String>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// tokenizer.json to ship with it (any umT5-style tokenizer; the embedding keeps the preset's
    /// row count when it has more rows than the tokenizer has ids).
    #[arg(long, default_value = "tests/fixtures/t5/tokenizer/tokenizer.json")]
    pub tokenizer: PathBuf,
}

/// Writes the directory on `device` (initialising a Wan-sized model is quick on a GPU).
pub fn make<B: Backend>(args: &MakeRandomArgs, device: &B::Device) -> Result<()> {
    if args.out.exists() {
        anyhow::bail!(
            "--out {} already exists: make-random-model writes a new directory and never replaces one",
            args.out.display()
        );
    }
    let spec = RandomModelSpec::preset(&args.preset, args.seed)
        .with_context(|| format!("--preset {}", args.preset))?;
    let manifest = make_random_model_dir::<B>(&args.out, &spec, &args.tokenizer, device)
        .with_context(|| format!("writing random model directory {}", args.out.display()))?;
    eprintln!(
        "wrote {} (teacher: DiT {} blocks, weights stored as {})",
        args.out.display(),
        spec.dit.num_layers,
        manifest.dtype
    );
    if args.student != RandomStudent::None {
        write_student::<B>(&args.out, &spec, args, device)?;
    }
    if let Some(preset) = &args.light_decoder {
        let config = tmd_model::light_decoder::LightDecoderConfig::preset(preset)
            .with_context(|| format!("--light-decoder {preset}"))?;
        B::seed(device, args.seed.wrapping_add(2));
        tmd_model::model_dir::save_light_decoder(&args.out, &config.init::<B>(device), &config)
            .context("writing the light decoder")?;
        eprintln!("wrote {}/decoder-light ({preset})", args.out.display());
    }
    Ok(())
}

/// A random student of `spec`'s teacher shape (its own seed), in `dir/student/`.
fn write_student<B: Backend>(
    dir: &Path,
    spec: &RandomModelSpec,
    args: &MakeRandomArgs,
    device: &B::Device,
) -> Result<()> {
    B::seed(device, args.seed.wrapping_add(1));
    let dit = tmd_model::dtype::cast_float_params(spec.dit.init::<B>(device), spec.storage);
    let defaults = StudentDefaults {
        outer_steps: args.outer_steps,
        inner_steps: args.inner_steps,
        ..StudentDefaults::default()
    };
    let source = format!(
        "random weights (seed {}), written by `cargo xtask make-random-model`",
        args.seed
    );
    match args.student {
        RandomStudent::Tmd => {
            let head = FlowHeadConfig::paper(args.head_blocks);
            let student = TmdStudent::from_teacher(dit, &head)
                .with_context(|| format!("--head-blocks {}", args.head_blocks))?;
            let student = tmd_model::dtype::cast_float_params(student, spec.storage);
            let manifest = StudentManifest {
                method: StudentMethod::Tmd { head },
                defaults,
                source,
            };
            save_student(dir, &student, &manifest).context("writing the student")?;
        }
        RandomStudent::Dmd2v => {
            let manifest = StudentManifest {
                method: StudentMethod::Dmd2V,
                defaults,
                source,
            };
            save_student(dir, &dit, &manifest).context("writing the student")?;
        }
        RandomStudent::None => {}
    }
    eprintln!("wrote {}/student ({:?})", dir.display(), args.student);
    Ok(())
}

/// Arguments of `make-random-model` (its help text is the doc comment of
/// `Command::MakeRandomModel`).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    args: MakeRandomArgs,
    /// Backend that initialises the weights (a GPU makes a Wan-sized model in seconds).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `make-random-model`.
pub fn run(args: Args) -> Result<()> {
    let Args { args, device } = args;
    on_backend!(device, B, dev => make::<B>(&args, &dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny preset with a TMD student loads back through the sampler and generates.
    #[test]
    fn tiny_random_student_directory_loads_and_samples() {
        let tmp = tempfile::Builder::new()
            .prefix("tmd-make-random-")
            .tempdir()
            .unwrap();
        let args = MakeRandomArgs {
            out: tmp.path().join("m"),
            preset: "tiny".into(),
            student: RandomStudent::Tmd,
            head_blocks: 1,
            outer_steps: 1,
            inner_steps: 2,
            light_decoder: Some("tiny".into()),
            seed: 3,
            tokenizer: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/t5/tokenizer/tokenizer.json"),
        };
        type B = burn::backend::NdArray;
        make::<B>(&args, &Default::default()).unwrap();
        assert!(
            make::<B>(&args, &Default::default()).is_err(),
            "an existing --out is refused"
        );
        let pipe = tmd_sampler::StudentPipeline::<B>::load(&args.out, &Default::default()).unwrap();
        let mut o = pipe.options("a red circle");
        o.frames = 5;
        let (video, timings) = pipe.generate(&o, &mut |_, _| {}).unwrap();
        assert_eq!(video.num_frames(), 5);
        assert_eq!(timings.decoder, tmd_sampler::DecoderKind::Light);
    }
}
