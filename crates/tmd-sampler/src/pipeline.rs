//! Teacher text-to-video generation: prompt -> umT5 -> DiT sampling with CFG -> VAE decode.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use tmd_sampler::pipeline::TeacherPipeline;
//!
//! let device = Default::default();
//! let pipe = TeacherPipeline::<NdArray>::load("assets/tiny-random", &device).unwrap();
//! let opts = pipe.options("a red ball moves left").with_steps(4);
//! let (video, timings) = pipe.generate(&opts, &mut |_, _| {}).unwrap();
//! video.save("clip.gif").unwrap();
//! println!("{timings}");
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use burn::prelude::*;
use tmd_model::dit::WanModel;
use tmd_model::light_decoder::LightDecoder;
use tmd_model::model_dir::{ModelDir, SamplingDefaults};
use tmd_model::t5::TextEncoder;
use tmd_model::vae::WanVae;

use crate::cfg::cfg_combine;
use crate::error::{Result, SamplerError};
use crate::noise::gaussian;
use crate::schedule::FlowSchedule;
use crate::video::Video;
use crate::{EulerSolver, FlowSolver, UniPcConfig};

/// The teacher's ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Solver {
    /// UniPC multistep (bh2, order 2): Wan2.1's default.
    #[default]
    UniPc,
    /// FlowMatch Euler.
    Euler,
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "unipc" => Ok(Self::UniPc),
            "euler" => Ok(Self::Euler),
            _ => Err(format!("unknown solver '{s}' (expected unipc or euler)")),
        }
    }
}

/// Which decoder turns the sampled latents into pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DecoderKind {
    /// The model's full causal 3D VAE decoder.
    #[default]
    Full,
    /// The light decoder of the model directory's `decoder-light/`
    /// ([`tmd_model::light_decoder`]), distilled from the full one by
    /// `cargo xtask distill-decoder`.
    Light,
}

impl DecoderKind {
    /// `full` or `light`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Light => "light",
        }
    }
}

impl std::fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DecoderKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "light" => Ok(Self::Light),
            _ => Err(format!("unknown decoder '{s}' (expected full or light)")),
        }
    }
}

/// Loads the light decoder of `dir` if it has a `decoder-light/` (a broken or mismatched one is
/// an error naming the folder and the latent channels it must take).
pub fn load_light_decoder<B: Backend>(
    dir: &ModelDir,
    device: &B::Device,
) -> Result<Option<LightDecoder<B>>> {
    if dir.has_light_decoder() {
        Ok(Some(dir.load_light_decoder(device)?))
    } else {
        Ok(None)
    }
}

/// The default decoder of a pipeline: the light one when loaded, else the full VAE.
pub fn default_decoder<B: Backend>(light: &Option<LightDecoder<B>>) -> DecoderKind {
    if light.is_some() {
        DecoderKind::Light
    } else {
        DecoderKind::Full
    }
}

/// Decodes normalised latents with `kind`: `vae` or `light`, to a clip in `[-1, 1]`.
///
/// # Shapes
/// - `z`: `[batch, z_dim, t, h, w]` -> `[batch, 3, 1 + 4 (t - 1), 8 h, 8 w]` (Wan2.1 strides)
///
/// # Errors
/// [`DecoderKind::Light`] without a light decoder (the error names `decoder-light/` of `dir` and
/// the latent channels it must take); model errors.
pub fn decode_latents<B: Backend>(
    dir: &ModelDir,
    vae: &WanVae<B>,
    light: &Option<LightDecoder<B>>,
    kind: DecoderKind,
    z: Tensor<B, 5>,
) -> Result<Tensor<B, 5>> {
    match (kind, light) {
        (DecoderKind::Full, _) => Ok(vae.decode_normalized(z)?),
        (DecoderKind::Light, Some(light)) => {
            light.check_latents(z.dims())?;
            Ok(light.forward(z))
        }
        (DecoderKind::Light, None) => {
            // Not loaded because the directory has none: this returns the error that says so.
            dir.light_decoder_config()?;
            Err(SamplerError::Model(tmd_model::ModelError::config(
                dir.root.join(tmd_model::light_decoder::LIGHT_DECODER_DIR),
                "the light decoder was not loaded",
            )))
        }
    }
}

/// Decodes `z` with the decoder `kind` and turns the pixels into frames, timing the decoder
/// (`timings.vae`, waited for on the device) and the frames (`timings.frames`) apart.
fn decode_timed<B: Backend>(
    (dir, vae, light): (&ModelDir, &WanVae<B>, &Option<LightDecoder<B>>),
    kind: DecoderKind,
    z: Tensor<B, 5>,
    fps: u32,
    timings: &mut Timings,
) -> Result<Video> {
    let device = z.device();
    let t0 = Instant::now();
    let pixels = decode_latents(dir, vae, light, kind, z)?;
    sync::<B>(&device);
    timings.vae = t0.elapsed();
    timings.decoder = kind;
    let t1 = Instant::now();
    let video = Video::from_tensor(pixels, fps)?;
    timings.frames = t1.elapsed();
    Ok(video)
}

/// What to generate, and how. Start from [`TeacherPipeline::options`], which fills in the model
/// directory's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherOptions {
    /// The prompt (must not be empty).
    pub prompt: String,
    /// Negative prompt for CFG.
    pub negative_prompt: String,
    /// Sampling steps.
    pub steps: usize,
    /// CFG scale; 1.0 turns CFG off (one DiT pass per step).
    pub guidance: f64,
    /// Timestep shift.
    pub shift: f64,
    /// Frames of the clip (temporal stride * k + 1).
    pub frames: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Noise seed.
    pub seed: u64,
    /// ODE solver.
    pub solver: Solver,
    /// Frames per second of the result.
    pub fps: u32,
    /// The decoder (default: [`DecoderKind::Full`]; [`TeacherPipeline::options`] picks the
    /// light one when the directory has it).
    pub decoder: DecoderKind,
}

impl TeacherOptions {
    /// Options from a model directory's defaults.
    pub fn from_defaults(prompt: impl Into<String>, d: &SamplingDefaults) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: d.negative_prompt.clone(),
            steps: d.steps,
            guidance: d.guidance,
            shift: d.shift,
            frames: d.frames,
            height: d.height,
            width: d.width,
            seed: 0,
            solver: Solver::UniPc,
            fps: d.fps,
            decoder: DecoderKind::Full,
        }
    }

    /// Sets the number of steps.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
}

/// Wall-clock split of one generation (the device is synchronised at each boundary).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt encoding (umT5).
    pub text_encoder: Duration,
    /// All DiT evaluations and solver updates.
    pub dit: Duration,
    /// Decoding the latents to pixels on the device (with [`Timings::decoder`]).
    pub vae: Duration,
    /// Turning the decoded pixels into the returned 8-bit frames: quantisation on the device and
    /// the copy to the host ([`Video::from_tensor`]).
    pub frames: Duration,
    /// Which decoder ran.
    pub decoder: DecoderKind,
    /// Number of DiT forward passes (a CFG step with batched cond/uncond counts 2; a TMD outer
    /// step counts its backbone pass once and each flow-head pass once).
    pub dit_evaluations: usize,
    /// The same cost in full-DiT passes ([`crate::effective_nfe`]).
    pub effective_nfe: f64,
}

impl Timings {
    /// Sum of the parts.
    pub fn total(&self) -> Duration {
        self.text_encoder + self.dit + self.vae + self.frames
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "text encoder {:.3} s | DiT {:.3} s (effective NFE {:.2}) | decode {:.3} s ({}) | frames {:.3} s | total {:.3} s",
            self.text_encoder.as_secs_f64(),
            self.dit.as_secs_f64(),
            self.effective_nfe,
            self.vae.as_secs_f64(),
            match self.decoder {
                DecoderKind::Full => "full VAE",
                DecoderKind::Light => "light decoder",
            },
            self.frames.as_secs_f64(),
            self.total().as_secs_f64()
        )
    }
}

/// The text encoder and VAE in the dtype of `precision`: bf16 under the bf16 policy where the
/// backend has bf16, else unchanged.
fn cast_decoders_and_text<B: Backend>(
    text: TextEncoder<B>,
    vae: WanVae<B>,
    light: Option<LightDecoder<B>>,
    precision: tmd_model::dit::Precision,
    device: &B::Device,
) -> (TextEncoder<B>, WanVae<B>, Option<LightDecoder<B>>) {
    use burn::tensor::DType;
    let dtype = match precision {
        tmd_model::dit::Precision::Bf16Matmul
            if tmd_model::dtype::supports::<B>(device, DType::BF16) =>
        {
            DType::BF16
        }
        _ => DType::F32,
    };
    (
        text.with_dtype(dtype),
        vae.with_dtype(dtype),
        light.map(|l| l.with_dtype(dtype)),
    )
}

/// The loaded teacher: text encoder, DiT and VAE of one model directory.
pub struct TeacherPipeline<B: Backend> {
    /// The model directory it was loaded from.
    pub dir: ModelDir,
    /// Tokenizer + umT5.
    pub text: TextEncoder<B>,
    /// The DiT.
    pub dit: WanModel<B>,
    /// The VAE.
    pub vae: WanVae<B>,
    /// The light decoder of `decoder-light/`, if the directory has one.
    pub light_decoder: Option<LightDecoder<B>>,
    device: B::Device,
}

impl<B: Backend> TeacherPipeline<B> {
    /// Loads every component of a converted or diffusers-format model directory.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = ModelDir::open(dir)?;
        dir.check_consistency()?;
        Ok(Self {
            text: dir.load_text_encoder(device)?,
            dit: dir.load_transformer(device)?,
            vae: dir.load_vae(device)?,
            light_decoder: load_light_decoder(&dir, device)?,
            dir,
            device: device.clone(),
        })
    }

    /// Sets the precision of the whole pipeline, as the reference runs it: with
    /// [`Precision::Bf16Matmul`](tmd_model::dit::Precision::Bf16Matmul) the DiT does bf16 matrix
    /// products with f32 norms, modulation and residual stream (the original's autocast), and the
    /// VAE, the light decoder and umT5 compute in bf16 (diffusers loads them with
    /// `torch_dtype=bfloat16`) where the backend has bf16 (LibTorch, CUDA; NdArray keeps them f32).
    pub fn with_precision(mut self, precision: tmd_model::dit::Precision) -> Self {
        self.dit = self.dit.with_precision(precision);
        (self.text, self.vae, self.light_decoder) = cast_decoders_and_text(
            self.text,
            self.vae,
            self.light_decoder,
            precision,
            &self.device,
        );
        self
    }

    /// Default options for `prompt` (the model directory's sampling defaults).
    pub fn options(&self, prompt: impl Into<String>) -> TeacherOptions {
        let mut o = TeacherOptions::from_defaults(prompt, &self.dir.defaults());
        o.decoder = default_decoder(&self.light_decoder);
        o
    }

    /// The latent shape for a clip, or an error naming the bad value.
    ///
    /// Height and width must be multiples of `vae spatial stride * DiT patch` (16 for Wan2.1);
    /// frames must be `temporal stride * k + 1` (4k+1 for Wan2.1).
    pub fn latent_shape(&self, frames: usize, height: usize, width: usize) -> Result<[usize; 5]> {
        let vae = self.dir.vae_config()?;
        let dit = self.dir.transformer_config()?;
        latent_shape(&vae, &dit, frames, height, width)
    }

    /// Samples one clip with the teacher: `steps` solver steps, CFG with the negative prompt,
    /// then VAE decode. `on_step(k, steps)` is called after each step.
    ///
    /// # Returns
    /// The decoded clip and the time spent in each part.
    pub fn generate(
        &self,
        opts: &TeacherOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(Video, Timings)> {
        let shape = self.latent_shape(opts.frames, opts.height, opts.width)?;
        let mut timings = Timings::default();
        let use_cfg = opts.guidance != 1.0;

        let t0 = Instant::now();
        let cond = self.text.encode_cached(opts.prompt.as_str())?;
        let uncond = if use_cfg {
            Some(
                self.text
                    .encode_cached_batch(&[opts.negative_prompt.as_str()], true)?,
            )
        } else {
            None
        };
        sync::<B>(&self.device);
        timings.text_encoder = t0.elapsed();

        let t1 = Instant::now();
        let noise = gaussian::<B, 5>(shape, opts.seed, &self.device);
        let schedule = FlowSchedule::wan_original(opts.steps, opts.shift)?;
        let guidance = uncond.map(|u| (u, opts.guidance));
        let (x, evaluations) = teacher_sample(
            &self.dit,
            noise,
            cond,
            guidance,
            schedule,
            opts.solver,
            on_step,
        )?;
        timings.dit_evaluations = evaluations;
        sync::<B>(&self.device);
        timings.dit = t1.elapsed();
        timings.effective_nfe = crate::effective_nfe::teacher(opts.steps, opts.guidance);

        let video = decode_timed(
            (&self.dir, &self.vae, &self.light_decoder),
            opts.decoder,
            x,
            opts.fps,
            &mut timings,
        )?;
        Ok((video, timings))
    }
}

/// Latent shape `[1, z_dim, t, h, w]` of a `frames x height x width` clip, validated.
pub fn latent_shape(
    vae: &tmd_model::vae::WanVaeConfig,
    dit: &tmd_model::dit::WanConfig,
    frames: usize,
    height: usize,
    width: usize,
) -> Result<[usize; 5]> {
    let s = vae.spatial_stride();
    let ts = vae.temporal_stride();
    let px = s * dit.patch_size[1];
    let bad = |what: &'static str, value: usize, rule: String| SamplerError::BadResolution {
        what,
        value,
        rule,
    };
    if height == 0 || !height.is_multiple_of(px) {
        return Err(bad(
            "height",
            height,
            format!("a positive multiple of {px}"),
        ));
    }
    if width == 0 || !width.is_multiple_of(px) {
        return Err(bad("width", width, format!("a positive multiple of {px}")));
    }
    if frames == 0 || !(frames - 1).is_multiple_of(ts) {
        return Err(bad(
            "frames",
            frames,
            format!("{ts}k+1 (e.g. {}, {})", ts + 1, 4 * ts + 1),
        ));
    }
    Ok([1, vae.z_dim, (frames - 1) / ts + 1, height / s, width / s])
}

/// The teacher's ODE in latent space for a batch of clips: `schedule.steps()` solver steps from
/// `noise`, with CFG against `guidance = Some((uncond, w))` (cond and uncond batched into one DiT
/// pass) or without. `on_step(k, steps)` is called after each step. Used by
/// [`TeacherPipeline::generate`] and by teacher data generation.
///
/// # Shapes
/// - `noise`: `[batch, channels, frames, height, width]`
/// - `cond`: `[batch, l, text_dim]`; `uncond`: `[1, l, text_dim]` or `[batch, l, text_dim]`
/// - output: the sample, shaped like `noise`, and the number of DiT evaluations (per clip)
///
/// # Errors
/// Model shape errors.
pub fn teacher_sample<B: Backend>(
    dit: &WanModel<B>,
    noise: Tensor<B, 5>,
    cond: Tensor<B, 3>,
    guidance: Option<(Tensor<B, 3>, f64)>,
    schedule: FlowSchedule,
    solver: Solver,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor<B, 5>, usize)> {
    let [b, ..] = noise.dims();
    let device = noise.device();
    let steps = schedule.steps();
    let mut solver: Box<dyn FlowSolver<B, 5>> = match solver {
        Solver::UniPc => Box::new(UniPcConfig::new().init::<B, 5>(schedule)?),
        Solver::Euler => Box::new(EulerSolver::new(schedule)),
    };
    let [_, l, d] = cond.dims();
    let context = match &guidance {
        Some((u, _)) => {
            let u = if u.dims()[0] == b {
                u.clone()
            } else {
                u.clone().expand([b, l, d])
            };
            Tensor::cat(vec![cond, u], 0)
        }
        None => cond,
    };
    let passes = if guidance.is_some() { 2 } else { 1 };
    let (mut x, mut k, mut evaluations) = (noise, 0, 0);
    while let Some(t) = solver.timestep() {
        let tt = Tensor::<B, 1>::full([b * passes], t, &device);
        let v = match &guidance {
            Some((_, w)) => {
                let out = dit.forward(
                    Tensor::cat(vec![x.clone(), x.clone()], 0),
                    tt,
                    context.clone(),
                )?;
                let [c, u] = [out.clone().narrow(0, 0, b), out.narrow(0, b, b)];
                cfg_combine(u, c, *w)?
            }
            None => dit.forward(x.clone(), tt, context.clone())?,
        };
        evaluations += passes;
        x = solver.step(v, x)?;
        k += 1;
        on_step(k, steps);
    }
    Ok((x, evaluations))
}

/// Waits for the device so that wall-clock splits are honest on asynchronous backends.
pub fn sync<B: Backend>(device: &B::Device) {
    let _ = B::sync(device);
}

/// What to generate with a TMD student, and how. Start from [`StudentPipeline::options`].
#[derive(Clone, Debug, PartialEq)]
pub struct StudentOptions {
    /// The prompt (must not be empty).
    pub prompt: String,
    /// `M`, outer steps.
    pub outer_steps: usize,
    /// `N`, flow-head steps per outer step.
    pub inner_steps: usize,
    /// Shift of the outer grid.
    pub outer_shift: f64,
    /// Shift of the inner grid.
    pub inner_shift: f64,
    /// Frames of the clip (temporal stride * k + 1).
    pub frames: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Noise seed (initial latent and every head noise).
    pub seed: u64,
    /// Frames per second of the result.
    pub fps: u32,
    /// The decoder ([`StudentPipeline::options`] picks the light one when the directory has it).
    pub decoder: DecoderKind,
}

/// A loaded few-step student: text encoder, student (a TMD student with its flow head, or a
/// DMD2-v DiT), VAE of one student directory ([`tmd_flowhead::student_dir`]).
pub struct StudentPipeline<B: Backend> {
    /// The model directory.
    pub dir: ModelDir,
    /// Tokenizer + umT5.
    pub text: TextEncoder<B>,
    /// The student (TMD, or the DMD2-v baseline).
    pub student: tmd_flowhead::Student<B>,
    /// The student's manifest (head, defaults, provenance).
    pub manifest: tmd_flowhead::StudentManifest,
    /// The VAE.
    pub vae: WanVae<B>,
    /// The light decoder of `decoder-light/`, if the directory has one.
    pub light_decoder: Option<LightDecoder<B>>,
    device: B::Device,
}

impl<B: Backend> StudentPipeline<B> {
    /// Loads the student directory `dir`.
    ///
    /// # Errors
    /// Missing or corrupt files (named), shape mismatches.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let root = dir.as_ref();
        let dir = ModelDir::open(root)?;
        dir.check_consistency()?;
        let (student, manifest) = tmd_flowhead::load_student::<B>(root, device)?;
        Ok(Self {
            text: dir.load_text_encoder(device)?,
            vae: dir.load_vae(device)?,
            light_decoder: load_light_decoder(&dir, device)?,
            student,
            manifest,
            dir,
            device: device.clone(),
        })
    }

    /// Sets the precision of the whole pipeline: the student's DiT, the VAE, the light decoder and
    /// umT5, as
    /// [`TeacherPipeline::with_precision`] does for the teacher.
    pub fn with_precision(mut self, precision: tmd_model::dit::Precision) -> Self {
        self.student = self.student.with_precision(precision);
        (self.text, self.vae, self.light_decoder) = cast_decoders_and_text(
            self.text,
            self.vae,
            self.light_decoder,
            precision,
            &self.device,
        );
        self
    }

    /// Default options for `prompt` (the student's `M`, `N` and the directory's clip size).
    pub fn options(&self, prompt: impl Into<String>) -> StudentOptions {
        let d = self.dir.defaults();
        let s = &self.manifest.defaults;
        StudentOptions {
            prompt: prompt.into(),
            outer_steps: s.outer_steps,
            inner_steps: s.inner_steps,
            outer_shift: s.outer_shift,
            inner_shift: s.inner_shift,
            frames: d.frames,
            height: d.height,
            width: d.width,
            seed: 0,
            fps: d.fps,
            decoder: default_decoder(&self.light_decoder),
        }
    }

    /// Samples one clip and decodes it: Algorithm 1 ([`crate::tmd::tmd_sample`]) for a TMD
    /// student, [`crate::dmd::dmd_sample`] for a DMD2-v one (which ignores `inner_steps`).
    /// `on_step(i, M)` is called after each outer step.
    ///
    /// # Errors
    /// Bad resolution or step counts (named), empty prompt, model errors.
    pub fn generate(
        &self,
        opts: &StudentOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(Video, Timings)> {
        let vae_config = self.dir.vae_config()?;
        let dit_config = self.dir.transformer_config()?;
        let shape = latent_shape(
            &vae_config,
            &dit_config,
            opts.frames,
            opts.height,
            opts.width,
        )?;
        let grids = crate::tmd::TmdGrids::new(
            opts.outer_steps,
            opts.inner_steps,
            opts.outer_shift,
            opts.inner_shift,
        )?;
        let mut timings = Timings::default();
        let t0 = Instant::now();
        let context = self.text.encode_cached(opts.prompt.as_str())?;
        sync::<B>(&self.device);
        timings.text_encoder = t0.elapsed();

        let t1 = Instant::now();
        let noise = gaussian::<B, 5>(shape, opts.seed, &self.device);
        let x = match &self.student {
            tmd_flowhead::Student::Tmd(student) => {
                timings.dit_evaluations = opts.outer_steps * (1 + opts.inner_steps);
                timings.effective_nfe = crate::effective_nfe::tmd(
                    opts.outer_steps,
                    opts.inner_steps,
                    student.head_blocks,
                    student.teacher_blocks(),
                );
                crate::tmd::tmd_sample(student, noise, context, &grids, opts.seed, on_step)?
            }
            tmd_flowhead::Student::Dmd2V(dit) => {
                timings.dit_evaluations = opts.outer_steps;
                timings.effective_nfe = crate::effective_nfe::dmd(opts.outer_steps);
                crate::dmd::dmd_sample(dit, noise, context, &grids.outer, on_step)?
            }
        };
        sync::<B>(&self.device);
        timings.dit = t1.elapsed();

        let video = decode_timed(
            (&self.dir, &self.vae, &self.light_decoder),
            opts.decoder,
            x,
            opts.fps,
            &mut timings,
        )?;
        Ok((video, timings))
    }
}
