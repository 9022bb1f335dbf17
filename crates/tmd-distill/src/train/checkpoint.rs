//! Checkpoint directories: `<run>/step-000123/` holding
//!
//! - one Burnpack file per model, `<name>.bpk` (reloaded through [`tmd_model::weights::load_module`]
//!   with [`KeyMap::identity`]), with `<name>.ids.json` giving each parameter's id so optimizer
//!   state (keyed by parameter id) re-attaches to the reloaded parameters;
//! - one optimizer state per optimizer, `<name>.mpk` (burn's [`NamedMpkFileRecorder`], full precision),
//!   or, from a run with a sharded optimizer, one shard per rank, `<name>-shard-R.mpk`;
//! - `state.json` ([`TrainState`]: step, seed, config hash, loss history tail);
//! - `checksums.json`: SHA-256 of every other file.
//!
//! A checkpoint is written into `step-000123.tmp/`, every file and the directory are fsynced, and
//! the directory is renamed into place, so a crash leaves either the whole checkpoint or a `.tmp`
//! directory that readers ignore. [`latest_valid`] picks the newest checkpoint whose checksums verify.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};

use super::error::TrainError;
use super::sharded_optimizer::shard_name;

/// Prefix of checkpoint directory names.
pub const PREFIX: &str = "step-";
/// Name of the checksum file in a checkpoint.
pub const CHECKSUMS: &str = "checksums.json";
/// Name of the training state file in a checkpoint.
pub const STATE: &str = "state.json";

/// Progress of a run as stored in `state.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Seed of the run: with the step it determines every random draw still to come.
    pub seed: u64,
    /// Hash of the settings that change the trajectory (see each stage's `resume_hash`).
    pub config_hash: String,
    /// The last losses, `(step, loss)`, oldest first.
    pub losses: Vec<(u64, f64)>,
    /// 0: the optimizer state is one file (`optimizer.mpk`); N: it is N shards, one per rank of a
    /// run with a sharded optimizer (`optimizer-shard-R.mpk`, see
    /// [`super::sharded_optimizer`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub optimizer_shards: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Directory name of the checkpoint after `step` steps: `step-000123`.
pub fn dir_name(step: u64) -> String {
    format!("{PREFIX}{step:06}")
}

/// A checkpoint directory (committed, not necessarily verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Steps completed when it was written.
    pub step: u64,
    /// The `step-000123` directory.
    pub path: PathBuf,
}

/// Writes one checkpoint into `step-000123.tmp/`; [`CheckpointWriter::commit`] makes it visible.
#[derive(Debug)]
pub struct CheckpointWriter {
    root: PathBuf,
    step: u64,
    tmp: PathBuf,
}

/// SHA-256 of a checkpoint file (the model directories' hash, `tmd_model::integrity`).
fn sha256_file(path: &Path) -> Result<String, TrainError> {
    Ok(tmd_model::integrity::sha256_file(path)?)
}

fn fsync(path: &Path) -> Result<(), TrainError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    let mut f = File::create(path).map_err(|e| TrainError::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| TrainError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrainError> {
    let text = fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::corrupt(path, e.to_string()))
}

/// Collects `(path, param id)` of every float parameter, paths dotted as in Burnpack.
struct IdCollector {
    stack: Vec<String>,
    ids: BTreeMap<String, u64>,
}

impl<B: Backend> ModuleVisitor<B> for IdCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.ids.insert(self.stack.join("."), param.id.val());
    }
}

/// Gives every float parameter the id stored for its path.
struct IdAssigner<'a> {
    stack: Vec<String>,
    ids: &'a BTreeMap<String, u64>,
    missing: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for IdAssigner<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let path = self.stack.join(".");
        let id = match self.ids.get(&path) {
            Some(&saved) => ParamId::from(saved),
            None => {
                self.missing.push(path);
                id
            }
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

impl CheckpointWriter {
    /// Starts the checkpoint after `step` steps under `root` (created if needed); a stale
    /// `step-000123.tmp/` from a crashed run is removed.
    pub fn begin(root: &Path, step: u64) -> Result<Self, TrainError> {
        fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        let tmp = root.join(format!("{}.tmp", dir_name(step)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            step,
            tmp,
        })
    }

    /// The checkpoint after `step` steps under `root` that another thread began
    /// ([`CheckpointWriter::begin`]) and will commit: for the ranks of a data-parallel run that
    /// add their own files (optimizer shards) to rank 0's checkpoint. Only the beginning writer
    /// may commit.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the directory does not exist.
    pub fn open(root: &Path, step: u64) -> Result<Self, TrainError> {
        let tmp = root.join(format!("{}.tmp", dir_name(step)));
        if !tmp.is_dir() {
            return Err(TrainError::io(
                &tmp,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the checkpoint being written is missing",
                ),
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            step,
            tmp,
        })
    }

    /// The temporary directory being written.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Saves `module` as `<name>.bpk` plus its parameter ids as `<name>.ids.json`.
    pub fn save_module<B: Backend, M: Module<B>>(
        &self,
        name: &str,
        module: &M,
    ) -> Result<(), TrainError> {
        save_burnpack::<B, M>(module, &self.tmp.join(format!("{name}.bpk")))?;
        let mut ids = IdCollector {
            stack: Vec::new(),
            ids: BTreeMap::new(),
        };
        module.visit(&mut ids);
        write_json(&self.tmp.join(format!("{name}.ids.json")), &ids.ids)
    }

    /// Saves an optimizer's state as `<name>.mpk`.
    pub fn save_optimizer<B, M, O>(&self, name: &str, optimizer: &O) -> Result<(), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let path = self.tmp.join(format!("{name}.mpk"));
        let recorder = super::mpk_writer::MpkFileWriter::default();
        let result = Recorder::<B>::record(&recorder, optimizer.to_record(), path.clone());
        // The I/O error itself (a full disk reads "No space left on device"), not the MessagePack
        // encoder's "invalid value write".
        if let Some(e) = recorder.take_io_error() {
            return Err(TrainError::io(path, e));
        }
        result.map_err(|e| TrainError::io(path, std::io::Error::other(e.to_string())))
    }

    /// Writes `state.json`.
    pub fn save_state(&self, state: &TrainState) -> Result<(), TrainError> {
        write_json(&self.tmp.join(STATE), state)
    }

    /// Writes `checksums.json`, fsyncs everything, renames the directory into place, and removes
    /// all but the newest `keep_last` checkpoints (0 keeps all).
    pub fn commit(self, keep_last: usize) -> Result<Checkpoint, TrainError> {
        let mut sums = BTreeMap::new();
        for entry in fs::read_dir(&self.tmp).map_err(|e| TrainError::io(&self.tmp, e))? {
            let path = entry.map_err(|e| TrainError::io(&self.tmp, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if path.is_file() && name != CHECKSUMS {
                fsync(&path)?;
                sums.insert(name, sha256_file(&path)?);
            }
        }
        let sums_path = self.tmp.join(CHECKSUMS);
        write_json(&sums_path, &sums)?;
        fsync(&sums_path)?;
        fsync(&self.tmp)?;
        let path = self.root.join(dir_name(self.step));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        fs::rename(&self.tmp, &path).map_err(|e| TrainError::io(&path, e))?;
        fsync(&self.root)?;
        if keep_last > 0 {
            // Only checkpoints older than this one are pruned: a newer one (left by an earlier
            // run) is never deleted by a run that resumed from before it.
            let all: Vec<Checkpoint> = list_checkpoints(&self.root)?
                .into_iter()
                .filter(|c| c.step <= self.step)
                .collect();
            for old in all.iter().take(all.len().saturating_sub(keep_last)) {
                fs::remove_dir_all(&old.path).map_err(|e| TrainError::io(&old.path, e))?;
            }
        }
        Ok(Checkpoint {
            step: self.step,
            path,
        })
    }
}

impl Checkpoint {
    /// Checks that every file listed in `checksums.json` exists and has its SHA-256, and that
    /// `state.json` is listed.
    pub fn verify(&self) -> Result<(), TrainError> {
        let sums: BTreeMap<String, String> = read_json(&self.path.join(CHECKSUMS))?;
        if !sums.contains_key(STATE) {
            return Err(TrainError::corrupt(
                &self.path,
                "state.json is not listed in checksums.json",
            ));
        }
        for (name, want) in &sums {
            let file = self.path.join(name);
            if !file.is_file() {
                return Err(TrainError::corrupt(
                    &file,
                    "file listed in checksums.json is missing",
                ));
            }
            let found = sha256_file(&file)?;
            if &found != want {
                return Err(TrainError::corrupt(
                    &file,
                    format!("SHA-256 {found} differs from checksums.json ({want})"),
                ));
            }
        }
        Ok(())
    }

    /// Reads `state.json`.
    pub fn state(&self) -> Result<TrainState, TrainError> {
        read_json(&self.path.join(STATE))
    }

    /// Loads `<name>.bpk` into `module` (which gives the architecture) and restores the saved
    /// parameter ids, so optimizer state saved beside it applies.
    pub fn load_module<B: Backend, M: Module<B>>(
        &self,
        name: &str,
        module: M,
    ) -> Result<M, TrainError> {
        let file = self.path.join(format!("{name}.bpk"));
        let source = WeightSource::open_files(&[file])?;
        let module = load_module::<B, M>(module, &source, &KeyMap::identity(), &[], name)?;
        let ids_path = self.path.join(format!("{name}.ids.json"));
        let ids: BTreeMap<String, u64> = read_json(&ids_path)?;
        let mut assigner = IdAssigner {
            stack: Vec::new(),
            ids: &ids,
            missing: Vec::new(),
        };
        let module = module.map(&mut assigner);
        if !assigner.missing.is_empty() {
            return Err(TrainError::corrupt(
                ids_path,
                format!("no id for parameters {:?}", assigner.missing),
            ));
        }
        Ok(module)
    }

    /// Loads the optimizer state `<name>.mpk` into `optimizer`; for a checkpoint of a sharded
    /// optimizer ([`TrainState::optimizer_shards`] > 0), every shard `<name>-shard-R.mpk`, merged.
    pub fn load_optimizer<B, M, O>(
        &self,
        name: &str,
        optimizer: O,
        device: &B::Device,
    ) -> Result<O, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
        O::Record: Default + IntoIterator + Extend<<O::Record as IntoIterator>::Item>,
    {
        let load = |file: String| -> Result<O::Record, TrainError> {
            let path = self.path.join(format!("{file}.mpk"));
            NamedMpkFileRecorder::<FullPrecisionSettings>::new()
                .load(path.clone(), device)
                .map_err(|e| TrainError::corrupt(&path, e.to_string()))
        };
        let shards = self.state()?.optimizer_shards;
        if shards == 0 {
            return Ok(optimizer.load_record(load(name.to_string())?));
        }
        let mut record = O::Record::default();
        for rank in 0..shards {
            record.extend(load(shard_name(name, rank))?);
        }
        Ok(optimizer.load_record(record))
    }
}

/// Committed checkpoints under `root`, oldest first (`.tmp` directories and other names are
/// ignored; a missing `root` has none).
pub fn list_checkpoints(root: &Path) -> Result<Vec<Checkpoint>, TrainError> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| TrainError::io(root, e))? {
        let path = entry.map_err(|e| TrainError::io(root, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(digits) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if let (true, Ok(step)) = (path.is_dir(), digits.parse::<u64>()) {
            out.push(Checkpoint { step, path });
        }
    }
    out.sort_by_key(|c| c.step);
    Ok(out)
}

/// Suffix given to a checkpoint directory that failed verification: `step-000123.corrupt`
/// (ignored by [`list_checkpoints`], kept for inspection).
pub const CORRUPT_SUFFIX: &str = ".corrupt";

/// Moves the checkpoint directory `path` aside to `<name>.corrupt` (`.corrupt-2`, ... if taken);
/// returns the new path.
pub fn move_aside(path: &Path) -> Result<PathBuf, TrainError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = path.with_file_name(format!("{name}{CORRUPT_SUFFIX}"));
    let mut n = 2;
    while target.exists() {
        target = path.with_file_name(format!("{name}{CORRUPT_SUFFIX}-{n}"));
        n += 1;
    }
    match fs::rename(path, &target) {
        Ok(()) => Ok(target),
        // Another rank of a data-parallel run moved it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(target),
        Err(e) => Err(TrainError::io(path, e)),
    }
}

/// Checkpoint directories under `root` moved aside as corrupt ([`move_aside`]), sorted.
pub fn corrupt_checkpoints(root: &Path) -> Result<Vec<PathBuf>, TrainError> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| TrainError::io(root, e))? {
        let path = entry.map_err(|e| TrainError::io(root, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with(PREFIX) && n.contains(CORRUPT_SUFFIX)) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The answer of [`latest_valid`].
#[derive(Debug, Default)]
pub struct LatestValid {
    /// Newest checkpoint whose checksums verify, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoints that failed verification, with the reason (newest first).
    pub skipped: Vec<(PathBuf, String)>,
}

/// The newest checkpoint under `root` whose checksums verify; corrupt newer ones are skipped and
/// reported in [`LatestValid::skipped`].
pub fn latest_valid(root: &Path) -> Result<LatestValid, TrainError> {
    let mut out = LatestValid::default();
    for ckpt in list_checkpoints(root)?.into_iter().rev() {
        match ckpt.verify().and_then(|_| ckpt.state().map(|_| ())) {
            Ok(()) => {
                out.checkpoint = Some(ckpt);
                break;
            }
            Err(e) => out.skipped.push((ckpt.path.clone(), e.to_string())),
        }
    }
    Ok(out)
}
