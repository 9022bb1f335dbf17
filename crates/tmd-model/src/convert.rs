//! Conversion of official Wan2.1 and diffusers checkpoints into a converted model directory
//! (see [`crate::model_dir`]).
//!
//! Conversion streams: each component's module is built *uninitialised* (burn parameters are
//! lazy), only to know its parameter names and shapes; every source key is checked against it
//! (missing, unexpected, shape) before anything is written; then tensors are read, renamed,
//! re-laid-out and written to a Burnpack file one at a time. Peak memory is therefore about one
//! tensor (the largest of Wan2.1 14B is the 256,384 x 4096 umT5 embedding), not the model.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::tensor::DType;

use crate::dit::{self, WanConfig};
use crate::error::{ModelError, Result};
use crate::model_dir::{
    write_config, ComponentEntry, Manifest, SamplingDefaults, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use crate::t5::{self, UMT5Config};
use crate::vae::{self, WanVaeConfig};
use crate::weights::{write_burnpack, KeyMap, WeightSource};

/// Skeleton modules are built on the CPU backend: never initialised, so they cost no memory.
type Skeleton = NdArray<f32>;

/// The layout of a checkpoint to convert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLayout {
    /// The official Wan2.1 release: `diffusion_pytorch_model*.safetensors` + `config.json`,
    /// `Wan2.1_VAE.pth`, `models_t5_umt5-xxl-enc-bf16.pth`, `google/umt5-xxl/tokenizer.json`.
    Official,
    /// The diffusers layout: `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`.
    Diffusers,
}

/// Official file names.
pub mod official {
    /// DiT config.
    pub const DIT_CONFIG: &str = "config.json";
    /// VAE checkpoint.
    pub const VAE: &str = "Wan2.1_VAE.pth";
    /// umT5 checkpoint.
    pub const T5: &str = "models_t5_umt5-xxl-enc-bf16.pth";
    /// Tokenizer.
    pub const TOKENIZER: &str = "google/umt5-xxl/tokenizer.json";
}

/// Detects the layout of `src` from the files it holds.
pub fn detect_layout(src: &Path) -> Result<SourceLayout> {
    if src.join("transformer").is_dir() {
        return Ok(SourceLayout::Diffusers);
    }
    if src.join(official::VAE).exists() || src.join(official::T5).exists() {
        return Ok(SourceLayout::Official);
    }
    Err(ModelError::config(
        src,
        format!(
            "not a Wan2.1 checkpoint folder: expected either the official files ({}, {}, \
             diffusion_pytorch_model*.safetensors, {}) or the diffusers folders transformer/, vae/, \
             text_encoder/, tokenizer/",
            official::VAE,
            official::T5,
            official::DIT_CONFIG
        ),
    ))
}

/// Conversion options.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Storage dtype of the written weights (f32 or bf16).
    pub dtype: DType,
    /// Sampling defaults written into the manifest.
    pub defaults: SamplingDefaults,
    /// VAE config for the official layout, whose `.pth` carries none (default: Wan2.1's VAE).
    pub vae_config: Option<WanVaeConfig>,
    /// umT5 config for the official layout (default: umT5-XXL).
    pub t5_config: Option<UMT5Config>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            defaults: SamplingDefaults::default(),
            vae_config: None,
            t5_config: None,
        }
    }
}

/// Files of each component in the source.
struct Plan {
    dit_config: WanConfig,
    dit_files: Vec<PathBuf>,
    dit_map: KeyMap,
    vae_config: WanVaeConfig,
    vae_files: Vec<PathBuf>,
    vae_map: KeyMap,
    t5_config: UMT5Config,
    t5_files: Vec<PathBuf>,
    t5_map: KeyMap,
    tokenizer: PathBuf,
}

fn must_exist(p: PathBuf) -> Result<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        Err(ModelError::io(
            &p,
            std::io::Error::new(std::io::ErrorKind::NotFound, "required file is missing"),
        ))
    }
}

fn files_with_suffix(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let p = item.map_err(|e| ModelError::io(dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(prefix) && name.ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ModelError::NoWeights {
            path: dir.join(format!("{prefix}*{suffix}")),
        });
    }
    Ok(out)
}

fn plan(src: &Path, layout: &SourceLayout, opts: &ConvertOptions) -> Result<Plan> {
    Ok(match layout {
        SourceLayout::Official => {
            let vae_config = opts.vae_config.clone().unwrap_or_else(WanVaeConfig::wan2_1);
            Plan {
                dit_config: WanConfig::from_original_config(&must_exist(
                    src.join(official::DIT_CONFIG),
                )?)?,
                dit_files: files_with_suffix(src, "diffusion_pytorch_model", ".safetensors")?,
                dit_map: dit::original_key_map(),
                vae_files: vec![must_exist(src.join(official::VAE))?],
                vae_map: vae::original_key_map_for(&vae_config),
                vae_config,
                t5_config: opts.t5_config.clone().unwrap_or_else(UMT5Config::umt5_xxl),
                t5_files: vec![must_exist(src.join(official::T5))?],
                t5_map: t5::original_key_map(),
                tokenizer: must_exist(src.join(official::TOKENIZER))?,
            }
        }
        SourceLayout::Diffusers => Plan {
            dit_config: WanConfig::from_diffusers_config(&must_exist(
                src.join("transformer/config.json"),
            )?)?,
            dit_files: files_with_suffix(&src.join("transformer"), "", ".safetensors")?,
            dit_map: dit::diffusers_key_map(),
            vae_config: WanVaeConfig::from_diffusers_config(must_exist(
                src.join("vae/config.json"),
            )?)?,
            vae_files: files_with_suffix(&src.join("vae"), "", ".safetensors")?,
            vae_map: vae::diffusers_key_map(),
            t5_config: UMT5Config::from_hf_config(must_exist(
                src.join("text_encoder/config.json"),
            )?)?,
            t5_files: files_with_suffix(&src.join("text_encoder"), "", ".safetensors")?,
            t5_map: t5::hf_key_map(),
            tokenizer: must_exist(src.join("tokenizer/tokenizer.json"))?,
        },
    })
}

/// Progress events of a conversion, for a progress display.
#[derive(Clone, Debug)]
pub enum ConvertEvent {
    /// A component is written: name, tensors, parameters.
    Done(&'static str, usize, usize),
}

/// Converts the checkpoint in `src` into a model directory at `out`.
///
/// Every component is checked key by key before its file is written; the manifest is written
/// last, so an interrupted conversion leaves no directory that looks complete, and rerunning it
/// rewrites the components.
pub fn convert(
    src: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(ConvertEvent),
) -> Result<Manifest> {
    check_out_apart(src, out)?;
    let layout = detect_layout(src)?;
    let plan = plan(src, &layout, opts)?;
    let device = Default::default();
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    remove_stale_manifest(out)?;

    let mut component = |name: &'static str,
                         config_json: String,
                         write: &mut dyn FnMut(&Path) -> Result<(usize, usize)>|
     -> Result<ComponentEntry> {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
        crate::model_dir::write_atomically(&dir.join("config.json"), config_json.as_bytes())?;
        let (tensors, params) = write(&dir.join("model.bpk"))?;
        progress(ConvertEvent::Done(name, tensors, params));
        Ok(ComponentEntry {
            config: format!("{name}/config.json"),
            weights: vec![format!("{name}/model.bpk")],
            tensors,
            params,
        })
    };

    let dit_src = WeightSource::open_files(&plan.dit_files)?;
    let dit_skel = plan.dit_config.init::<Skeleton>(&device);
    let transformer = component("transformer", json(&plan.dit_config), &mut |p| {
        let n = write_burnpack(
            &dit_skel,
            &dit_src,
            &plan.dit_map,
            &[],
            "DiT",
            opts.dtype,
            p,
        )?;
        Ok((n, num_params(&dit_skel)))
    })?;

    let vae_src = WeightSource::open_files(&plan.vae_files)?;
    let vae_skel = plan.vae_config.init::<Skeleton>(&device);
    let vae = component("vae", json(&plan.vae_config), &mut |p| {
        let n = write_burnpack(
            &vae_skel,
            &vae_src,
            &plan.vae_map,
            &[],
            "VAE",
            opts.dtype,
            p,
        )?;
        Ok((n, num_params(&vae_skel)))
    })?;

    let t5_src = WeightSource::open_files(&plan.t5_files)?;
    let t5_skel = plan.t5_config.init::<Skeleton>(&device);
    let text_encoder = component("text_encoder", json(&plan.t5_config), &mut |p| {
        let ignore = match layout {
            SourceLayout::Diffusers => t5::hf_ignored_keys(&t5_src),
            SourceLayout::Official => vec![],
        };
        let n = write_burnpack(
            &t5_skel,
            &t5_src,
            &plan.t5_map,
            &ignore,
            "umT5",
            opts.dtype,
            p,
        )?;
        Ok((n, num_params(&t5_skel)))
    })?;

    let tokenizer = out.join("tokenizer.json");
    std::fs::copy(&plan.tokenizer, &tokenizer).map_err(|e| ModelError::io(&plan.tokenizer, e))?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        source: format!("{layout:?} checkpoint at {}", src.display()),
        dtype: dtype_name(opts.dtype).into(),
        transformer,
        vae,
        text_encoder,
        tokenizer: "tokenizer.json".into(),
        defaults: opts.defaults.clone(),
    };
    manifest.write(out)?;
    Ok(manifest)
}

/// Writes an already-initialised model (DiT, VAE, umT5) as a converted model directory; used for
/// models this project trains or makes (the bundled model, random test models).
#[allow(clippy::too_many_arguments)]
pub fn save_model_dir<B: burn::prelude::Backend>(
    out: &Path,
    dit_config: &WanConfig,
    dit: &crate::dit::WanModel<B>,
    vae_config: &WanVaeConfig,
    vae: &crate::vae::WanVae<B>,
    t5_config: &UMT5Config,
    t5: &crate::t5::UMT5Encoder<B>,
    tokenizer: &Path,
    source: &str,
    defaults: SamplingDefaults,
) -> Result<Manifest> {
    use crate::weights::save_burnpack;
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    remove_stale_manifest(out)?;
    fn entry(out: &Path, name: &str, tensors: usize, params: usize) -> Result<ComponentEntry> {
        std::fs::create_dir_all(out.join(name)).map_err(|e| ModelError::io(out.join(name), e))?;
        Ok(ComponentEntry {
            config: format!("{name}/config.json"),
            weights: vec![format!("{name}/model.bpk")],
            tensors,
            params,
        })
    }
    let count = |slots: Vec<crate::weights::ParamSlot>| {
        (
            slots.len(),
            slots
                .iter()
                .map(|s| s.shape.iter().product::<usize>())
                .sum::<usize>(),
        )
    };
    let (n, p) = count(crate::weights::param_slots(dit));
    let transformer = entry(out, "transformer", n, p)?;
    write_config(dit_config, &out.join("transformer/config.json"))?;
    save_burnpack(dit, &out.join("transformer/model.bpk"))?;
    let (n, p) = count(crate::weights::param_slots(vae));
    let vae_entry = entry(out, "vae", n, p)?;
    write_config(vae_config, &out.join("vae/config.json"))?;
    save_burnpack(vae, &out.join("vae/model.bpk"))?;
    let (n, p) = count(crate::weights::param_slots(t5));
    let text_encoder = entry(out, "text_encoder", n, p)?;
    write_config(t5_config, &out.join("text_encoder/config.json"))?;
    save_burnpack(t5, &out.join("text_encoder/model.bpk"))?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .map_err(|e| ModelError::io(tokenizer, e))?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        source: source.into(),
        dtype: "f32".into(),
        transformer,
        vae: vae_entry,
        text_encoder,
        tokenizer: "tokenizer.json".into(),
        defaults,
    };
    manifest.write(out)?;
    Ok(manifest)
}

/// Rewrites the converted model directory `src` into `out` with every weight file stored as
/// `dtype` (e.g. f16 to halve a bundled model). Every `*.bpk` under `src`, subfolders included (a
/// distilled `student/`), is re-stored tensor by tensor; every other file is copied as is; the
/// manifest comes last with its `dtype` updated. Loading converts back to the backend's float type,
/// so the result loads wherever `src` did.
///
/// # Errors
/// `src` is not a converted model directory (no readable `manifest.json`), `out` is `src` or
/// inside it, a weight file is corrupt or holds a non-float tensor (named), or an I/O error (path
/// named).
pub fn recast_model_dir(src: &Path, out: &Path, dtype: DType) -> Result<Manifest> {
    let mut manifest = Manifest::read(src)?;
    check_out_apart(src, out)?;
    let existed = out.exists();
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let canonical = |p: &Path| p.canonicalize().map_err(|e| ModelError::io(p, e));
    if canonical(out)?.starts_with(canonical(src)?) {
        if !existed {
            let _ = std::fs::remove_dir(out); // leave no empty folder behind in `src`
        }
        return Err(ModelError::config(
            out,
            "the output directory is the source directory or inside it; write the recast copy \
             elsewhere",
        ));
    }
    remove_stale_manifest(out)?;
    fn walk(src: &Path, out: &Path, dtype: DType) -> Result<()> {
        let mut items: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| ModelError::io(src, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| ModelError::io(src, e))?;
        items.sort_by_key(|i| i.file_name());
        for item in items {
            let (from, to) = (item.path(), out.join(item.file_name()));
            if from.is_dir() {
                std::fs::create_dir_all(&to).map_err(|e| ModelError::io(&to, e))?;
                walk(&from, &to, dtype)?;
            } else if from.extension().is_some_and(|e| e == "bpk") {
                recast_burnpack(&from, &to, dtype)?;
            } else if from.file_name().is_some_and(|n| n != "manifest.json") {
                std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
            }
        }
        Ok(())
    }
    walk(src, out, dtype)?;
    crate::integrity::reseal_subfolders(out)?;
    manifest.dtype = dtype_name(dtype).into();
    manifest.source = format!("{}; re-stored as {}", manifest.source, manifest.dtype);
    manifest.write(out)?;
    Ok(manifest)
}

/// Re-stores one Burnpack file as `dtype`, one tensor in memory at a time, atomically.
fn recast_burnpack(src: &Path, out: &Path, dtype: DType) -> Result<()> {
    use burn::module::ParamId;
    use burn_store::{ModuleStore, TensorSnapshot, TensorSnapshotError};
    use std::rc::Rc;
    let corrupt = |reason: String| ModelError::CorruptWeights {
        path: src.to_path_buf(),
        reason,
    };
    let mut store = burn_store::BurnpackStore::from_file(src);
    let snapshots = store
        .get_all_snapshots()
        .map_err(|e| corrupt(format!("{e:?}")))?
        .clone();
    let mut recast = Vec::with_capacity(snapshots.len());
    for (key, snap) in snapshots {
        if !crate::weights::is_float_storage(snap.dtype) {
            return Err(ModelError::UnsupportedDtype {
                path: src.to_path_buf(),
                key,
                dtype: format!("{:?}", snap.dtype),
            });
        }
        let path_stack = snap
            .path_stack
            .clone()
            .unwrap_or_else(|| key.split('.').map(str::to_string).collect());
        let container_stack = snap.container_stack.clone().unwrap_or_default();
        let id = snap.tensor_id.unwrap_or_else(ParamId::new);
        let shape = snap.shape.clone();
        let data_fn = Rc::new(move || -> std::result::Result<_, TensorSnapshotError> {
            Ok(snap.to_data()?.convert_dtype(dtype))
        });
        recast.push(TensorSnapshot::from_closure(
            data_fn,
            dtype,
            shape,
            path_stack,
            container_stack,
            id,
        ));
    }
    crate::weights::write_snapshots_atomically(recast, out)
}

/// `path` made absolute and free of symlinks and `..` as far as it exists; the part that does not
/// exist yet is appended as given.
fn resolve(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ModelError::io(path, e))?
            .join(path)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// Refuses an output directory that is the source directory, inside it, or contains it: a
/// conversion writes `config.json` files and weights that would overwrite or mix with the source.
pub fn check_out_apart(src: &Path, out: &Path) -> Result<()> {
    let (s, o) = (resolve(src)?, resolve(out)?);
    let why = if s == o {
        "is the source directory"
    } else if o.starts_with(&s) {
        "is inside the source directory"
    } else if s.starts_with(&o) {
        "contains the source directory"
    } else {
        return Ok(());
    };
    Err(ModelError::config(
        out,
        format!(
            "the output directory {why} ({}); the source would be overwritten. Write the \
             conversion to a separate directory",
            src.display()
        ),
    ))
}

/// Removes the manifest of an earlier conversion in `out`, so that a directory being rewritten
/// never looks complete until its new manifest is written last.
fn remove_stale_manifest(out: &Path) -> Result<()> {
    let stale = out.join("manifest.json");
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| ModelError::io(&stale, e))?;
    }
    Ok(())
}

fn num_params<B: burn::prelude::Backend, M: burn::module::Module<B>>(m: &M) -> usize {
    crate::weights::param_slots(m)
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum()
}

pub(crate) fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    }
}

fn json<C: serde::Serialize>(config: &C) -> String {
    serde_json::to_string_pretty(config).expect("configs serialise to JSON")
}
