//! Model directories: the one on-disk layout every command loads.
//!
//! Two layouts are accepted, detected by what the folder holds:
//!
//! * **Converted** (written by `cargo xtask convert-weights`, and the bundled model): a
//!   `manifest.json` plus one folder per component, each with a `config.json` (this crate's config
//!   type, JSON) and Burnpack weights in burn layout:
//!   ```text
//!   manifest.json  tokenizer.json  transformer/{config.json,model.bpk}
//!   vae/{config.json,model.bpk}  text_encoder/{config.json,model.bpk}
//!   ```
//!   The manifest is written last, so a directory without it is an unfinished conversion.
//!
//! Either layout may hold an optional `decoder-light/` folder ([`LIGHT_DECODER_DIR`]): a
//! [`LightDecoder`] distilled from the VAE's decoder (`config.json`, a [`LightDecoderConfig`],
//! and its weights as `*.bpk` or `*.safetensors`), written by `cargo xtask distill-decoder`.
//! * **Diffusers** (`Wan-AI/Wan2.1-T2V-1.3B-Diffusers` style): `transformer/`, `vae/`,
//!   `text_encoder/` (each `config.json` + safetensors shards) and `tokenizer/tokenizer.json`.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dit::{WanConfig, WanModel};
use crate::error::{ModelError, Result};
use crate::light_decoder::{LightDecoder, LightDecoderConfig, LIGHT_DECODER_DIR};
use crate::t5::{TextEncoder, UMT5Config, UMT5Encoder};
use crate::vae::{WanVae, WanVaeConfig};
use crate::weights::{load_module, KeyMap, WeightSource};

/// Format tag written into every manifest.
pub const MANIFEST_FORMAT: &str = "tmd-model-dir";
/// Current manifest version.
pub const MANIFEST_VERSION: u32 = 1;

/// Sampling defaults a model directory carries, so `generate` works on it without flags.
///
/// Wan2.1's defaults (its `generate.py` / `WAN21.md`): 50 steps, CFG 5, shift 5, 480x832, 81
/// frames at 16 fps, and the original Chinese negative prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    /// Teacher sampling steps.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub guidance: f64,
    /// Timestep shift of the flow-matching schedule.
    pub shift: f64,
    /// Frames (4k+1 for Wan's VAE).
    pub frames: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Frames per second of written clips.
    pub fps: u32,
    /// Negative prompt for CFG.
    pub negative_prompt: String,
}

/// Wan2.1's default negative prompt (original repository, `shared_config.py`).
pub const WAN_NEGATIVE_PROMPT: &str = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

impl Default for SamplingDefaults {
    fn default() -> Self {
        Self {
            steps: 50,
            guidance: 5.0,
            shift: 5.0,
            frames: 81,
            height: 480,
            width: 832,
            fps: 16,
            negative_prompt: WAN_NEGATIVE_PROMPT.to_string(),
        }
    }
}

/// One component entry of a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentEntry {
    /// Config file, relative to the model directory.
    pub config: String,
    /// Weight files, relative to the model directory.
    pub weights: Vec<String>,
    /// Number of tensors.
    pub tensors: usize,
    /// Number of scalar parameters.
    pub params: usize,
}

/// `manifest.json` of a converted model directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Manifest version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// Where the weights came from (free text: layout and path, or the command that made them).
    pub source: String,
    /// Storage dtype of the weights (`"f32"`, `"f16"`, `"bf16"`).
    pub dtype: String,
    /// The DiT.
    pub transformer: ComponentEntry,
    /// The VAE.
    pub vae: ComponentEntry,
    /// The text encoder.
    pub text_encoder: ComponentEntry,
    /// Tokenizer file, relative to the model directory.
    pub tokenizer: String,
    /// Sampling defaults.
    pub defaults: SamplingDefaults,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(&path, format!("not a valid manifest: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ModelError::config(
                &path,
                format!(
                    "format is '{}', expected '{MANIFEST_FORMAT}'",
                    manifest.format
                ),
            ));
        }
        if manifest.version > MANIFEST_VERSION {
            return Err(ModelError::config(
                &path,
                format!(
                    "manifest version {} is newer than this program understands ({MANIFEST_VERSION})",
                    manifest.version
                ),
            ));
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically, with the SHA-256 of every file it names
    /// ([`crate::integrity`]).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("manifest.json");
        crate::integrity::write_sealed(&path, self, dir, &crate::integrity::manifest_files(self))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file
/// (see [`crate::output::write_file_atomic`]: synced, and no temporary file left on error).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::output::write_file_atomic(path, |w| w.write_all(bytes))
        .map_err(|e| ModelError::io(path, e))
}

/// Which layout a model directory has.
#[derive(Clone, Debug, PartialEq)]
pub enum DirLayout {
    /// A converted directory with its manifest.
    Converted(Box<Manifest>),
    /// A diffusers-format folder.
    Diffusers,
}

/// A model directory: where each component's config and weights are, and the sampling defaults.
#[derive(Clone, Debug)]
pub struct ModelDir {
    /// The directory.
    pub root: PathBuf,
    /// Its layout.
    pub layout: DirLayout,
}

impl ModelDir {
    /// Opens a converted or diffusers-format model directory.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(ModelError::io(
                &root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
            ));
        }
        if root.join("manifest.json").exists() {
            let manifest = Manifest::read(&root)?;
            crate::integrity::verify_files(
                &root,
                &root.join("manifest.json"),
                &crate::integrity::manifest_small_files(&manifest),
            )?;
            return Ok(Self {
                root,
                layout: DirLayout::Converted(Box::new(manifest)),
            });
        }
        if crate::integrity::looks_like_unfinished_conversion(&root) {
            return Err(ModelError::config(
                &root,
                "unfinished conversion: component weights are there but manifest.json is not \
                 (the conversion was interrupted or failed); rerun `cargo xtask convert-weights`",
            ));
        }
        if root.join("transformer").is_dir() {
            return Ok(Self {
                root,
                layout: DirLayout::Diffusers,
            });
        }
        Err(ModelError::config(
            &root,
            "neither a converted model directory (manifest.json) nor a diffusers folder \
             (transformer/, vae/, text_encoder/, tokenizer/); convert official weights with \
             `cargo xtask convert-weights`",
        ))
    }

    /// The sampling defaults (Wan2.1's for a diffusers folder).
    pub fn defaults(&self) -> SamplingDefaults {
        match &self.layout {
            DirLayout::Converted(m) => m.defaults.clone(),
            DirLayout::Diffusers => SamplingDefaults::default(),
        }
    }

    /// The manifest, for a converted directory.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.layout {
            DirLayout::Converted(m) => Some(m),
            DirLayout::Diffusers => None,
        }
    }

    fn converted_source(&self, entry: &ComponentEntry) -> Result<WeightSource> {
        let files: Vec<PathBuf> = entry.weights.iter().map(|w| self.root.join(w)).collect();
        for f in &files {
            if !f.exists() {
                return Err(ModelError::io(
                    f,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "weight file listed in manifest.json is missing",
                    ),
                ));
            }
        }
        crate::integrity::verify_files(
            &self.root,
            &self.root.join("manifest.json"),
            &entry.weights,
        )?;
        WeightSource::open_files(&files)
    }

    /// The DiT config.
    pub fn transformer_config(&self) -> Result<WanConfig> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let path = self.root.join(&m.transformer.config);
                let config: WanConfig = read_config(&path)?;
                config.validate(&path)?;
                Ok(config)
            }
            DirLayout::Diffusers => {
                WanConfig::from_diffusers_config(&self.root.join("transformer/config.json"))
            }
        }
    }

    /// Loads the DiT.
    pub fn load_transformer<B: Backend>(&self, device: &B::Device) -> Result<WanModel<B>> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let config = self.transformer_config()?;
                let source = self.converted_source(&m.transformer)?;
                load_module(
                    config.init::<B>(device),
                    &source,
                    &KeyMap::identity(),
                    &[],
                    "DiT",
                )
            }
            DirLayout::Diffusers => {
                WanModel::from_diffusers_dir(self.root.join("transformer"), device)
            }
        }
    }

    /// The VAE config.
    pub fn vae_config(&self) -> Result<WanVaeConfig> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let config: WanVaeConfig = read_config(&self.root.join(&m.vae.config))?;
                config.validate()?;
                Ok(config)
            }
            DirLayout::Diffusers => {
                WanVaeConfig::from_diffusers_config(self.root.join("vae/config.json"))
            }
        }
    }

    /// Loads the VAE.
    pub fn load_vae<B: Backend>(&self, device: &B::Device) -> Result<WanVae<B>> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let config = self.vae_config()?;
                let source = self.converted_source(&m.vae)?;
                load_module(
                    config.init::<B>(device),
                    &source,
                    &KeyMap::identity(),
                    &[],
                    "VAE",
                )
            }
            DirLayout::Diffusers => WanVae::from_diffusers_dir(self.root.join("vae"), device),
        }
    }

    /// The tokenizer file.
    pub fn tokenizer_path(&self) -> PathBuf {
        match &self.layout {
            DirLayout::Converted(m) => self.root.join(&m.tokenizer),
            DirLayout::Diffusers => self.root.join("tokenizer/tokenizer.json"),
        }
    }

    /// The umT5 config.
    pub fn umt5_config(&self) -> Result<UMT5Config> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let path = self.root.join(&m.text_encoder.config);
                let config: UMT5Config = read_config(&path)?;
                config
                    .validate()
                    .map_err(|reason| ModelError::config(&path, reason))?;
                Ok(config)
            }
            DirLayout::Diffusers => {
                UMT5Config::from_hf_config(self.root.join("text_encoder/config.json"))
            }
        }
    }

    /// Checks that the components fit together (text width, latent channels) before any weight is
    /// read, with an error naming both configs' values.
    pub fn check_consistency(&self) -> Result<()> {
        let (dit, vae, t5) = (
            self.transformer_config()?,
            self.vae_config()?,
            self.umt5_config()?,
        );
        let mismatch = |what: String| Err(ModelError::config(&self.root, what));
        if dit.text_dim != t5.d_model {
            return mismatch(format!(
                "the DiT expects text features of width {} (text_dim) but the text encoder gives {} (d_model)",
                dit.text_dim, t5.d_model
            ));
        }
        if dit.in_channels != vae.z_dim || dit.out_channels != vae.z_dim {
            return mismatch(format!(
                "the DiT has {} input / {} output latent channels but the VAE has z_dim {}",
                dit.in_channels, dit.out_channels, vae.z_dim
            ));
        }
        Ok(())
    }

    /// Whether the directory has a `decoder-light/` folder (a light decoder, complete or not:
    /// a broken one is an error when loaded, never silently skipped).
    pub fn has_light_decoder(&self) -> bool {
        self.root.join(LIGHT_DECODER_DIR).is_dir()
    }

    /// The light decoder's config, checked against the VAE's (latent channels = `z_dim`, the
    /// same temporal and spatial strides).
    ///
    /// # Errors
    /// A missing `decoder-light/` or `config.json`, an invalid config, or one that does not fit
    /// the VAE, each naming the folder and the latent channels the VAE expects.
    pub fn light_decoder_config(&self) -> Result<LightDecoderConfig> {
        let folder = self.root.join(LIGHT_DECODER_DIR);
        let vae = self.vae_config()?;
        let expects = format!(
            "this model directory needs a light decoder for {} latent channels (the VAE's z_dim), \
             {}x temporal and {}x spatial compression; train one with `cargo xtask distill-decoder`",
            vae.z_dim,
            vae.temporal_stride(),
            vae.spatial_stride()
        );
        if !folder.is_dir() {
            return Err(ModelError::config(
                &folder,
                format!("no light decoder (folder not found): {expects}"),
            ));
        }
        let path = folder.join("config.json");
        if !path.is_file() {
            return Err(ModelError::config(
                &folder,
                format!("config.json is missing: {expects}"),
            ));
        }
        let config: LightDecoderConfig = read_config(&path)?;
        config
            .validate()
            .map_err(|reason| ModelError::config(&path, reason))?;
        let fits = config.latent_channels == vae.z_dim
            && config.temporal_stride == vae.temporal_stride()
            && config.spatial_stride() == vae.spatial_stride();
        if !fits {
            return Err(ModelError::config(
                &folder,
                format!(
                    "the light decoder takes {} latent channels at {}x temporal and {}x spatial \
                     compression, but {expects}",
                    config.latent_channels,
                    config.temporal_stride,
                    config.spatial_stride()
                ),
            ));
        }
        Ok(config)
    }

    /// Loads the light decoder of `decoder-light/` (see [`ModelDir::light_decoder_config`]);
    /// every weight key and shape is checked, and the weight files against the SHA-256 map of
    /// its `config.json` when it has one (written by [`save_light_decoder`]; see
    /// [`crate::integrity`]).
    ///
    /// # Errors
    /// As [`ModelDir::light_decoder_config`]; no weight file in the folder, a weight file the
    /// map does not list or whose digest differs (named), or weights that do not match the
    /// config (keys and shapes named).
    pub fn load_light_decoder<B: Backend>(&self, device: &B::Device) -> Result<LightDecoder<B>> {
        let config = self.light_decoder_config()?;
        let folder = self.root.join(LIGHT_DECODER_DIR);
        let source = WeightSource::open_dir(&folder)?;
        let names: Vec<String> = source
            .files()
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        crate::integrity::verify_files(&folder, &folder.join("config.json"), &names)?;
        load_module(
            config.init::<B>(device),
            &source,
            &KeyMap::identity(),
            &[],
            "light decoder (decoder-light/)",
        )
    }

    /// Loads the umT5 encoder.
    pub fn load_umt5<B: Backend>(&self, device: &B::Device) -> Result<UMT5Encoder<B>> {
        match &self.layout {
            DirLayout::Converted(m) => {
                let config = self.umt5_config()?;
                let source = self.converted_source(&m.text_encoder)?;
                load_module(
                    config.init::<B>(device),
                    &source,
                    &KeyMap::identity(),
                    &[],
                    "umT5",
                )
            }
            DirLayout::Diffusers => {
                UMT5Encoder::from_hf_dir(self.root.join("text_encoder"), device)
            }
        }
    }

    /// Loads the text pipeline (tokenizer + umT5 encoder) with the DiT's text length.
    pub fn load_text_encoder<B: Backend>(&self, device: &B::Device) -> Result<TextEncoder<B>> {
        let encoder = self.load_umt5(device)?;
        let text_len = self.transformer_config()?.text_len;
        TextEncoder::new(self.tokenizer_path(), encoder, text_len, device)
    }
}

/// Writes `decoder` (built from `config`) into `root/decoder-light/`: the weights
/// (`model.bpk`, f32) first, then `config.json` with the weights' SHA-256 (checked on load),
/// each atomically. A previous light decoder there is replaced (its other weight files are
/// removed, so the folder holds one set).
///
/// # Errors
/// I/O errors naming the path.
pub fn save_light_decoder<B: Backend>(
    root: &Path,
    decoder: &LightDecoder<B>,
    config: &LightDecoderConfig,
) -> Result<()> {
    let folder = root.join(LIGHT_DECODER_DIR);
    std::fs::create_dir_all(&folder).map_err(|e| ModelError::io(&folder, e))?;
    for item in std::fs::read_dir(&folder).map_err(|e| ModelError::io(&folder, e))? {
        let path = item.map_err(|e| ModelError::io(&folder, e))?.path();
        let name = path.to_string_lossy();
        if name.ends_with(".safetensors") || name.ends_with(".pth") {
            std::fs::remove_file(&path).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    crate::weights::save_burnpack(decoder, &folder.join("model.bpk"))?;
    crate::integrity::write_sealed(
        &folder.join("config.json"),
        config,
        &folder,
        &["model.bpk".to_string()],
    )
}

/// Reads one of this crate's configs from a JSON file, with an error naming the file.
pub fn read_config<C: burn::config::Config>(path: &Path) -> Result<C> {
    C::load(path).map_err(|e| ModelError::config(path, format!("{e}")))
}

/// Writes one of this crate's configs as JSON, atomically.
pub fn write_config<C: burn::config::Config>(config: &C, path: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(config).expect("configs serialise to JSON");
    write_atomically(path, json.as_bytes())
}
