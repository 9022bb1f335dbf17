//! A fixed set of training latents with their captions, stored once and served from memory.
//!
//! Two producers fill a cache ([`LatentSource`]):
//! - real clips of the synthetic world, encoded once by the finished VAE (`tmd_world::latents`):
//!   the DiT only ever sees VAE latents, and encoding every batch again costs far more than the DiT
//!   step itself on a CPU;
//! - teacher-generated pairs ([`crate::teacher_data`]): prompts, the seed of each clip's initial
//!   noise, and the teacher's sample, the training data of stage 2 and of the KD warm-up.
//!
//! Either way the latents are produced in chunks written atomically as they finish (an interrupted
//! build resumes at the first missing chunk).
//!
//! Layout of the cache directory: `index.json` (what was produced, [`LatentCacheIndex`]; a mismatch
//! with the current run is an error, not a silent reuse) and `chunk-NNNNN.f32` (the normalised
//! latents of `chunk` consecutive clips, little-endian f32, layout `[clips, z, frames, height,
//! width]`).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_model::model_dir::write_atomically;

use crate::train::run::progress_bar;
use crate::train::TrainError;

/// File naming what a cache directory holds.
pub const INDEX: &str = "index.json";

/// Where the latents of a cache come from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LatentSource {
    /// The first `clips` real clips of a world dataset, encoded by the VAE.
    World {
        /// Seed of the dataset the clips come from.
        dataset_seed: u64,
        /// `[frames, height, width]` of the clips.
        clip_size: [usize; 3],
        /// Step of the VAE checkpoint that encoded them.
        vae_step: u64,
    },
    /// Samples of a teacher ([`crate::teacher_data`]).
    Teacher(crate::teacher_data::TeacherSampling),
    /// Pixels, not latents: the full VAE decoder's output for the latents of another cache, the
    /// targets of `distill-decoder` ([`crate::distill_decoder`]; `latent_shape` is then
    /// `[channels, frames, height, width]` of a clip).
    Decoded {
        /// The latent cache decoded.
        latents: String,
        /// The model directory whose VAE decoded them.
        model: String,
        /// Latent frames kept (0: all).
        max_latent_frames: usize,
        /// Side of the latent window cut (0: none).
        latent_crop: usize,
        /// Seed of the window placement.
        seed: u64,
    },
}

/// What a cache directory holds; two caches are interchangeable iff their indexes are equal.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LatentCacheIndex {
    /// Clips held.
    pub clips: usize,
    /// Clips per chunk file.
    pub chunk: usize,
    /// `[z, frames, height, width]` of one clip's latent.
    pub latent_shape: [usize; 4],
    /// What produced the latents.
    pub source: LatentSource,
    /// Caption of every clip, in order (so that later stages read the cache without the dataset).
    pub captions: Vec<String>,
}

/// Normalised latents of a fixed set of clips, with their captions.
#[derive(Debug, Clone)]
pub struct LatentCache {
    index: LatentCacheIndex,
    latents: Vec<f32>,
    captions: Vec<String>,
}

impl LatentCache {
    /// Loads the cache in `dir`, producing whatever chunks are missing first:
    /// `produce(start, n)` returns the latents of clips `start..start + n` (shape
    /// `[n, latent_shape..]`). `message` labels the progress bar.
    ///
    /// # Errors
    /// [`TrainError::CorruptCheckpoint`] naming the file if `index.json` describes another cache
    /// or a chunk has the wrong length; a produced batch of the wrong shape; I/O errors naming
    /// the path; the producer's errors.
    pub fn build_or_load<B, F>(
        dir: &Path,
        index: LatentCacheIndex,
        show_progress: bool,
        message: &'static str,
        mut produce: F,
    ) -> Result<Self, TrainError>
    where
        B: Backend,
        F: FnMut(usize, usize) -> Result<Tensor<B, 5>, TrainError>,
    {
        let (clips, chunk, probe) = (index.clips, index.chunk.max(1), index.latent_shape);
        if index.captions.len() != clips {
            return Err(TrainError::Data {
                step: 0,
                message: format!("{} captions for {clips} clips", index.captions.len()),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let index_path = dir.join(INDEX);
        if index_path.is_file() {
            let found = read_index(&index_path)?;
            if found != index {
                return Err(TrainError::corrupt(
                    &index_path,
                    format!(
                        "the cache holds {} clips from {:?}, this run needs {} clips from {:?}; \
                         delete {} to produce it again",
                        found.clips,
                        found.source,
                        index.clips,
                        index.source,
                        dir.display()
                    ),
                ));
            }
        } else {
            let text = serde_json::to_string_pretty(&index).expect("index serialises");
            write_atomically(&index_path, text.as_bytes())?;
        }

        let chunks = clips.div_ceil(chunk);
        let missing: Vec<usize> = (0..chunks)
            .filter(|&c| !chunk_path(dir, c).is_file())
            .collect();
        if !missing.is_empty() {
            let bar = progress_bar(
                show_progress,
                chunks as u64,
                (chunks - missing.len()) as u64,
            );
            bar.set_message(message);
            for &c in &missing {
                let start = c * chunk;
                let n = chunk.min(clips - start);
                let latents = produce(start, n)?;
                let found = latents.dims();
                if found[0] != n || found[1..] != probe[..] {
                    return Err(TrainError::Shape {
                        what: format!("latents of clips {start}..{}", start + n),
                        expected: [&[n][..], &probe[..]].concat(),
                        found: found.to_vec(),
                    });
                }
                let values = latents
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| TrainError::Data {
                        step: 0,
                        message: format!("latents to host: {e:?}"),
                    })?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                write_atomically(&chunk_path(dir, c), &bytes)?;
                bar.inc(1);
            }
            bar.finish_and_clear();
        }

        Self::read_chunks(dir, index)
    }

    /// Opens a finished cache without re-encoding anything (later stages: `adapt-head`,
    /// `distill`).
    ///
    /// # Errors
    /// A missing or foreign `index.json`, a missing or damaged chunk (named).
    pub fn open(dir: &Path) -> Result<Self, TrainError> {
        let index_path = dir.join(INDEX);
        let index = read_index(&index_path)?;
        if index.captions.len() != index.clips {
            return Err(TrainError::corrupt(
                &index_path,
                format!(
                    "{} captions for {} clips",
                    index.captions.len(),
                    index.clips
                ),
            ));
        }
        Self::read_chunks(dir, index)
    }

    fn read_chunks(dir: &Path, index: LatentCacheIndex) -> Result<Self, TrainError> {
        let probe = index.latent_shape;
        let per_clip: usize = probe.iter().product();
        let (clips, chunk) = (index.clips, index.chunk);
        let mut latents = Vec::with_capacity(clips * per_clip);
        for c in 0..clips.div_ceil(chunk) {
            let path = chunk_path(dir, c);
            let n = chunk.min(clips - c * chunk);
            let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
            if bytes.len() != n * per_clip * 4 {
                return Err(TrainError::corrupt(
                    &path,
                    format!(
                        "{} bytes, {n} latents of shape {probe:?} need {}; delete the file to \
                         produce it again",
                        bytes.len(),
                        n * per_clip * 4
                    ),
                ));
            }
            latents.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        let captions = index.captions.clone();
        Ok(Self {
            index,
            latents,
            captions,
        })
    }

    /// Number of cached clips.
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    /// Whether the cache holds no clip.
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    /// What the cache holds.
    pub fn index(&self) -> &LatentCacheIndex {
        &self.index
    }

    /// The latents of clips `indices` and their captions.
    ///
    /// # Shapes
    /// - output: `[indices.len(), z, frames, height, width]`
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 5>, Vec<String>) {
        let shape = self.index.latent_shape;
        let per_clip: usize = shape.iter().product();
        let mut values = Vec::with_capacity(indices.len() * per_clip);
        let mut captions = Vec::with_capacity(indices.len());
        for &i in indices {
            values.extend_from_slice(&self.latents[i * per_clip..(i + 1) * per_clip]);
            captions.push(self.captions[i].clone());
        }
        let dims = [indices.len(), shape[0], shape[1], shape[2], shape[3]];
        (
            Tensor::from_data(TensorData::new(values, dims), device),
            captions,
        )
    }
}

fn read_index(path: &Path) -> Result<LatentCacheIndex, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::corrupt(path, format!("not a latent cache index: {e}")))
}

fn chunk_path(dir: &Path, chunk: usize) -> PathBuf {
    dir.join(format!("chunk-{chunk:05}.f32"))
}
