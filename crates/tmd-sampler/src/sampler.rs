//! The library's front door: a model directory in, clips out, whatever the directory holds.
//!
//! [`Sampler::load`] picks the distilled student when the directory has one (`student/`, written
//! by `cargo xtask adapt-head` or `cargo xtask distill`) and the teacher otherwise;
//! [`Sampler::generate`] samples one clip with the model's own defaults, overridden by
//! [`SampleOptions`].
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use tmd_sampler::{SampleOptions, Sampler};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Default::default();
//! let sampler = Sampler::<NdArray>::load("assets/tiny-random", &device)?;
//! let video = sampler.generate("A small red circle moves to the left.", &SampleOptions::default())?;
//! video.save("clip.gif")?;
//!
//! // Two outer steps of a TMD student, another seed:
//! let opts = SampleOptions { steps: Some(2), seed: 7, ..Default::default() };
//! let (video, timings) = sampler.generate_timed("A large blue square moves up.", &opts, &mut |_, _| {})?;
//! println!("{} ({} frames)", timings, video.num_frames());
//! # Ok(())
//! # }
//! ```
//!
//! For every knob of one side (solver, negative prompt, shifts), use [`TeacherPipeline`] or
//! [`StudentPipeline`] directly; [`Sampler::Teacher`] and [`Sampler::Student`] hold them.

use std::path::Path;

use burn::prelude::*;

use crate::error::{Result, SamplerError};
use crate::pipeline::{DecoderKind, StudentPipeline, TeacherPipeline, Timings};
use crate::video::Video;

/// What to change from the model's defaults. `None` keeps the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleOptions {
    /// Noise seed.
    pub seed: u64,
    /// Solver steps of a teacher; outer steps `M` of a student.
    pub steps: Option<usize>,
    /// Flow-head steps `N` of a TMD student (not applicable to a teacher or a DMD2-v student).
    pub inner_steps: Option<usize>,
    /// CFG scale of a teacher (a distilled student samples without CFG).
    pub guidance: Option<f64>,
    /// Clip frames.
    pub frames: Option<usize>,
    /// Clip height in pixels.
    pub height: Option<usize>,
    /// Clip width in pixels.
    pub width: Option<usize>,
    /// The decoder: `None` takes the light decoder when the model directory has one
    /// (`decoder-light/`), else the full VAE; `Some(Light)` without one is an error naming the
    /// folder.
    pub decoder: Option<DecoderKind>,
}

/// A loaded model directory: its teacher, or its distilled student.
pub enum Sampler<B: Backend> {
    /// The teacher (many steps, CFG).
    Teacher(Box<TeacherPipeline<B>>),
    /// A distilled student (TMD or DMD2-v; few steps, no CFG).
    Student(Box<StudentPipeline<B>>),
}

impl<B: Backend> Sampler<B> {
    /// Loads the student of `dir` if it has one, else its teacher.
    ///
    /// # Errors
    /// Missing or corrupt files (named), shape mismatches.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        if tmd_flowhead::has_student(dir) {
            Ok(Self::Student(Box::new(StudentPipeline::load(dir, device)?)))
        } else {
            Self::load_teacher(dir, device)
        }
    }

    /// Loads the teacher of `dir`, even if it holds a student.
    ///
    /// # Errors
    /// Missing or corrupt files (named), shape mismatches.
    pub fn load_teacher(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Ok(Self::Teacher(Box::new(TeacherPipeline::load(dir, device)?)))
    }

    /// `teacher`, `TMD student` or `DMD2-v student`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Teacher(_) => "teacher",
            Self::Student(s) => match s.student {
                tmd_flowhead::Student::Tmd(_) => "TMD student",
                tmd_flowhead::Student::Dmd2V(_) => "DMD2-v student",
            },
        }
    }

    /// Samples one clip for `prompt`.
    ///
    /// # Errors
    /// An empty prompt, an option that does not apply to the loaded model, a bad resolution or
    /// step count (named), model errors.
    pub fn generate(&self, prompt: &str, options: &SampleOptions) -> Result<Video> {
        self.generate_timed(prompt, options, &mut |_, _| {})
            .map(|(video, _)| video)
    }

    /// [`Sampler::generate`], with the time split and `on_step(k, steps)` after each (outer)
    /// step.
    ///
    /// # Errors
    /// As [`Sampler::generate`].
    pub fn generate_timed(
        &self,
        prompt: &str,
        o: &SampleOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(Video, Timings)> {
        if prompt.trim().is_empty() {
            return Err(SamplerError::EmptyPrompt);
        }
        let kind = self.kind();
        let not = |option, hint| SamplerError::OptionNotApplicable {
            option,
            model: kind,
            hint,
        };
        match self {
            Self::Teacher(pipe) => {
                if o.inner_steps.is_some() {
                    return Err(not(
                        "inner_steps",
                        "only a TMD student has flow-head steps; load a student directory",
                    ));
                }
                let mut opts = pipe.options(prompt);
                opts.seed = o.seed;
                opts.steps = o.steps.unwrap_or(opts.steps);
                opts.guidance = o.guidance.unwrap_or(opts.guidance);
                opts.frames = o.frames.unwrap_or(opts.frames);
                opts.height = o.height.unwrap_or(opts.height);
                opts.width = o.width.unwrap_or(opts.width);
                opts.decoder = o.decoder.unwrap_or(opts.decoder);
                pipe.generate(&opts, on_step)
            }
            Self::Student(pipe) => {
                if o.guidance.is_some() {
                    return Err(not(
                        "guidance",
                        "a distilled student samples without CFG; use Sampler::load_teacher",
                    ));
                }
                let dmd = matches!(pipe.student, tmd_flowhead::Student::Dmd2V(_));
                if dmd && o.inner_steps.is_some() {
                    return Err(not(
                        "inner_steps",
                        "a DMD2-v student takes one DiT pass per step; set steps",
                    ));
                }
                let mut opts = pipe.options(prompt);
                opts.seed = o.seed;
                opts.outer_steps = o.steps.unwrap_or(opts.outer_steps);
                opts.inner_steps = o.inner_steps.unwrap_or(opts.inner_steps);
                opts.frames = o.frames.unwrap_or(opts.frames);
                opts.height = o.height.unwrap_or(opts.height);
                opts.width = o.width.unwrap_or(opts.width);
                opts.decoder = o.decoder.unwrap_or(opts.decoder);
                pipe.generate(&opts, on_step)
            }
        }
    }
}
