//! Writing this crate's modules in the formats other tools load: safetensors files in PyTorch
//! layout under another naming, and the DiT as a diffusers `transformer/` folder.
//!
//! The reverse of [`crate::weights`]: a parameter's PyTorch name ([`pytorch_name`]: norm
//! `gamma`/`beta` -> `weight`/`bias`) goes through a [`KeyMap`] (for the DiT,
//! [`diffusers_export_key_map`], the diffusers table of `dit::keys` read backwards), `Linear`
//! weights are transposed to `[out, in]`, and the tensors are streamed into the file one at a
//! time (written to a temporary name, renamed when complete). Loading the file back through
//! [`crate::weights::load_module`] with the forward map gives the same module.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use burn_store::ModuleSnapshot;

use crate::dit::{diffusers_export_key_map, WanConfig, WanModel};
use crate::error::{ModelError, Result};
use crate::model_dir::write_atomically;
use crate::weights::{needs_transpose, param_slots, pytorch_name, transpose_2d, KeyMap};

/// The diffusers release whose `WanTransformer3DModel` the exported folders are written for (and
/// checked against by `scripts/reference/check_export.py`).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// File name of the weights in a diffusers model folder.
pub const DIFFUSERS_WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

type Reader = Box<dyn Fn() -> Result<TensorData>>;

/// One tensor to write: its name, its shape as written, and how to read it (called once, when
/// the tensor's turn comes).
pub struct NamedTensor {
    /// Key in the file.
    pub name: String,
    /// Shape in the file.
    pub shape: Vec<usize>,
    read: Reader,
}

impl std::fmt::Debug for NamedTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedTensor")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .finish()
    }
}

impl NamedTensor {
    /// A tensor read lazily by `read` (which must return data of `shape`).
    pub fn lazy(
        name: impl Into<String>,
        shape: Vec<usize>,
        read: impl Fn() -> Result<TensorData> + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            shape,
            read: Box::new(read),
        }
    }

    /// A tensor already in memory.
    pub fn from_data(name: impl Into<String>, data: TensorData) -> Self {
        let shape = data.shape.to_vec();
        Self::lazy(name, shape, move || Ok(data.clone()))
    }

    /// Reads the tensor.
    ///
    /// # Errors
    /// Whatever its reader reports.
    pub fn read(&self) -> Result<TensorData> {
        (self.read)()
    }
}

/// The float parameters of `module` in PyTorch layout (`Linear` weights `[out, in]`, norm
/// `weight`/`bias`), each named by `map` applied to its PyTorch name, read lazily.
///
/// # Errors
/// [`ModelError::Export`] (naming `what`) if two parameters map to one name.
pub fn pytorch_tensors<B: Backend, M: Module<B>>(
    module: &M,
    map: &KeyMap,
    what: &str,
) -> Result<Vec<NamedTensor>> {
    let mut snapshots: HashMap<String, _> = module
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s))
        .collect();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for slot in param_slots::<B, M>(module) {
        let name = map.map(&pytorch_name(&slot));
        if let Some(other) = seen.insert(name.clone(), slot.path.clone()) {
            return Err(ModelError::Export {
                path: PathBuf::from(what),
                reason: format!(
                    "parameters '{other}' and '{}' would both be written as '{name}'",
                    slot.path
                ),
            });
        }
        let snapshot = snapshots
            .remove(&slot.path)
            .ok_or_else(|| ModelError::Export {
                path: PathBuf::from(what),
                reason: format!("parameter '{}' has no value to export", slot.path),
            })?;
        let transpose = needs_transpose(&slot);
        let mut shape = slot.shape.clone();
        if transpose {
            shape.reverse();
        }
        let path = slot.path.clone();
        out.push(NamedTensor::lazy(name, shape, move || {
            let data = snapshot
                .to_data()
                .map_err(|e| ModelError::Export {
                    path: PathBuf::from(&path),
                    reason: format!("reading the parameter: {e:?}"),
                })?
                .convert_dtype(DType::F32);
            if transpose {
                transpose_2d(data)
            } else {
                Ok(data)
            }
        }));
    }
    Ok(out)
}

fn safetensors_dtype(dtype: DType, out: &Path) -> Result<safetensors::Dtype> {
    Ok(match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        other => {
            return Err(ModelError::Export {
                path: out.to_path_buf(),
                reason: format!("cannot store weights as {other:?} (use f32, f16 or bf16)"),
            })
        }
    })
}

/// A tensor as the safetensors writer sees it: read when the writer asks for its bytes.
struct LazyView<'a> {
    tensor: &'a NamedTensor,
    dtype: DType,
    st_dtype: safetensors::Dtype,
    errors: &'a RefCell<Vec<ModelError>>,
}

impl safetensors::View for LazyView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.st_dtype
    }

    fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let expected = self.data_len();
        let fail = |reason: String| {
            self.errors.borrow_mut().push(ModelError::Export {
                path: PathBuf::from(&self.tensor.name),
                reason,
            });
            Cow::Owned(vec![0u8; expected])
        };
        match self.tensor.read() {
            Ok(data) if data.shape.to_vec() != self.tensor.shape => fail(format!(
                "read shape {:?}, expected {:?}",
                data.shape, self.tensor.shape
            )),
            Ok(data) => Cow::Owned(data.convert_dtype(self.dtype).into_bytes().to_vec()),
            Err(e) => fail(e.to_string()),
        }
    }

    fn data_len(&self) -> usize {
        self.tensor.shape.iter().product::<usize>() * self.st_dtype.bitsize() / 8
    }
}

/// Writes `tensors` to the safetensors file `out` as `dtype` (f32, f16 or bf16), one tensor in
/// memory at a time; the file appears complete or not at all. `metadata` goes into the header's
/// `__metadata__` (with `format: pt`, which PyTorch tools expect). Returns the number of tensors.
///
/// # Errors
/// [`ModelError::Export`] for a duplicate name, an unsupported dtype or a tensor that cannot be
/// read (named); I/O errors naming the path.
pub fn write_safetensors(
    tensors: &[NamedTensor],
    dtype: DType,
    metadata: Option<HashMap<String, String>>,
    out: &Path,
) -> Result<usize> {
    let st_dtype = safetensors_dtype(dtype, out)?;
    let mut names = std::collections::BTreeSet::new();
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(ModelError::Export {
                path: out.to_path_buf(),
                reason: format!("tensor '{}' is given twice", t.name),
            });
        }
    }
    let errors = RefCell::new(Vec::new());
    let views: Vec<(&str, LazyView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                LazyView {
                    tensor: t,
                    dtype,
                    st_dtype,
                    errors: &errors,
                },
            )
        })
        .collect();
    let mut meta = metadata.unwrap_or_default();
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    let mut tmp_name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let written = safetensors::serialize_to_file(views, Some(meta), &tmp);
    let failure = match (written, errors.into_inner().into_iter().next()) {
        (_, Some(e)) => Some(e),
        (Err(e), None) => Some(ModelError::Export {
            path: out.to_path_buf(),
            reason: format!("writing safetensors: {e}"),
        }),
        (Ok(()), None) => None,
    };
    if let Some(e) = failure {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
    Ok(tensors.len())
}

/// The diffusers `config.json` of a `WanTransformer3DModel` with `config`'s sizes.
///
/// # Errors
/// [`ModelError::Export`] for a setting diffusers' model cannot hold (a RoPE base other than
/// 10000, which diffusers fixes).
pub fn diffusers_transformer_config(config: &WanConfig, dir: &Path) -> Result<serde_json::Value> {
    if config.rope_theta != 10000.0 {
        return Err(ModelError::Export {
            path: dir.to_path_buf(),
            reason: format!(
                "rope_theta is {}: diffusers' WanTransformer3DModel fixes it at 10000",
                config.rope_theta
            ),
        });
    }
    let mut json = config.to_diffusers_json();
    json["_diffusers_version"] = DIFFUSERS_VERSION.into();
    Ok(json)
}

/// Writes `dit` (built with `config`) as a diffusers `WanTransformer3DModel` folder at `dir`:
/// `config.json` and [`DIFFUSERS_WEIGHTS`] with diffusers' key names and PyTorch layout, weights
/// stored as `dtype`. The config is written last, so a folder without it is unfinished. Returns
/// the number of tensors.
///
/// `WanModel::from_diffusers_dir(dir)` and diffusers'
/// `WanTransformer3DModel.from_pretrained(dir)` load it.
///
/// # Errors
/// As [`write_safetensors`] and [`diffusers_transformer_config`]; I/O errors naming the path.
pub fn export_diffusers_transformer<B: Backend>(
    dit: &WanModel<B>,
    config: &WanConfig,
    dtype: DType,
    dir: &Path,
) -> Result<usize> {
    let json = diffusers_transformer_config(config, dir)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    // Other weight files beside ours would be read as shards of the same model.
    for item in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let name = item.map_err(|e| ModelError::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        let weights = name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json");
        if weights && name != DIFFUSERS_WEIGHTS {
            return Err(ModelError::Export {
                path: dir.to_path_buf(),
                reason: format!(
                    "the folder already holds {name}, which diffusers would read as part of the \
                     model; write into an empty or new folder"
                ),
            });
        }
    }
    let config_path = dir.join("config.json");
    if config_path.exists() {
        std::fs::remove_file(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    }
    let tensors = pytorch_tensors(dit, &diffusers_export_key_map(), "DiT")?;
    let n = write_safetensors(&tensors, dtype, None, &dir.join(DIFFUSERS_WEIGHTS))?;
    let text = serde_json::to_string_pretty(&json).expect("JSON serialises");
    write_atomically(&config_path, text.as_bytes())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{load_module, WeightSource};
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

    #[test]
    fn a_module_written_in_pytorch_layout_loads_back_equal() {
        let device = Default::default();
        let tmp = tempfile::Builder::new()
            .prefix("tmd-export-toy-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let m = toy(&device);
        let to_file = KeyMap::new(&[(r"^proj\.", "fc."), (r"^norm\.", "ln.")]);
        let tensors = pytorch_tensors(&m, &to_file, "toy").unwrap();
        let names: Vec<_> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["fc.weight", "fc.bias", "ln.weight", "ln.bias"]);
        assert_eq!(
            tensors[0].shape,
            [2, 3],
            "Linear weights are written [out, in]"
        );
        let path = dir.join("toy.safetensors");
        write_safetensors(&tensors, DType::F32, None, &path).unwrap();
        let source = WeightSource::open_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(source.shape("fc.weight"), Some(&[2, 3][..]));
        let from_file = KeyMap::new(&[(r"^fc\.", "proj."), (r"^ln\.", "norm.")]);
        let back = load_module::<B, _>(toy(&device), &source, &from_file, &[], "toy").unwrap();
        let (a, b) = (m.proj.weight.val(), back.proj.weight.val());
        assert_eq!(a.into_data(), b.into_data());

        // Two parameters under one name, and a name given twice, are refused.
        let clash = KeyMap::new(&[(r"^(proj|norm)\.", "x.")]);
        let err = pytorch_tensors(&m, &clash, "toy").unwrap_err().to_string();
        assert!(err.contains("would both be written as 'x.weight'"), "{err}");
        let twice = vec![
            NamedTensor::from_data("a", TensorData::new(vec![1f32], [1])),
            NamedTensor::from_data("a", TensorData::new(vec![2f32], [1])),
        ];
        let err = write_safetensors(&twice, DType::F32, None, &dir.join("twice.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a' is given twice"), "{err}");
        assert!(!dir.join("twice.safetensors").exists());
    }
}
