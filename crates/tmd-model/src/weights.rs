//! The one place where checkpoint tensors are read, renamed, checked and handed to a module.
//!
//! A [`WeightSource`] indexes the tensors of one or more weight files without reading them
//! (safetensors and Burnpack are memory-mapped, PyTorch `.pth` pickles are read lazily).
//! A [`KeyMap`] turns checkpoint keys (diffusers, official Wan, transformers names) into the
//! module paths of this crate. [`load_module`] checks the two against each other, key by key and
//! shape by shape, before a single tensor is materialised, and fails with an error that lists every
//! missing key, unexpected key and shape mismatch. [`write_burnpack`] streams the same checked
//! tensors into a Burnpack file one at a time, which is how `convert-weights` converts a 14B
//! checkpoint without holding it in memory.
//!
//! Layout: checkpoints written by PyTorch store `Linear` weights as `[out, in]` and call norm
//! parameters `weight`/`bias`; burn stores `[in, out]` and `gamma`/`beta`. Sources in PyTorch layout
//! are adapted here, using the container type of each target parameter (read from the module
//! itself, without initialising it).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_store::{ModuleSnapshot, ModuleStore, TensorSnapshot, TensorSnapshotError};
use regex::Regex;

use crate::error::{ModelError, Result};

/// Ordered renaming rules from checkpoint keys to module paths.
///
/// Each rule is a regex and a replacement (with `$1`-style groups); all rules are applied in order
/// to every key.
///
/// Branches ([`KeyMap::with_branch`]) send the keys under a prefix through another map instead:
/// a file holding two models' tensors side by side (a student's DiT and its flow head) is read
/// with one map.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    rules: Vec<(Regex, String)>,
    branches: Vec<(String, KeyMap)>,
}

impl KeyMap {
    /// Builds a key map from `(pattern, replacement)` pairs.
    ///
    /// # Panics
    /// If a pattern is not a valid regex: patterns are written in this crate, never by users.
    pub fn new(rules: &[(&str, &str)]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|(p, r)| {
                    (
                        Regex::new(p).unwrap_or_else(|e| panic!("invalid key-map regex {p}: {e}")),
                        r.to_string(),
                    )
                })
                .collect(),
            branches: Vec::new(),
        }
    }

    /// The identity map (keys are already module paths).
    pub fn identity() -> Self {
        Self::default()
    }

    /// A map that first strips `prefix` from every key that has it, then applies `self`.
    pub fn with_prefix_stripped(mut self, prefix: &str) -> Self {
        let rule = (
            Regex::new(&format!("^{}", regex::escape(prefix))).expect("escaped prefix is a regex"),
            String::new(),
        );
        self.rules.insert(0, rule);
        self
    }

    /// A map that applies `self`, then prepends `prefix` to every key.
    pub fn with_prefix_added(mut self, prefix: &str) -> Self {
        self.rules
            .push((Regex::new("^").expect("valid"), prefix.to_string()));
        self
    }

    /// A map that sends every key starting with `prefix` through `map` with the prefix removed,
    /// instead of through `self`'s rules; the first matching branch wins.
    pub fn with_branch(mut self, prefix: &str, map: KeyMap) -> Self {
        self.branches.push((prefix.to_string(), map));
        self
    }

    /// Maps one checkpoint key to a module path.
    pub fn map(&self, key: &str) -> String {
        for (prefix, map) in &self.branches {
            if let Some(rest) = key.strip_prefix(prefix.as_str()) {
                return map.map(rest);
            }
        }
        let mut out = key.to_string();
        for (re, rep) in &self.rules {
            out = re.replace_all(&out, rep.as_str()).into_owned();
        }
        out
    }
}

/// How the tensors of a source are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// PyTorch conventions: `Linear` weights `[out, in]`, norm parameters `weight`/`bias`.
    PyTorch,
    /// Burn conventions (files written by this project): `Linear` weights `[in, out]`, `gamma`/`beta`.
    Burn,
}

type Reader = Rc<dyn Fn() -> Result<TensorData>>;

/// One tensor of a source: where it lives, its dtype and shape, and how to read it.
#[derive(Clone)]
struct Entry {
    file: PathBuf,
    shape: Vec<usize>,
    layout: Layout,
    read: Reader,
}

/// An index of the tensors in one or more weight files, read lazily.
#[derive(Clone, Default)]
pub struct WeightSource {
    entries: BTreeMap<String, Entry>,
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightSource")
            .field("files", &self.files)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl WeightSource {
    /// Indexes every weight file (`*.safetensors`, `*.bpk`, `*.pth`) directly inside `dir`.
    ///
    /// Sharded diffusers checkpoints (`*-00001-of-00002.safetensors` + index) are covered because
    /// every shard is indexed.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut files = Vec::new();
        for item in read {
            let item = item.map_err(|e| ModelError::io(dir, e))?;
            let path = item.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".safetensors") || name.ends_with(".bpk") || name.ends_with(".pth") {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(ModelError::NoWeights {
                path: dir.to_path_buf(),
            });
        }
        files.sort();
        Self::open_files(&files)
    }

    /// Indexes the given weight files; the format follows each file's extension.
    pub fn open_files(files: &[PathBuf]) -> Result<Self> {
        let mut source = Self::default();
        for file in files {
            let name = file.to_string_lossy();
            if name.ends_with(".safetensors") {
                source.add_safetensors(file)?;
            } else if name.ends_with(".bpk") {
                source.add_burnpack(file)?;
            } else if name.ends_with(".pth") || name.ends_with(".pt") || name.ends_with(".bin") {
                source.add_pytorch(file)?;
            } else {
                return Err(ModelError::CorruptWeights {
                    path: file.clone(),
                    reason: "unknown weight format (expected .safetensors, .bpk or .pth)".into(),
                });
            }
        }
        Ok(source)
    }

    /// The files indexed.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the source holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every checkpoint key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| k.as_str())
    }

    /// The shape of `key` as stored, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    /// Reads `key` as f32 data, as stored (no layout change).
    pub fn read(&self, key: &str) -> Result<TensorData> {
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| ModelError::WeightMismatch {
                what: "read".into(),
                source_desc: self.describe(),
                missing: vec![key.to_string()],
                unexpected: vec![],
                shapes: vec![],
            })?;
        (entry.read)()
    }

    /// A short description of the files, for error messages.
    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [] => "<no files>".into(),
            [one] => one.display().to_string(),
            [first, rest @ ..] => format!("{} (+{} more files)", first.display(), rest.len()),
        }
    }

    fn insert(&mut self, key: String, entry: Entry) -> Result<()> {
        if let Some(prev) = self.entries.get(&key) {
            return Err(ModelError::DuplicateKey {
                key,
                first: prev.file.clone(),
                second: entry.file,
            });
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    fn add_safetensors(&mut self, path: &Path) -> Result<()> {
        use std::io::Read;
        use std::os::unix::fs::FileExt;
        let corrupt = |reason: String| ModelError::CorruptWeights {
            path: path.to_path_buf(),
            reason,
        };
        // Tensors are read with positioned reads, not a memory map: a map would count every page
        // read into the resident set, and a truncated file would fault instead of erroring.
        let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| ModelError::io(path, e))?.len() as usize;
        let mut n = [0u8; 8];
        file.read_exact(&mut n)
            .map_err(|e| corrupt(format!("cannot read the 8-byte header length: {e}")))?;
        let header_len = u64::from_le_bytes(n) as usize;
        if header_len > file_len.saturating_sub(8) || header_len > 100_000_000 {
            return Err(corrupt(format!(
                "header length {header_len} does not fit a file of {file_len} bytes"
            )));
        }
        let mut head = vec![0u8; 8 + header_len];
        head[..8].copy_from_slice(&n);
        file.read_exact(&mut head[8..])
            .map_err(|e| corrupt(format!("truncated header: {e}")))?;
        let data_start = 8 + header_len;
        let tensors = safetensors_layout(path, &head[8..], file_len - data_start)?;
        let file = Arc::new(file);
        for SafetensorsTensor {
            name,
            dtype: dt,
            shape,
            start,
            end,
        } in tensors
        {
            let (file, file_path, shape2) = (file.clone(), path.to_path_buf(), shape.clone());
            let key = name.clone();
            let read: Reader = Rc::new(move || {
                let mut bytes = vec![0u8; end - start];
                file.read_exact_at(&mut bytes, (data_start + start) as u64)
                    .map_err(|e| ModelError::CorruptWeights {
                        path: file_path.clone(),
                        reason: format!("reading tensor '{key}': {e}"),
                    })?;
                Ok(TensorData::from_bytes_vec(bytes, shape2.clone(), dt).convert_dtype(DType::F32))
            });
            self.insert(
                name,
                Entry {
                    file: path.to_path_buf(),
                    shape,
                    layout: Layout::PyTorch,
                    read,
                },
            )?;
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn add_snapshots(
        &mut self,
        path: &Path,
        snapshots: impl IntoIterator<Item = (String, TensorSnapshot)>,
        layout: Layout,
    ) -> Result<()> {
        for (name, snap) in snapshots {
            let dtype = format!("{:?}", snap.dtype);
            if !is_float_storage(snap.dtype) {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    key: name,
                    dtype,
                });
            }
            let shape = snap.shape.to_vec();
            let file = path.to_path_buf();
            let key = name.clone();
            let read: Reader = Rc::new(move || {
                snap.to_data().map(|d| d.convert_dtype(DType::F32)).map_err(
                    |e: TensorSnapshotError| ModelError::CorruptWeights {
                        path: file.clone(),
                        reason: format!("tensor '{key}': {e:?}"),
                    },
                )
            });
            self.insert(
                name,
                Entry {
                    file: path.to_path_buf(),
                    shape,
                    layout,
                    read,
                },
            )?;
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn add_burnpack(&mut self, path: &Path) -> Result<()> {
        let mut store = burn_store::BurnpackStore::from_file(path);
        let snaps = store
            .get_all_snapshots()
            .map_err(|e| ModelError::CorruptWeights {
                path: path.to_path_buf(),
                reason: format!("{e:?}"),
            })?
            .clone();
        self.add_snapshots(path, snaps, Layout::Burn)
    }

    fn add_pytorch(&mut self, path: &Path) -> Result<()> {
        let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| {
            ModelError::CorruptWeights {
                path: path.to_path_buf(),
                reason: format!("{e}"),
            }
        })?;
        self.add_snapshots(path, reader.into_tensors(), Layout::PyTorch)
    }
}

/// One tensor of a safetensors header, checked by [`safetensors_layout`].
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsTensor {
    /// Its key.
    pub name: String,
    /// Storage dtype.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// First byte in the data section.
    pub start: usize,
    /// One past its last byte in the data section.
    pub end: usize,
}

/// Parses and checks the JSON header of a safetensors file (`header`, the bytes after the 8-byte
/// length) against a data section of `data_bytes` bytes: every tensor has a supported float dtype,
/// a shape whose size matches its `data_offsets` (no overflow), lies inside the data section, and
/// no two tensors share bytes (named by key: an overlap would make one tensor silently hold
/// another's values); the tensors must cover the data section exactly. Never panics.
pub fn safetensors_layout(
    path: &Path,
    header: &[u8],
    data_bytes: usize,
) -> Result<Vec<SafetensorsTensor>> {
    let corrupt = |reason: String| ModelError::CorruptWeights {
        path: path.to_path_buf(),
        reason,
    };
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| corrupt(format!("invalid header JSON: {e}")))?;
    let mut tensors = Vec::new();
    let mut data_len = 0usize;
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| corrupt(format!("tensor '{name}': {what}"));
        let dtype = info["dtype"]
            .as_str()
            .ok_or_else(|| bad("no dtype"))?
            .to_string();
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape is not a list of integers"))?;
        let offsets: Vec<usize> = info["data_offsets"]
            .as_array()
            .ok_or_else(|| bad("no data_offsets"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("data_offsets are not integers"))?;
        let [start, end] = offsets[..] else {
            return Err(bad("data_offsets must hold two integers"));
        };
        let (dt, size) = match dtype.as_str() {
            "F32" => (DType::F32, 4),
            "F16" => (DType::F16, 2),
            "BF16" => (DType::BF16, 2),
            "F64" => (DType::F64, 8),
            _ => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    key: name,
                    dtype,
                })
            }
        };
        let bytes = shape
            .iter()
            .try_fold(size, |acc: usize, &d| acc.checked_mul(d));
        if end < start || bytes != Some(end - start) {
            return Err(bad(&format!(
                "data_offsets [{start}, {end}] do not match shape {shape:?} of {dtype}"
            )));
        }
        data_len = data_len.max(end);
        tensors.push(SafetensorsTensor {
            name,
            dtype: dt,
            shape,
            start,
            end,
        });
    }
    if data_len != data_bytes {
        return Err(corrupt(format!(
            "the header describes {data_len} bytes of tensor data but the file holds \
             {data_bytes} (truncated or padded file)"
        )));
    }
    let mut by_start: Vec<&SafetensorsTensor> =
        tensors.iter().filter(|t| t.end > t.start).collect();
    by_start.sort_by_key(|t| (t.start, t.end));
    for pair in by_start.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(corrupt(format!(
                "tensors '{}' (bytes {}..{}) and '{}' (bytes {}..{}) overlap: the header is \
                 inconsistent, one of them would hold the other's values",
                pair[0].name, pair[0].start, pair[0].end, pair[1].name, pair[1].start, pair[1].end
            )));
        }
    }
    Ok(tensors)
}

/// Whether weights stored as `dtype` can be read (and converted to the backend's float type).
pub(crate) fn is_float_storage(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
}

/// A float parameter of a module as seen without initialising it.
#[derive(Clone, Debug)]
pub struct ParamSlot {
    /// Dotted module path, e.g. `blocks.0.self_attn.q.weight`.
    pub path: String,
    /// Type of the innermost struct holding it, e.g. `Struct:Linear`.
    pub container: String,
    /// Shape in burn layout.
    pub shape: Vec<usize>,
    id: ParamId,
}

/// Lists the float parameters of `module` (path, container type, shape) without initialising any.
pub fn param_slots<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamSlot> {
    struct Visitor {
        path: Vec<String>,
        containers: Vec<String>,
        slots: Vec<ParamSlot>,
    }
    impl<B: Backend> ModuleVisitor<B> for Visitor {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
            self.containers.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let container = self
                .containers
                .iter()
                .rev()
                .find(|c| c.starts_with("Struct:"))
                .cloned()
                .unwrap_or_default();
            self.slots.push(ParamSlot {
                path: self.path.join("."),
                container,
                shape: param.lazy_shape().to_vec(),
                id: param.id,
            });
        }
    }
    let mut visitor = Visitor {
        path: vec![],
        containers: vec![],
        slots: vec![],
    };
    module.visit(&mut visitor);
    visitor.slots
}

fn is_norm(container: &str) -> bool {
    matches!(
        container,
        "Struct:LayerNorm"
            | "Struct:RmsNorm"
            | "Struct:GroupNorm"
            | "Struct:BatchNorm"
            | "Struct:InstanceNorm"
    )
}

/// The PyTorch name of a burn parameter path (norm `gamma`/`beta` -> `weight`/`bias`).
pub fn pytorch_name(slot: &ParamSlot) -> String {
    if is_norm(&slot.container) {
        if let Some(stem) = slot.path.strip_suffix(".gamma") {
            return format!("{stem}.weight");
        }
        if let Some(stem) = slot.path.strip_suffix(".beta") {
            return format!("{stem}.bias");
        }
    }
    slot.path.clone()
}

/// Whether a parameter is stored transposed in PyTorch layout (a `Linear` weight: burn `[in, out]`,
/// PyTorch `[out, in]`).
pub fn needs_transpose(slot: &ParamSlot) -> bool {
    slot.container == "Struct:Linear" && slot.path.ends_with(".weight") && slot.shape.len() == 2
}

/// The transpose of a 2-D tensor, as f32.
pub fn transpose_2d(data: TensorData) -> Result<TensorData> {
    let [rows, cols] = [data.shape[0], data.shape[1]];
    let values: Vec<f32> = data.into_vec().map_err(|e| ModelError::CorruptWeights {
        path: PathBuf::new(),
        reason: format!("{e:?}"),
    })?;
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    Ok(TensorData::new(out, [cols, rows]))
}

/// A checked, lazy plan: for each module parameter, which source tensor fills it and how.
pub struct WeightPlan {
    items: Vec<(ParamSlot, Entry)>,
}

impl WeightPlan {
    /// Number of tensors in the plan.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the plan is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.items
            .iter()
            .map(|(s, _)| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Turns the plan into burn snapshots (burn layout, `dtype`), still lazy.
    ///
    /// Read errors inside a snapshot are kept in `errors` (a snapshot can only report a string).
    fn snapshots(self, dtype: DType, errors: Rc<RefCell<Vec<ModelError>>>) -> Vec<TensorSnapshot> {
        self.items
            .into_iter()
            .map(|(slot, entry)| {
                let transpose = entry.layout == Layout::PyTorch && needs_transpose(&slot);
                let read = entry.read.clone();
                let errors = errors.clone();
                let shape = slot.shape.clone();
                let path = slot.path.clone();
                let data_fn = Rc::new(move || {
                    let data = read().and_then(|d| if transpose { transpose_2d(d) } else { Ok(d) });
                    match data {
                        Ok(d) => Ok(d.convert_dtype(dtype)),
                        Err(e) => {
                            let msg = e.to_string();
                            errors.borrow_mut().push(e);
                            Err(TensorSnapshotError::IoError(format!("{path}: {msg}")))
                        }
                    }
                });
                TensorSnapshot::from_closure(
                    data_fn,
                    dtype,
                    shape.into(),
                    slot.path.split('.').map(str::to_string).collect(),
                    vec![slot.container.clone()],
                    slot.id,
                )
            })
            .collect()
    }
}

/// Matches the tensors of `source` (renamed by `map`) against the parameters of `module`.
///
/// Keys whose mapped path matches one of the `ignore` regexes are skipped (e.g. a duplicated
/// embedding table). Fails with [`ModelError::WeightMismatch`] listing every missing key,
/// unexpected key and shape mismatch, before anything is read.
pub fn plan<B: Backend, M: Module<B>>(
    module: &M,
    source: &WeightSource,
    map: &KeyMap,
    ignore: &[&str],
    what: &str,
) -> Result<WeightPlan> {
    let ignore: Vec<Regex> = ignore
        .iter()
        .map(|p| Regex::new(p).unwrap_or_else(|e| panic!("invalid ignore regex {p}: {e}")))
        .collect();
    let slots = param_slots::<B, M>(module);
    // Target names in each layout: burn name, and the PyTorch name of the same parameter.
    let mut by_burn: HashMap<&str, usize> = HashMap::new();
    let mut by_torch: HashMap<String, usize> = HashMap::new();
    for (i, slot) in slots.iter().enumerate() {
        by_burn.insert(slot.path.as_str(), i);
        by_torch.insert(pytorch_name(slot), i);
    }
    let mut filled: Vec<Option<(String, Entry)>> = vec![None; slots.len()];
    let mut unexpected = Vec::new();
    let mut shapes = Vec::new();
    for (key, entry) in &source.entries {
        let mapped = map.map(key);
        if ignore
            .iter()
            .any(|re| re.is_match(&mapped) || re.is_match(key))
        {
            continue;
        }
        let idx = match entry.layout {
            Layout::Burn => by_burn.get(mapped.as_str()).copied(),
            Layout::PyTorch => by_torch.get(&mapped).copied(),
        };
        let Some(idx) = idx else {
            unexpected.push(if &mapped == key {
                key.clone()
            } else {
                format!("{key} (mapped to {mapped})")
            });
            continue;
        };
        let slot = &slots[idx];
        let mut expected = slot.shape.clone();
        if entry.layout == Layout::PyTorch && needs_transpose(slot) {
            expected.reverse();
        }
        if let Some((other, _)) = &filled[idx] {
            return Err(ModelError::DuplicateKey {
                key: format!("{} (from '{other}' and '{key}')", slot.path),
                first: source.entries[other].file.clone(),
                second: entry.file.clone(),
            });
        }
        if expected != entry.shape {
            shapes.push((
                format!("{key} -> {}", slot.path),
                expected,
                entry.shape.clone(),
            ));
            continue;
        }
        filled[idx] = Some((key.clone(), entry.clone()));
    }
    let missing: Vec<String> = slots
        .iter()
        .zip(&filled)
        .filter(|(_, f)| f.is_none())
        .map(|(s, _)| s.path.clone())
        .filter(|p| {
            !shapes
                .iter()
                .any(|(k, _, _)| k.ends_with(&format!("-> {p}")))
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !shapes.is_empty() {
        return Err(ModelError::WeightMismatch {
            what: what.to_string(),
            source_desc: source.describe(),
            missing,
            unexpected,
            shapes,
        });
    }
    let items = slots
        .into_iter()
        .zip(filled)
        .map(|(slot, f)| (slot, f.expect("checked above").1))
        .collect();
    Ok(WeightPlan { items })
}

/// The float dtype of backend `B` (what loaded tensors are converted to).
pub fn float_dtype<B: Backend>() -> DType {
    <B::FloatElem as burn::tensor::Element>::dtype()
}

/// Loads `module` from `source`: checks every key and shape (see [`plan`]), then reads tensors
/// one at a time into the module's parameters, converted to the backend's float type.
///
/// `what` names the model in error messages (e.g. `"DiT"`).
pub fn load_module<B: Backend, M: Module<B>>(
    mut module: M,
    source: &WeightSource,
    map: &KeyMap,
    ignore: &[&str],
    what: &str,
) -> Result<M> {
    let plan = plan::<B, M>(&module, source, map, ignore, what)?;
    let errors = Rc::new(RefCell::new(Vec::new()));
    let snapshots = plan.snapshots(float_dtype::<B>(), errors.clone());
    let result = module.apply(snapshots, None, None, false);
    if let Some(err) = errors.borrow_mut().drain(..).next() {
        return Err(err);
    }
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::WeightMismatch {
            what: what.to_string(),
            source_desc: source.describe(),
            missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
            unexpected: result.unused.clone(),
            shapes: result
                .errors
                .iter()
                .map(|e| (e.to_string(), vec![], vec![]))
                .collect(),
        });
    }
    Ok(module)
}

/// Streams the checked tensors of `source` into a Burnpack file at `out`, in burn layout and
/// `dtype`, one tensor in memory at a time; the file appears atomically (written to a temporary
/// name, then renamed). Returns the number of tensors written.
///
/// `module` only provides the parameter names and shapes: it is never initialised.
pub fn write_burnpack<B: Backend, M: Module<B>>(
    module: &M,
    source: &WeightSource,
    map: &KeyMap,
    ignore: &[&str],
    what: &str,
    dtype: DType,
    out: &Path,
) -> Result<usize> {
    let plan = plan::<B, M>(module, source, map, ignore, what)?;
    let n = plan.len();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let snapshots = plan.snapshots(dtype, errors.clone());
    write_snapshots_atomically(snapshots, out)?;
    if let Some(err) = errors.borrow_mut().drain(..).next() {
        return Err(err);
    }
    Ok(n)
}

/// Saves an initialised module to a Burnpack file atomically (temporary file, then rename).
pub fn save_burnpack<B: Backend, M: Module<B>>(module: &M, out: &Path) -> Result<()> {
    let snapshots = module.collect(None, None, false);
    write_snapshots_atomically(snapshots, out)
}

pub(crate) fn write_snapshots_atomically(snapshots: Vec<TensorSnapshot>, out: &Path) -> Result<()> {
    let tmp = tmp_path(out);
    let writer = burn_store::BurnpackWriter::new(snapshots);
    if let Err(e) = writer.write_to_file(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(burnpack_write_error(out, e));
    }
    std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))
}

/// A failed Burnpack write as what it is: an I/O error (a full disk reads "No space left on
/// device", with [`std::io::ErrorKind::StorageFull`]), not a corrupt weight file.
fn burnpack_write_error(out: &Path, e: burn_store::BurnpackError) -> ModelError {
    let reason = match e {
        burn_store::BurnpackError::IoError(msg) => msg,
        other => format!("{other}"),
    };
    let kind = if reason.contains("os error 28") || reason.contains("No space left") {
        std::io::ErrorKind::StorageFull
    } else {
        std::io::ErrorKind::Other
    };
    ModelError::io(
        out,
        std::io::Error::new(kind, format!("writing failed: {reason}")),
    )
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    out.with_file_name(name)
}

/// `module` with a fresh [`ParamId`](burn::module::ParamId) and, on autodiff backends, a fresh
/// leaf tensor for every parameter, values kept.
///
/// A clone of a module shares its parameter ids and its autodiff leaves; two clones inside one
/// trained module (a student and a fake score both initialised from one teacher) would then share
/// gradients and optimizer state. Every copy of a teacher that trains goes through this.
pub fn with_fresh_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Fresh;
    impl<B: Backend> burn::module::ModuleMapper<B> for Fresh {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            let require_grad = param.is_require_grad();
            let (_, tensor, _) = param.consume();
            let tensor = tensor.detach();
            let tensor = if require_grad {
                tensor.require_grad()
            } else {
                tensor
            };
            burn::module::Param::initialized(burn::module::ParamId::new(), tensor)
        }
    }
    module.map(&mut Fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};

    type B = NdArray<f32>;

    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        proj: Linear<B>,
        norm: LayerNorm<B>,
    }

    fn toy(device: &burn::backend::ndarray::NdArrayDevice) -> Toy<B> {
        Toy {
            proj: LinearConfig::new(3, 2).init(device),
            norm: LayerNormConfig::new(2).init(device),
        }
    }

    fn write_st(path: &Path, tensors: &[(&str, Vec<f32>, Vec<usize>)]) {
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(k, v, s)| {
                let bytes: &[u8] = bytemuck_f32(v);
                (
                    k.to_string(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytes)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn bytemuck_f32(v: &[f32]) -> &[u8] {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }
    }

    /// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
    fn tmpdir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("tmd-weights-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn loads_pytorch_layout_with_transpose_and_norm_rename() {
        let tmp = tmpdir("ok");
        let dir = tmp.path();
        let w: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [out=2, in=3]
        write_st(
            &dir.join("m.safetensors"),
            &[
                ("model.fc.weight", w, vec![2, 3]),
                ("model.fc.bias", vec![10.0, 20.0], vec![2]),
                ("model.ln.weight", vec![1.5, 2.5], vec![2]),
                ("model.ln.bias", vec![0.5, -0.5], vec![2]),
            ],
        );
        let device = Default::default();
        let source = WeightSource::open_dir(dir).unwrap();
        let map =
            KeyMap::new(&[(r"^fc\.", "proj."), (r"^ln\.", "norm.")]).with_prefix_stripped("model.");
        let m = load_module::<B, _>(toy(&device), &source, &map, &[], "toy").unwrap();
        // burn stores [in, out]: element [i, o] = torch [o, i] = o*3 + i.
        let got: Vec<f32> = m.proj.weight.val().into_data().to_vec().unwrap();
        assert_eq!(got, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let gamma: Vec<f32> = m.norm.gamma.val().into_data().to_vec().unwrap();
        assert_eq!(gamma, vec![1.5, 2.5]);

        // Round trip through a Burnpack (burn layout) gives the same module.
        let out = dir.join("m.bpk");
        save_burnpack(&m, &out).unwrap();
        let bp = WeightSource::open_files(&[out]).unwrap();
        let m2 = load_module::<B, _>(toy(&device), &bp, &KeyMap::identity(), &[], "toy").unwrap();
        let got2: Vec<f32> = m2.proj.weight.val().into_data().to_vec().unwrap();
        assert_eq!(got, got2);
    }

    #[test]
    fn mismatches_are_listed_by_key_and_shape() {
        let tmp = tmpdir("bad");
        let dir = tmp.path();
        write_st(
            &dir.join("m.safetensors"),
            &[
                ("fc.weight", vec![0.0; 6], vec![3, 2]),
                ("fc.bias", vec![0.0; 2], vec![2]),
                ("extra.weight", vec![0.0; 1], vec![1]),
            ],
        );
        let device = Default::default();
        let source = WeightSource::open_dir(dir).unwrap();
        let map = KeyMap::new(&[(r"^fc\.", "proj.")]);
        let err = load_module::<B, _>(toy(&device), &source, &map, &[], "toy").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("norm.gamma"), "{msg}");
        assert!(msg.contains("extra.weight"), "{msg}");
        assert!(
            msg.contains("fc.weight -> proj.weight: expected [2, 3], found [3, 2]"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_file_is_reported_with_its_path() {
        let tmp = tmpdir("trunc");
        let dir = tmp.path();
        let path = dir.join("m.safetensors");
        write_st(&path, &[("fc.weight", vec![0.0; 6], vec![2, 3])]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let err = WeightSource::open_dir(dir).unwrap_err();
        assert!(matches!(err, ModelError::CorruptWeights { .. }), "{err}");
        assert!(err.to_string().contains("m.safetensors"));
        let empty = tmpdir("empty");
        assert!(matches!(
            WeightSource::open_dir(empty.path()).unwrap_err(),
            ModelError::NoWeights { .. }
        ));
    }
}
