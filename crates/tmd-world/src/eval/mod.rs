//! Our small VBench: scores generated clips against their prompts with the world
//! [`classifier`](classifier::WorldClassifier).
//!
//! - **Prompt adherence** (`prompt_accuracy`): the classifier reads each generated clip; each of
//!   the five attributes the caption states counts as right or wrong; the score is the mean over
//!   attributes and clips.
//! - **Fidelity** (`frechet_distance`): the [`frechet`] distance between the classifier features
//!   of the generated clips and of real clips of the same attribute combinations (rendered with
//!   fresh seeds).
//! - **Speed** (`seconds_per_clip`): wall time of generation (text encoder, DiT, VAE) per clip.
//!
//! Clips are judged as the user gets them: the generated [`Video`]'s 8-bit frames, mapped back
//! to `[-1, 1]`.

pub mod classifier;
pub mod frechet;
pub mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_model::model_dir::{read_config, write_config};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};
use tmd_sampler::video::Video;

pub use classifier::{WorldClassifier, WorldClassifierConfig, HEADS};
pub use frechet::{frechet_distance, FeatureStats};
pub use report::{markdown_table, EvalReport, EvalRow, RowSpec};

use crate::{
    caption, parse_caption, render, AttributeKind, Attributes, ClipSpec, Split, WorldDataset,
};
use tmd_distill::train::TrainError;

/// A prompt to evaluate and the attributes it states.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCase {
    /// The caption given to the generator.
    pub caption: String,
    /// What it asks for.
    pub attributes: Attributes,
}

/// A line of a prompt file that the world cannot express.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unexpressible {
    /// 1-based line number.
    pub line: usize,
    /// The caption.
    pub caption: String,
    /// Why it was not understood.
    pub reason: String,
}

/// One caption per combination of `split` (the held-out split: 160), worded with the caption
/// templates (the template and wording of combination `i` are a function of `seed` and `i`).
pub fn split_prompts(split: Split, seed: u64) -> Vec<EvalCase> {
    split
        .combos()
        .into_iter()
        .enumerate()
        .map(|(i, attributes)| EvalCase {
            caption: caption(
                &attributes,
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            ),
            attributes,
        })
        .collect()
}

/// Reads a prompt file (one caption per line; blank lines and lines starting with `#` are
/// skipped). Captions whose attributes cannot all be parsed are returned separately with the
/// reason, never silently dropped.
pub fn load_prompts(path: &Path) -> Result<(Vec<EvalCase>, Vec<Unexpressible>), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut cases = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let caption = line.trim();
        if caption.is_empty() || caption.starts_with('#') {
            continue;
        }
        match parse_caption(caption) {
            Ok(attributes) => cases.push(EvalCase {
                caption: caption.to_string(),
                attributes,
            }),
            Err(e) => rejected.push(Unexpressible {
                line: i + 1,
                caption: caption.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    Ok((cases, rejected))
}

/// Every `k`-th case so that at most `limit` remain (spread over the list; `0` keeps all).
pub fn spread(cases: Vec<EvalCase>, limit: usize) -> Vec<EvalCase> {
    if limit == 0 || cases.len() <= limit {
        return cases;
    }
    let n = cases.len();
    (0..limit).map(|i| cases[i * n / limit].clone()).collect()
}

/// A generated video as a `[1, 3, frames, height, width]` tensor in `[-1, 1]` (`v / 127.5 - 1`).
pub fn video_to_tensor<B: Backend>(video: &Video, device: &B::Device) -> Tensor<B, 5> {
    let (f, h, w) = (video.frames.len(), video.height, video.width);
    let mut values = vec![0f32; 3 * f * h * w];
    for (t, frame) in video.frames.iter().enumerate() {
        for (p, rgb) in frame.chunks_exact(3).enumerate() {
            for (c, &v) in rgb.iter().enumerate() {
                values[(c * f + t) * h * w + p] = v as f32 / 127.5 - 1.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 3, f, h, w]), device)
}

/// What [`Judge::judge`] reads off a batch of clips: each clip's predicted class per attribute
/// head, and each clip's feature row (for the Frechet distance).
pub type Judged = (Vec<[usize; HEADS]>, Vec<Vec<f32>>);

/// The trained classifier with the files it was loaded from.
#[derive(Debug)]
pub struct Judge<B: Backend> {
    /// The classifier.
    pub classifier: WorldClassifier<B>,
    /// Its configuration.
    pub config: WorldClassifierConfig,
    device: B::Device,
}

/// Files of an evaluator directory.
pub const JUDGE_CONFIG: &str = "config.json";
/// Weights of an evaluator directory.
pub const JUDGE_WEIGHTS: &str = "model.bpk";

impl<B: Backend> Judge<B> {
    /// Loads `dir/config.json` and `dir/model.bpk` (as written by [`Judge::save`]).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        let config: WorldClassifierConfig = read_config(&dir.join(JUDGE_CONFIG))?;
        let source = WeightSource::open_files(&[dir.join(JUDGE_WEIGHTS)])?;
        let classifier = load_module(
            config.init::<B>(device),
            &source,
            &KeyMap::identity(),
            &[],
            "evaluator",
        )?;
        Ok(Self {
            classifier,
            config,
            device: device.clone(),
        })
    }

    /// Wraps a classifier.
    pub fn new(
        classifier: WorldClassifier<B>,
        config: WorldClassifierConfig,
        device: &B::Device,
    ) -> Self {
        Self {
            classifier,
            config,
            device: device.clone(),
        }
    }

    /// Writes `dir/config.json` and `dir/model.bpk`.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        write_config(&self.config, &dir.join(JUDGE_CONFIG))?;
        save_burnpack(&self.classifier, &dir.join(JUDGE_WEIGHTS))?;
        Ok(())
    }

    /// Predicted classes and features of a batch of clips `[batch, 3, frames, H, W]`.
    pub fn judge(&self, clips: Tensor<B, 5>) -> Result<Judged, TrainError> {
        let (classes, features) = self.classifier.predict(clips)?;
        let [b, d] = features.dims();
        let flat: Vec<f32> = features
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        Ok((
            classes,
            (0..b).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect(),
        ))
    }

    /// Features of real clips of the given combinations (one clip each, rendered from `seed`).
    pub fn real_features(
        &self,
        attributes: &[Attributes],
        seed: u64,
        spec: ClipSpec,
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        let mut rows = Vec::with_capacity(attributes.len());
        for chunk in attributes.chunks(32).enumerate() {
            let (c, attrs) = chunk;
            let clips: Vec<_> = attrs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    render(
                        a,
                        tmd_distill::train::rng::step_seed(seed, (c * 32 + i) as u64, 7),
                        &spec,
                    )
                })
                .collect();
            let video =
                crate::to_tensor::<B>(&clips, &self.device).map_err(|e| TrainError::Data {
                    step: 0,
                    message: e.to_string(),
                })?;
            rows.extend(self.judge(video)?.1);
        }
        Ok(rows)
    }
}

/// Per-attribute accuracy of the judge on `count` real clips of `split` drawn from `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeAccuracy {
    /// Which split the clips came from.
    pub split: String,
    /// Clips judged.
    pub clips: usize,
    /// Accuracy per attribute (shape, colour, motion, background, size).
    pub per_attribute: BTreeMap<String, f64>,
    /// Mean of the per-attribute accuracies.
    pub mean: f64,
    /// Fraction of clips with all five attributes right.
    pub all_correct: f64,
}

/// Measures the judge on real clips (the evaluator must be near 100% to be a fair judge).
pub fn judge_accuracy<B: Backend>(
    judge: &Judge<B>,
    split: Split,
    count: usize,
    seed: u64,
    spec: ClipSpec,
) -> Result<JudgeAccuracy, TrainError> {
    judge_accuracy_of(judge, split, count, seed, spec, Ok)
}

/// [`judge_accuracy`] of what `transform` makes of the real clips (each batch
/// `[n, 3, frames, H, W]` in `[-1, 1]`, at most 32 clips), against the clips' own attributes:
/// e.g. a VAE's reconstructions, to check that the latent keeps what the judge reads.
pub fn judge_accuracy_of<B: Backend>(
    judge: &Judge<B>,
    split: Split,
    count: usize,
    seed: u64,
    spec: ClipSpec,
    mut transform: impl FnMut(Tensor<B, 5>) -> Result<Tensor<B, 5>, TrainError>,
) -> Result<JudgeAccuracy, TrainError> {
    let data = WorldDataset::new(Some(split), seed, spec);
    let mut right = [0usize; HEADS];
    let mut all = 0usize;
    let mut start = 0u64;
    while (start as usize) < count {
        let n = 32.min(count - start as usize);
        let clips = data.batch(start, n);
        let video = crate::to_tensor::<B>(&clips, &judge.device).map_err(|e| TrainError::Data {
            step: 0,
            message: e.to_string(),
        })?;
        let video = transform(video)?;
        let (classes, _) = judge.judge(video)?;
        for (clip, got) in clips.iter().zip(&classes) {
            let want = clip.attributes.classes();
            let mut ok = true;
            for k in 0..HEADS {
                if want[k] == got[k] {
                    right[k] += 1;
                } else {
                    ok = false;
                }
            }
            all += ok as usize;
        }
        start += n as u64;
    }
    let per_attribute: BTreeMap<String, f64> = AttributeKind::ALL
        .iter()
        .zip(right)
        .map(|(k, r)| (k.name().to_string(), r as f64 / count.max(1) as f64))
        .collect();
    let mean = per_attribute.values().sum::<f64>() / HEADS as f64;
    Ok(JudgeAccuracy {
        split: split.name().to_string(),
        clips: count,
        per_attribute,
        mean,
        all_correct: all as f64 / count.max(1) as f64,
    })
}

/// Generates one clip per `(case, seed)` with `generate(caption, seed)`, judges it, and fills in
/// the measurements of `spec`'s row.
///
/// `real` are the real-clip feature statistics the Frechet distance is taken against
/// (see [`Judge::real_features`]).
pub fn evaluate_row<B, E>(
    judge: &Judge<B>,
    cases: &[EvalCase],
    seeds: &[u64],
    spec: RowSpec,
    real: &FeatureStats,
    generate: &mut dyn FnMut(&str, u64) -> Result<Video, E>,
    on_clip: &mut dyn FnMut(usize, usize),
) -> Result<EvalRow, TrainError>
where
    B: Backend,
    E: std::fmt::Display,
{
    let total = cases.len() * seeds.len();
    let mut features = Vec::with_capacity(total);
    let mut per_seed = Vec::with_capacity(seeds.len());
    let mut right = [0usize; HEADS];
    let mut seconds = 0.0;
    let mut done = 0;
    for &seed in seeds {
        let mut seed_right = 0usize;
        for (i, case) in cases.iter().enumerate() {
            let clip_seed = seed.wrapping_mul(10_007).wrapping_add(i as u64);
            let t = Instant::now();
            let video = generate(&case.caption, clip_seed).map_err(|e| TrainError::Data {
                step: 0,
                message: format!("generating '{}' (seed {clip_seed}): {e}", case.caption),
            })?;
            seconds += t.elapsed().as_secs_f64();
            let (classes, feats) = judge.judge(video_to_tensor::<B>(&video, &judge.device))?;
            let want = case.attributes.classes();
            for k in 0..HEADS {
                if classes[0][k] == want[k] {
                    right[k] += 1;
                    seed_right += 1;
                }
            }
            features.extend(feats);
            done += 1;
            on_clip(done, total);
        }
        per_seed.push(seed_right as f64 / (HEADS * cases.len()).max(1) as f64);
    }
    let attribute_accuracy: BTreeMap<String, f64> = AttributeKind::ALL
        .iter()
        .zip(right)
        .map(|(k, r)| (k.name().to_string(), r as f64 / total.max(1) as f64))
        .collect();
    let prompt_accuracy = attribute_accuracy.values().sum::<f64>() / HEADS as f64;
    let mean = per_seed.iter().sum::<f64>() / per_seed.len().max(1) as f64;
    let accuracy_seed_std = if per_seed.len() > 1 {
        (per_seed.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (per_seed.len() - 1) as f64)
            .sqrt()
    } else {
        0.0
    };
    let generated = FeatureStats::from_rows(&features, judge.config.feature_dim());
    Ok(EvalRow {
        spec,
        prompt_accuracy,
        accuracy_seed_std,
        attribute_accuracy,
        frechet_distance: frechet_distance(&generated, real),
        seconds_per_clip: seconds / total.max(1) as f64,
        prompts: cases.len(),
        seeds: seeds.len(),
    })
}

/// Everything that defines the shipped evaluator (read with
/// [`load_stage_config`](tmd_distill::train::load_stage_config) from `configs/world-evaluator.toml`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct EvaluatorRecipe {
    /// Frames of the clips judged.
    pub frames: usize,
    /// Height of the clips judged.
    pub height: usize,
    /// Width of the clips judged.
    pub width: usize,
    /// Frames the classifier looks at.
    pub sampled_frames: usize,
    /// Convolution widths.
    pub widths: Vec<usize>,
    /// Average pooling before the first convolution (1 = none).
    pub pool: usize,
    /// Which real clips it learns from: `train` (the teacher's training combinations only) or
    /// `all` (every combination; its held-out accuracy is then on unseen clips, not unseen
    /// combinations).
    pub split: String,
    /// Real clips per split on which its accuracy is measured after training.
    pub check_clips: usize,
    /// Training settings.
    pub train: classifier::ClassifierTrainConfig,
}

impl Default for EvaluatorRecipe {
    fn default() -> Self {
        let c = WorldClassifierConfig::new();
        Self {
            frames: c.frames,
            height: 64,
            width: 64,
            sampled_frames: c.sampled_frames,
            widths: c.widths,
            pool: c.pool,
            split: "train".into(),
            check_clips: 640,
            train: classifier::ClassifierTrainConfig::default(),
        }
    }
}

/// Seed of the real clips the judge's accuracy is measured on (never used for training).
pub const CHECK_SEED: u64 = 0x5eed_c4ec;

/// Trains the evaluator's classifier under `run_dir` (resuming), writes it to `out`
/// (`config.json`, `model.bpk`, `accuracy.json`) and returns its accuracy on real clips of both
/// splits, drawn from [`CHECK_SEED`].
pub fn train_evaluator<B: burn::tensor::backend::AutodiffBackend>(
    recipe: &EvaluatorRecipe,
    run_dir: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<Vec<JudgeAccuracy>, TrainError> {
    if recipe.widths.is_empty() || recipe.sampled_frames == 0 {
        return Err(TrainError::Config {
            file: None,
            key: Some(
                if recipe.widths.is_empty() {
                    "widths"
                } else {
                    "sampled_frames"
                }
                .into(),
            ),
            message: "the classifier needs at least one convolution and one sampled frame".into(),
        });
    }
    let config = WorldClassifierConfig::new()
        .with_frames(recipe.frames)
        .with_sampled_frames(recipe.sampled_frames)
        .with_widths(recipe.widths.clone())
        .with_pool(recipe.pool);
    let split = match recipe.split.as_str() {
        "all" => None,
        other => Some(other.parse::<Split>().map_err(|e| TrainError::Config {
            file: None,
            key: Some("split".into()),
            message: format!("'{other}': {e} (use train, held-out or all)"),
        })?),
    };
    let spec = ClipSpec::new(recipe.frames, recipe.height, recipe.width).map_err(|e| {
        TrainError::Data {
            step: 0,
            message: e.to_string(),
        }
    })?;
    let data = WorldDataset::new(split, recipe.train.seed, spec);
    let model = tmd_distill::train::data_parallel::seeded_init(|| {
        B::seed(device, recipe.train.seed);
        config.init::<B>(device)
    });
    let batch = recipe.train.batch;
    let (model, _) = classifier::train_classifier(model, &recipe.train, run_dir, |step| {
        Ok(data.batch((step - 1) * batch as u64, batch))
    })?;
    let judge = Judge::new(model.valid(), config, device);
    let accuracy = [Split::Train, Split::HeldOut]
        .into_iter()
        .map(|s| judge_accuracy(&judge, s, recipe.check_clips, CHECK_SEED, spec))
        .collect::<Result<Vec<_>, _>>()?;
    judge.save(out)?;
    let text = serde_json::to_string_pretty(&accuracy).expect("accuracy serialises");
    tmd_model::model_dir::write_atomically(&out.join("accuracy.json"), text.as_bytes())?;
    Ok(accuracy)
}

/// One teacher row of an evaluation: a solver, a number of steps and a CFG scale.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TeacherRow {
    /// `unipc` or `euler`.
    pub solver: String,
    /// Solver steps.
    pub steps: usize,
    /// CFG scale (1 = no CFG); the model directory's default when absent.
    pub guidance: Option<f64>,
    /// `full` (the default, so rows stay comparable with earlier reports) or `light` (the
    /// directory's `decoder-light/`).
    #[serde(default)]
    pub decoder: Option<String>,
}

/// One student row of an evaluation: a student directory (`cargo xtask distill` or
/// `adapt-head`) sampled with its own defaults unless `M` / `N` are given.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StudentRow {
    /// The student directory.
    pub model: std::path::PathBuf,
    /// What the table calls the row (default: the student's method, `tmd` or `dmd2-v`), e.g.
    /// `tmd (no GAN)` for an ablation.
    #[serde(default)]
    pub label: Option<String>,
    /// `M` (default: the student's).
    pub outer_steps: Option<usize>,
    /// `N` of a TMD student (default: the student's; ignored by DMD2-v).
    pub inner_steps: Option<usize>,
    /// `full` (the default, so rows stay comparable with earlier reports) or `light` (the
    /// directory's `decoder-light/`).
    #[serde(default)]
    pub decoder: Option<String>,
}

/// The decoder a row asks for (`full` when absent), or a config error naming `key`.
fn row_decoder(value: &Option<String>, key: &str) -> Result<tmd_sampler::DecoderKind, TrainError> {
    match value {
        None => Ok(tmd_sampler::DecoderKind::Full),
        Some(v) => v.parse().map_err(|message: String| TrainError::Config {
            file: None,
            key: Some(key.into()),
            message,
        }),
    }
}

/// The row's method name, marked when the light decoder decodes it.
fn with_decoder(method: String, decoder: tmd_sampler::DecoderKind) -> String {
    match decoder {
        tmd_sampler::DecoderKind::Full => method,
        tmd_sampler::DecoderKind::Light => format!("{method} (light decoder)"),
    }
}

/// The rows of an evaluation (read with [`EvalPlan::load`] from a rows file such as the one
/// `scripts/results.sh` writes).
///
/// A rows file means exactly the rows it lists: a file of `[[student]]` tables only scores those
/// students, with no teacher row. Without a file the plan is [`EvalPlan::standard`]. `Default` is
/// the empty plan (what a file's absent table stands for).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct EvalPlan {
    /// Teacher rows (sampled from the evaluated model directory).
    pub teacher: Vec<TeacherRow>,
    /// Student rows (each from its own directory).
    pub student: Vec<StudentRow>,
}

impl EvalPlan {
    /// Issue 3's rows, used when no rows file is given: UniPC 50 steps with CFG; Euler at 1, 2, 4
    /// steps without and with CFG.
    pub fn standard() -> Self {
        let mut teacher = vec![TeacherRow {
            solver: "unipc".into(),
            steps: 50,
            guidance: None,
            decoder: None,
        }];
        for steps in [1, 2, 4] {
            for guidance in [Some(1.0), None] {
                teacher.push(TeacherRow {
                    solver: "euler".into(),
                    steps,
                    guidance,
                    decoder: None,
                });
            }
        }
        Self {
            teacher,
            student: Vec::new(),
        }
    }

    /// The plan of an evaluation: exactly the rows of the TOML `file` (`[[teacher]]` and
    /// `[[student]]` tables), or [`EvalPlan::standard`] without a file; `overrides` (`key=value`)
    /// apply on top.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the file: unreadable, an unknown key, a value of the wrong
    /// type, or a file that lists no row at all.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, TrainError> {
        let base = match file {
            Some(_) => Self::default(),
            None => Self::standard(),
        };
        let plan = tmd_distill::train::load_stage_config_over(&base, file, overrides)?;
        if plan.teacher.is_empty() && plan.student.is_empty() {
            return Err(TrainError::Config {
                file: file.map(Path::to_path_buf),
                key: None,
                message: "no rows to evaluate: list [[teacher]] (solver, steps, guidance) and/or \
                          [[student]] (model, label, outer_steps, inner_steps) tables"
                    .into(),
            });
        }
        Ok(plan)
    }
}

/// Evaluates every student row of `plan` on `cases` x `seeds`, loading each student directory;
/// `on_row(row)` is told before each row starts, `on_clip(done, total)` after each clip.
///
/// # Errors
/// A student directory that does not load (named), generation and judging errors.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_students<B: Backend>(
    judge: &Judge<B>,
    cases: &[EvalCase],
    seeds: &[u64],
    plan: &EvalPlan,
    real: &FeatureStats,
    device: &B::Device,
    on_row: &mut dyn FnMut(&RowSpec),
    on_clip: &mut dyn FnMut(usize, usize),
) -> Result<Vec<EvalRow>, TrainError> {
    let mut rows = Vec::new();
    for row in &plan.student {
        let pipeline =
            tmd_sampler::StudentPipeline::<B>::load(&row.model, device).map_err(|e| {
                TrainError::Data {
                    step: 0,
                    message: format!("student {}: {e}", row.model.display()),
                }
            })?;
        let base = pipeline.options("");
        let outer_steps = row.outer_steps.unwrap_or(base.outer_steps);
        let (method, inner_steps, head_blocks, effective_nfe) = match &pipeline.student {
            tmd_flowhead::Student::Tmd(s) => {
                let n = row.inner_steps.unwrap_or(base.inner_steps);
                (
                    "tmd",
                    n,
                    s.head_blocks,
                    tmd_sampler::effective_nfe::tmd(
                        outer_steps,
                        n,
                        s.head_blocks,
                        s.teacher_blocks(),
                    ),
                )
            }
            tmd_flowhead::Student::Dmd2V(_) => {
                ("dmd2-v", 0, 0, tmd_sampler::effective_nfe::dmd(outer_steps))
            }
        };
        let decoder = row_decoder(&row.decoder, "student.decoder")?;
        let spec = RowSpec {
            method: row
                .label
                .clone()
                .unwrap_or_else(|| with_decoder(method.into(), decoder)),
            outer_steps,
            inner_steps,
            head_blocks,
            guidance: 1.0,
            effective_nfe,
        };
        on_row(&spec);
        let mut generate = |caption: &str, seed: u64| {
            let mut opts = pipeline.options(caption);
            opts.outer_steps = outer_steps;
            opts.inner_steps = inner_steps.max(1);
            opts.seed = seed;
            opts.decoder = decoder;
            pipeline
                .generate(&opts, &mut |_, _| {})
                .map(|(video, _)| video)
                .map_err(Box::new) // a pointer-sized Err through evaluate_row
        };
        rows.push(evaluate_row(
            judge,
            cases,
            seeds,
            spec,
            real,
            &mut generate,
            on_clip,
        )?);
    }
    Ok(rows)
}

/// Evaluates every teacher row of `plan` with `pipeline` on `cases` x `seeds`; `on_row(row)` is
/// told before each row starts, `on_clip(done, total)` after each clip.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_teacher<B: Backend>(
    pipeline: &tmd_sampler::TeacherPipeline<B>,
    judge: &Judge<B>,
    cases: &[EvalCase],
    seeds: &[u64],
    plan: &EvalPlan,
    real: &FeatureStats,
    on_row: &mut dyn FnMut(&RowSpec),
    on_clip: &mut dyn FnMut(usize, usize),
) -> Result<Vec<EvalRow>, TrainError> {
    let mut rows = Vec::new();
    for row in &plan.teacher {
        let solver = match row.solver.as_str() {
            "unipc" => tmd_sampler::Solver::UniPc,
            "euler" => tmd_sampler::Solver::Euler,
            other => {
                return Err(TrainError::Config {
                    file: None,
                    key: Some("teacher.solver".into()),
                    message: format!("unknown solver '{other}' (use unipc or euler)"),
                })
            }
        };
        let base = pipeline.options("");
        let guidance = row.guidance.unwrap_or(base.guidance);
        let decoder = row_decoder(&row.decoder, "teacher.decoder")?;
        let spec = RowSpec {
            method: with_decoder(format!("teacher-{}", row.solver), decoder),
            outer_steps: row.steps,
            inner_steps: 0,
            head_blocks: 0,
            guidance,
            effective_nfe: tmd_sampler::effective_nfe::teacher(row.steps, guidance),
        };
        on_row(&spec);
        let mut generate = |caption: &str, seed: u64| {
            let mut opts = pipeline.options(caption).with_steps(row.steps);
            opts.solver = solver;
            opts.guidance = guidance;
            opts.seed = seed;
            opts.decoder = decoder;
            pipeline
                .generate(&opts, &mut |_, _| {})
                .map(|(video, _)| video)
                .map_err(Box::new) // a pointer-sized Err through evaluate_row
        };
        rows.push(evaluate_row(
            judge,
            cases,
            seeds,
            spec,
            real,
            &mut generate,
            on_clip,
        )?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for rows files, removed when the returned guard drops.
    fn rows_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("tmd-eval-rows-")
            .tempdir()
            .unwrap()
    }

    fn rows_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_rows_file_means_exactly_its_rows() {
        let dir = rows_dir();
        // No file: the standard teacher rows.
        let standard = EvalPlan::load(None, &[]).unwrap();
        assert_eq!(standard, EvalPlan::standard());
        assert_eq!(standard.teacher.len(), 7);
        assert!(standard.student.is_empty());

        // Students only: no teacher row comes with them.
        let path = rows_file(
            &dir,
            "students.toml",
            "[[student]]\nmodel = \"runs/a\"\n\n[[student]]\nmodel = \"runs/b\"\nlabel = \"b\"\nouter_steps = 2\n",
        );
        let plan = EvalPlan::load(Some(&path), &[]).unwrap();
        assert!(plan.teacher.is_empty(), "{plan:?}");
        assert_eq!(plan.student.len(), 2);
        assert_eq!(plan.student[0].model, std::path::PathBuf::from("runs/a"));
        assert_eq!(plan.student[1].label.as_deref(), Some("b"));
        assert_eq!(plan.student[1].outer_steps, Some(2));

        // One teacher row: that row only.
        let path = rows_file(
            &dir,
            "teacher.toml",
            "[[teacher]]\nsolver = \"euler\"\nsteps = 4\n",
        );
        let plan = EvalPlan::load(Some(&path), &[]).unwrap();
        assert_eq!(
            plan.teacher,
            vec![TeacherRow {
                solver: "euler".into(),
                steps: 4,
                guidance: None,
                decoder: None,
            }]
        );
        assert!(plan.student.is_empty());
    }

    #[test]
    fn a_rows_file_without_rows_or_with_unknown_keys_is_refused() {
        let dir = rows_dir();
        let path = rows_file(&dir, "empty.toml", "# nothing\n");
        let err = EvalPlan::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(
            err.contains("no rows") && err.contains("empty.toml"),
            "{err}"
        );
        let path = rows_file(&dir, "typo.toml", "[[studnet]]\nmodel = \"runs/a\"\n");
        let err = EvalPlan::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("studnet"), "{err}");
    }
}
