//! Teacher data generation (TMD.md, "Stage 2", Data): prompt / latent pairs sampled by the
//! teacher, stored once as a [`LatentCache`].
//!
//! They are the "real" data of stage 2 (the generator's noisy inputs and the discriminator's real
//! samples are built from them) and, because each clip's initial noise is a pure function of
//! `(seed, clip)` ([`noise_seed`]), also the noise -> data pairs of the DMD2-v KD warm-up
//! ([`crate::distill::kd`]).
//!
//! Clip `i` is the teacher's sample (`steps` solver steps, CFG `guidance` against the negative
//! prompt, shift `shift`) for `prompts[i % prompts.len()]` from the noise [`clip_noise`]`(i)`.
//! Chunks of clips are sampled together (one batched DiT pass per step) and written atomically,
//! so an interrupted run resumes at the first missing chunk.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_sampler::noise::gaussian;
use tmd_sampler::pipeline::{teacher_sample, Solver, TeacherPipeline};
use tmd_sampler::FlowSchedule;

use crate::latent_cache::{LatentCache, LatentCacheIndex, LatentSource};
use crate::train::TrainError;

/// Settings of `cargo xtask teacher-data` (read with [`crate::train::load_stage_config`]);
/// unset sampling values come from the teacher directory's defaults.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct TeacherDataConfig {
    /// Clips to generate (paper: 500k prompt/video pairs from Wan2.1 14B).
    pub clips: usize,
    /// Clips sampled together and stored per chunk file.
    pub chunk: usize,
    /// Seed of the clips' initial noise.
    pub seed: u64,
    /// Solver steps (default: the teacher's).
    pub steps: Option<usize>,
    /// CFG scale (default: the teacher's).
    pub guidance: Option<f64>,
    /// Time shift (default: the teacher's).
    pub shift: Option<f64>,
    /// `unipc` or `euler`.
    pub solver: String,
    /// Clip frames (default: the teacher's).
    pub frames: Option<usize>,
    /// Clip height in pixels (default: the teacher's).
    pub height: Option<usize>,
    /// Clip width in pixels (default: the teacher's).
    pub width: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for TeacherDataConfig {
    fn default() -> Self {
        Self {
            clips: 1024,
            chunk: 16,
            seed: 0,
            steps: None,
            guidance: None,
            shift: None,
            solver: "unipc".into(),
            frames: None,
            height: None,
            width: None,
            progress: true,
        }
    }
}

/// How the clips of a teacher-data cache were sampled (stored in its index: a cache sampled
/// otherwise is refused, not reused).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TeacherSampling {
    /// The teacher's model directory (canonical path).
    pub teacher: String,
    /// Solver steps.
    pub steps: usize,
    /// CFG scale.
    pub guidance: f64,
    /// Time shift.
    pub shift: f64,
    /// `unipc` or `euler`.
    pub solver: String,
    /// Seed of the clips' initial noise ([`noise_seed`]).
    pub seed: u64,
    /// `[frames, height, width]` of the clips in pixels.
    pub clip_size: [usize; 3],
    /// Number of distinct prompts cycled through.
    pub prompts: usize,
}

/// Seed of the initial noise of clip `i` of a teacher-data set seeded with `seed`.
pub fn noise_seed(seed: u64, i: usize) -> u64 {
    crate::train::rng::step_seed(seed, i as u64, STREAM_NOISE)
}

/// The initial noise of clip `i`: what the teacher started from to produce clip `i`.
///
/// # Shapes
/// - `latent_shape`: `[z, frames, height, width]`; output: `[1, z, frames, height, width]`
pub fn clip_noise<B: Backend>(
    sampling: &TeacherSampling,
    latent_shape: [usize; 4],
    i: usize,
    device: &B::Device,
) -> Tensor<B, 5> {
    let [z, f, h, w] = latent_shape;
    gaussian::<B, 5>([1, z, f, h, w], noise_seed(sampling.seed, i), device)
}

/// The sampling settings of `config` for the teacher `pipe` (directory defaults filled in).
///
/// # Errors
/// An unknown solver name.
pub fn teacher_sampling<B: Backend>(
    pipe: &TeacherPipeline<B>,
    teacher_dir: &Path,
    config: &TeacherDataConfig,
    prompts: usize,
) -> Result<TeacherSampling, TrainError> {
    let d = pipe.dir.defaults();
    let solver: Solver = config
        .solver
        .parse()
        .map_err(|e: String| TrainError::Config {
            file: None,
            key: Some("solver".into()),
            message: e,
        })?;
    let teacher = std::fs::canonicalize(teacher_dir).unwrap_or_else(|_| teacher_dir.to_path_buf());
    Ok(TeacherSampling {
        teacher: teacher.display().to_string(),
        steps: config.steps.unwrap_or(d.steps),
        guidance: config.guidance.unwrap_or(d.guidance),
        shift: config.shift.unwrap_or(d.shift),
        solver: format!("{solver:?}").to_lowercase(),
        seed: config.seed,
        clip_size: [
            config.frames.unwrap_or(d.frames),
            config.height.unwrap_or(d.height),
            config.width.unwrap_or(d.width),
        ],
        prompts,
    })
}

/// Generates (or resumes, or loads) the teacher data in `dir`: `config.clips` clips of the
/// teacher `pipe` (loaded from `teacher_dir`) for `prompts`, cycled.
///
/// # Errors
/// No prompt or an empty one (named by line), a bad clip size, a cache in `dir` sampled otherwise
/// (named), model and I/O errors.
pub fn generate_teacher_data<B: Backend>(
    dir: &Path,
    pipe: &TeacherPipeline<B>,
    teacher_dir: &Path,
    prompts: &[String],
    config: &TeacherDataConfig,
    device: &B::Device,
) -> Result<LatentCache, TrainError> {
    if prompts.is_empty() {
        return Err(TrainError::Data {
            step: 0,
            message: "teacher data needs at least one prompt".into(),
        });
    }
    if let Some(i) = prompts.iter().position(|p| p.trim().is_empty()) {
        return Err(TrainError::Data {
            step: 0,
            message: format!("prompt {} is empty", i + 1),
        });
    }
    let sampling = teacher_sampling(pipe, teacher_dir, config, prompts.len())?;
    let [frames, height, width] = sampling.clip_size;
    let shape = pipe
        .latent_shape(frames, height, width)
        .map_err(|e| TrainError::Data {
            step: 0,
            message: e.to_string(),
        })?;
    let latent_shape = [shape[1], shape[2], shape[3], shape[4]];
    let captions: Vec<String> = (0..config.clips)
        .map(|i| prompts[i % prompts.len()].clone())
        .collect();
    let index = LatentCacheIndex {
        clips: config.clips,
        chunk: config.chunk.max(1),
        latent_shape,
        source: LatentSource::Teacher(sampling.clone()),
        captions: captions.clone(),
    };
    let solver: Solver = sampling.solver.parse().expect("validated above");
    let negative = pipe.dir.defaults().negative_prompt;
    let sampler_err = |e: tmd_sampler::SamplerError| TrainError::Data {
        step: 0,
        message: e.to_string(),
    };
    LatentCache::build_or_load(
        dir,
        index,
        config.progress,
        "sampling the teacher",
        |start, n| {
            let refs: Vec<&str> = captions[start..start + n]
                .iter()
                .map(String::as_str)
                .collect();
            let cond = pipe.text.encode_cached_batch(&refs, false)?;
            let guidance = if sampling.guidance != 1.0 {
                let uncond = pipe.text.encode_cached_batch(&[negative.as_str()], true)?;
                Some((uncond, sampling.guidance))
            } else {
                None
            };
            let noise = Tensor::cat(
                (start..start + n)
                    .map(|i| clip_noise::<B>(&sampling, latent_shape, i, device))
                    .collect(),
                0,
            );
            let schedule =
                FlowSchedule::wan_original(sampling.steps, sampling.shift).map_err(sampler_err)?;
            let (x, _) = teacher_sample(
                &pipe.dit,
                noise,
                cond,
                guidance,
                schedule,
                solver,
                &mut |_, _| {},
            )
            .map_err(sampler_err)?;
            Ok(x)
        },
    )
}

/// The sampling settings of a teacher-data cache, or an error naming it if it holds something
/// else (e.g. VAE-encoded real clips).
///
/// # Errors
/// A cache of another source.
pub fn sampling_of(cache: &LatentCache, dir: &Path) -> Result<TeacherSampling, TrainError> {
    match &cache.index().source {
        LatentSource::Teacher(s) => Ok(s.clone()),
        other => Err(TrainError::corrupt(
            dir.join(crate::latent_cache::INDEX),
            format!(
                "holds {other:?}, not teacher-generated pairs; make them with `cargo xtask \
                 teacher-data`"
            ),
        )),
    }
}

const STREAM_NOISE: u64 = 31;
