//! Stage 2 end to end (`cargo xtask distill`): read the previous stage's directory and the
//! teacher data, build the models, run the optional KD warm-up and stage 2 with resumable
//! checkpoints, and write the distilled student beside its teacher.
//!
//! - TMD: the input is stage 1's output (`cargo xtask adapt-head`), whose `student/` is the
//!   starting student and whose `transformer/` is the teacher.
//! - DMD2-v baseline: the input is the teacher's directory; the student starts as a copy of the
//!   teacher, optionally warmed up by KD ([`super::kd`]) for the 1-step version.
//!
//! The student is written into `out/student/` (a copy of the input directory otherwise), with
//! sampling defaults taken from the trained `M`, `N` and grids, so `generate --model out` samples
//! what was trained.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_flowhead::{Student, StudentDefaults, StudentManifest, StudentMethod, TmdStudent};
use tmd_model::dit::WanModel;
use tmd_model::model_dir::ModelDir;

use super::discriminator::DiscriminatorConfig;
use super::kd::{kd_warmup, KdBatch, KdConfig};
use super::stage2::{distill, Stage2Config, Stage2Models};
use crate::adapt_head::{copy_model_dir, AdaptHeadBatch};
use crate::latent_cache::LatentCache;
use crate::teacher_data::{clip_noise, sampling_of};
use crate::train::data_parallel::{is_writer, on_rank_zero, seeded_init};
use crate::train::rng::{init_seed, picks};
use crate::train::run::PretrainReport;
use crate::train::TrainError;

/// Which student stage 2 trains.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// TMD: the stage-1 student, generator = backbone + flow-head rollout.
    #[default]
    Tmd,
    /// The DMD2-v baseline: a copy of the teacher, one pass per step.
    Dmd2V,
}

/// The discriminator's settings in a recipe (its width is the teacher's).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct DiscriminatorSettings {
    /// Teacher blocks (0-based) whose features are judged; empty: the paper's blocks for 30 and
    /// 40-block teachers, otherwise `L/2, 3L/4, L-1` (the paper's fractions, inferred).
    pub feature_blocks: Vec<usize>,
    /// Channels of each head (default 256).
    pub hidden: Option<usize>,
}

impl DiscriminatorSettings {
    /// The discriminator for a teacher of `blocks` blocks of width `dim`.
    ///
    /// # Errors
    /// A feature block out of range (named).
    pub fn config(&self, dim: usize, blocks: usize) -> Result<DiscriminatorConfig, TrainError> {
        let chosen = if !self.feature_blocks.is_empty() {
            self.feature_blocks.clone()
        } else {
            match blocks {
                30 => DiscriminatorConfig::wan_1_3b().feature_blocks,
                40 => DiscriminatorConfig::wan_14b().feature_blocks,
                l => {
                    let mut b = vec![l / 2, 3 * l / 4, l.saturating_sub(1)];
                    b.dedup();
                    b
                }
            }
        };
        if let Some(&bad) = chosen.iter().find(|&&b| b >= blocks) {
            return Err(TrainError::Config {
                file: None,
                key: Some("discriminator.feature_blocks".into()),
                message: format!("block {bad} out of range: the teacher has {blocks} blocks"),
            });
        }
        let mut c = DiscriminatorConfig::new(dim, chosen);
        if let Some(h) = self.hidden {
            c = c.with_hidden(h);
        }
        Ok(c)
    }
}

/// Everything `cargo xtask distill` reads from its config file: `method`, `[train]` (stage 2),
/// `[discriminator]`, `[kd]` (DMD2-v only).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct DistillRecipe {
    /// `tmd` or `dmd2-v`.
    pub method: Method,
    /// Stage 2.
    pub train: Stage2Config,
    /// The discriminator.
    pub discriminator: DiscriminatorSettings,
    /// The KD warm-up (DMD2-v only; `kd.steps = 0` skips it).
    pub kd: KdConfig,
}

/// What [`run_distill`] did.
#[derive(Debug, Clone)]
pub struct DistillReport {
    /// The KD warm-up (`None` if skipped).
    pub kd: Option<PretrainReport>,
    /// Stage 2.
    pub stage2: PretrainReport,
}

fn data_err(message: impl Into<String>) -> TrainError {
    TrainError::Data {
        step: 0,
        message: message.into(),
    }
}

/// Stage 2 end to end: copy `input` to `out`, train the student of `recipe.method` on the clips
/// of the latent cache `data` (teacher data; for KD it must be, since KD needs each clip's noise),
/// checkpoint under `run_dir` (`kd/` and `stage2/`), and write the student into `out`.
///
/// # Errors
/// Missing or corrupt inputs (named), a TMD run whose input holds no TMD student, training
/// errors.
pub fn run_distill<B: AutodiffBackend>(
    recipe: &DistillRecipe,
    input: &Path,
    data: &Path,
    run_dir: &Path,
    out: &Path,
    source: &str,
    device: &B::Device,
) -> Result<(Student<B>, DistillReport), TrainError> {
    let cache = LatentCache::open(data)?;
    if cache.is_empty() {
        return Err(data_err(format!("{} holds no clips", data.display())));
    }
    let config = &recipe.train;
    let (tmd_student, head) = match recipe.method {
        Method::Tmd => {
            let (mut student, manifest) = tmd_flowhead::load_tmd_student::<B>(input, device)
                .map_err(|e| {
                    data_err(format!(
                        "{}: a TMD distillation starts from stage 1's student \
                         (`cargo xtask adapt-head`): {e}",
                        input.display()
                    ))
                })?;
            // The run's precision policy, like the teacher's and the critics' below.
            student.dit = student.dit.with_precision(config.precision);
            (Some(student), Some(manifest.method))
        }
        Method::Dmd2V => (None, None),
    };
    on_rank_zero::<B::InnerBackend>(device, || copy_model_dir(input, out))?;
    let dir = ModelDir::open(out)?;
    let dit_config = dir.transformer_config()?;
    let text = dir.load_text_encoder::<B::InnerBackend>(device)?;
    let negative = text.encode_cached_batch(&[dir.defaults().negative_prompt.as_str()], true)?;
    let teacher = dir
        .load_transformer::<B>(device)?
        .with_precision(config.precision)
        .no_grad();
    let disc = recipe
        .discriminator
        .config(dit_config.dim, dit_config.num_layers)?;
    let grids = tmd_sampler::TmdGrids::new(
        config.outer_steps,
        config.inner_steps,
        config.outer_shift,
        config.inner_shift,
    )
    .map_err(|e| data_err(e.to_string()))?;

    let context_of = |captions: &[String]| -> Result<Tensor<B, 3>, TrainError> {
        let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
        Ok(Tensor::from_inner(text.encode_cached_batch(&refs, false)?))
    };

    let fresh_models = |student| init_models(student, &teacher, &disc, config.seed, device);
    let (models, kd_report) = match tmd_student {
        Some(student) => (fresh_models(Some(student)), None),
        None => {
            let mut models = fresh_models(None);
            let mut kd_report = None;
            if recipe.kd.steps > 0 {
                let kd = recipe.kd_config();
                let sampling = sampling_of(&cache, data)?;
                let shape = cache.index().latent_shape;
                let student = models.dmd.take().expect("for_dmd holds a student");
                let (student, report) =
                    kd_warmup(student, &kd, grids.outer[0], &run_dir.join("kd"), |step| {
                        let idx = kd_picks(&kd, step, cache.len());
                        let (target, captions) = cache.batch::<B::InnerBackend>(&idx, device);
                        let noise = Tensor::cat(
                            idx.iter()
                                .map(|&i| clip_noise::<B>(&sampling, shape, i, device))
                                .collect(),
                            0,
                        );
                        Ok(KdBatch {
                            noise,
                            target: Tensor::from_inner(target),
                            context: context_of(&captions)?,
                        })
                    })?;
                models.dmd = Some(student);
                kd_report = Some(report);
            }
            (models, kd_report)
        }
    };

    let (models, report) = distill(
        models,
        &teacher,
        config,
        &run_dir.join("stage2"),
        Tensor::from_inner(negative),
        |step| {
            let idx = data_picks(config, step, cache.len());
            let (latents, captions) = cache.batch::<B::InnerBackend>(&idx, device);
            Ok(AdaptHeadBatch {
                latents: Tensor::from_inner(latents),
                context: context_of(&captions)?,
            })
        },
    )?;

    let defaults = StudentDefaults {
        outer_steps: config.outer_steps,
        inner_steps: config.inner_steps,
        outer_shift: config.outer_shift,
        inner_shift: config.inner_shift,
    };
    let student_err = |e: tmd_flowhead::FlowHeadError| data_err(e.to_string());
    // In a data-parallel run rank 0 writes the student; every rank returns it.
    let student = match (models.tmd, models.dmd) {
        (Some(s), _) => {
            let manifest = StudentManifest {
                method: head.expect("a TMD run read its stage-1 manifest"),
                defaults,
                source: source.to_string(),
            };
            if is_writer() {
                tmd_flowhead::save_student(out, &s, &manifest).map_err(student_err)?;
            }
            Student::Tmd(s)
        }
        (None, Some(d)) => {
            let manifest = StudentManifest {
                method: StudentMethod::Dmd2V,
                defaults: StudentDefaults {
                    inner_steps: 1,
                    ..defaults
                },
                source: source.to_string(),
            };
            if is_writer() {
                tmd_flowhead::save_student(out, &d, &manifest).map_err(student_err)?;
            }
            Student::Dmd2V(d)
        }
        (None, None) => return Err(data_err("stage 2 ended without a student")),
    };
    Ok((
        student,
        DistillReport {
            kd: kd_report,
            stage2: report,
        },
    ))
}

impl DistillRecipe {
    /// The KD warm-up's settings as run: `kd`, drawing from the run's one seed, `train.seed`.
    pub fn kd_config(&self) -> KdConfig {
        KdConfig {
            seed: self.train.seed,
            ..self.kd.clone()
        }
    }
}

/// The models stage 2 starts from: `student` (TMD's, from stage 1) or, without one, the DMD2-v
/// student (a copy of `teacher`); the fake score a copy of `teacher`; the discriminator fresh, its
/// parameters drawn from the run's `seed` (a stream of its own), the same on any number of ranks.
pub fn init_models<B: AutodiffBackend>(
    student: Option<TmdStudent<B>>,
    teacher: &WanModel<B>,
    disc: &DiscriminatorConfig,
    seed: u64,
    device: &B::Device,
) -> Stage2Models<B> {
    seeded_init(|| {
        B::seed(device, init_seed(seed, STREAM_CRITICS));
        match student {
            Some(student) => Stage2Models::with_tmd_student(student, teacher, disc, device),
            None => Stage2Models::for_dmd(teacher, disc, device),
        }
    })
}

/// The data order of stage 2: the indices (of `len` clips) of iteration `step`'s batch, a function
/// of the run's seed and the step only.
pub fn data_picks(config: &Stage2Config, step: u64, len: usize) -> Vec<usize> {
    picks(config.seed, step, STREAM_DATA, config.batch, len)
}

/// The data order of the KD warm-up ([`DistillRecipe::kd_config`]'s seed): the indices (of `len`
/// teacher pairs) of step `step`'s batch.
pub fn kd_picks(kd: &KdConfig, step: u64, len: usize) -> Vec<usize> {
    picks(kd.seed, step, STREAM_KD, kd.batch, len)
}

const STREAM_DATA: u64 = 26;
const STREAM_KD: u64 = 27;
const STREAM_CRITICS: u64 = 28;
