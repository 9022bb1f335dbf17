//! Streaming, seeded dataset of world clips.
//!
//! Clip `i` of a [`WorldDataset`] is a pure function of `(seed, i)`: nothing is stored, any clip can be
//! rendered on demand, and a stream of batches runs forever without materialising the dataset.
//! Attribute combinations are drawn as seeded per-epoch permutations of the split's combinations, so
//! every combination appears exactly once in each run of `combos().len()` consecutive indices
//! (aligned to multiples of it).

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use rayon::prelude::*;

use super::attributes::Attributes;
use super::error::WorldError;
use super::render::{render, Clip, ClipSpec};
use super::rng::{hash, Rng};
use super::split::Split;

/// An endless, seeded dataset of clips from one split.
#[derive(Debug, Clone)]
pub struct WorldDataset {
    split: Option<Split>,
    seed: u64,
    spec: ClipSpec,
    combos: Vec<Attributes>,
}

impl WorldDataset {
    /// A dataset over the combinations of `split` (`None`: all 960 combinations, e.g. to train the
    /// evaluator classifier), seeded by `seed`, rendering clips of `spec`.
    pub fn new(split: Option<Split>, seed: u64, spec: ClipSpec) -> Self {
        let combos = match split {
            Some(s) => s.combos(),
            None => Attributes::all().collect(),
        };
        Self {
            split,
            seed,
            spec,
            combos,
        }
    }

    /// The split drawn from (`None`: all combinations).
    pub fn split(&self) -> Option<Split> {
        self.split
    }

    /// The dataset seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Size of the clips.
    pub fn spec(&self) -> ClipSpec {
        self.spec
    }

    /// The combinations drawn from, in [`Attributes::index`] order.
    pub fn combos(&self) -> &[Attributes] {
        &self.combos
    }

    /// Attributes of clip `i`: position `i % n` of a seeded permutation of the `n` combinations, drawn
    /// afresh for each epoch `i / n`.
    pub fn attributes(&self, i: u64) -> Attributes {
        let n = self.combos.len() as u64;
        let (epoch, pos) = (i / n, (i % n) as usize);
        // Fisher-Yates shuffle of 0..n, run only up to `pos` (the prefix is final once swapped in).
        let mut rng = Rng::new(hash(self.seed, &[0xe90c, epoch]));
        let mut perm: Vec<u32> = (0..n as u32).collect();
        for k in 0..=pos {
            let j = k + rng.below(n as usize - k);
            perm.swap(k, j);
        }
        self.combos[perm[pos] as usize]
    }

    /// Render seed of clip `i`.
    pub fn clip_seed(&self, i: u64) -> u64 {
        hash(self.seed, &[0xc11b, i])
    }

    /// Caption of clip `i` (equal to `clip(i).caption`, without rendering).
    pub fn caption(&self, i: u64) -> String {
        super::render::clip_caption(&self.attributes(i), self.clip_seed(i))
    }

    /// Clip `i` (a pure function of the dataset seed, split, spec and `i`).
    pub fn clip(&self, i: u64) -> Clip {
        render(&self.attributes(i), self.clip_seed(i), &self.spec)
    }

    /// Clips `start .. start + n`, rendered in parallel (rayon).
    pub fn batch(&self, start: u64, n: usize) -> Vec<Clip> {
        (0..n as u64)
            .into_par_iter()
            .map(|k| self.clip(start + k))
            .collect()
    }

    /// An endless iterator of batches `[start, start + n)`, `[start + n, start + 2n)`, ... rendered
    /// lazily, one batch per `next()`.
    pub fn batches(&self, start: u64, batch_size: usize) -> Batches {
        Batches {
            data: self.clone(),
            next: start,
            batch_size,
        }
    }

    /// Like [`WorldDataset::batches`], but rendered ahead on a background thread, keeping up to `depth`
    /// batches (at least 1) ready. The thread stops when the iterator is dropped.
    pub fn prefetched_batches(
        &self,
        start: u64,
        batch_size: usize,
        depth: usize,
    ) -> PrefetchedBatches {
        let (tx, rx) = sync_channel(depth.max(1));
        let mut batches = self.batches(start, batch_size);
        let worker = std::thread::spawn(move || {
            for batch in batches.by_ref() {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        PrefetchedBatches {
            rx: Some(rx),
            worker: Some(worker),
        }
    }
}

/// Endless iterator of batches of a [`WorldDataset`]; see [`WorldDataset::batches`].
#[derive(Debug, Clone)]
pub struct Batches {
    data: WorldDataset,
    next: u64,
    batch_size: usize,
}

impl Batches {
    /// Index of the first clip of the next batch.
    pub fn position(&self) -> u64 {
        self.next
    }
}

impl Iterator for Batches {
    type Item = Vec<Clip>;

    fn next(&mut self) -> Option<Vec<Clip>> {
        let batch = self.data.batch(self.next, self.batch_size);
        self.next = self.next.wrapping_add(self.batch_size as u64);
        Some(batch)
    }
}

/// Endless iterator of batches rendered ahead on a background thread; see
/// [`WorldDataset::prefetched_batches`].
#[derive(Debug)]
pub struct PrefetchedBatches {
    rx: Option<Receiver<Vec<Clip>>>,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for PrefetchedBatches {
    type Item = Vec<Clip>;

    /// The next batch; `None` only if the rendering thread died.
    fn next(&mut self) -> Option<Vec<Clip>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for PrefetchedBatches {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it exits after its current batch.
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Stacks clips into one video tensor.
///
/// # Shapes
/// - output: `[n, 3, frames, height, width]`, values in `[-1, 1]`
///
/// # Errors
/// [`WorldError::Empty`] for no clips, [`WorldError::SpecMismatch`] if the clips differ in size.
pub fn to_tensor<B: Backend>(
    clips: &[Clip],
    device: &B::Device,
) -> Result<Tensor<B, 5>, WorldError> {
    let first = clips
        .first()
        .ok_or(WorldError::Empty { what: "to_tensor" })?;
    let spec = first.spec;
    let mut values = Vec::with_capacity(clips.len() * spec.numel());
    for (index, clip) in clips.iter().enumerate() {
        if clip.spec != spec {
            return Err(WorldError::SpecMismatch {
                index,
                expected: spec,
                found: clip.spec,
            });
        }
        values.extend_from_slice(&clip.pixels);
    }
    let shape = [clips.len(), 3, spec.frames, spec.height, spec.width];
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// The captions of `clips`, in order.
pub fn captions(clips: &[Clip]) -> Vec<String> {
    clips.iter().map(|c| c.caption.clone()).collect()
}
