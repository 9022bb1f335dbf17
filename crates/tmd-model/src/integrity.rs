//! Checksums of model directories.
//!
//! A manifest (`manifest.json` of a converted model directory, `student/config.json` of a student)
//! carries a `"sha256"` map: file (relative to the manifest's folder's model directory) -> SHA-256
//! of every weight, config and tokenizer file it names. The map is added when the manifest is
//! written ([`write_sealed`]) and checked when a file is used ([`verify_files`]): a flipped byte in
//! a weight file, or a config edited after conversion (e.g. `num_heads`, which the weight shapes
//! cannot tell), is an error naming the file and both digests instead of a wrong clip.
//!
//! Manifests written before checksums existed have no map and are not checked. Verification can
//! be turned off for speed ([`set_verify`], `generate --no-verify`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// Key of the checksum map in a manifest.
pub const SHA256_KEY: &str = "sha256";

static VERIFY: AtomicBool = AtomicBool::new(true);

/// Turns checksum verification on loads on or off (process-wide; on by default).
pub fn set_verify(on: bool) {
    VERIFY.store(on, Ordering::Relaxed);
}

/// Whether loads verify checksums.
pub fn verify_enabled() -> bool {
    VERIFY.load(Ordering::Relaxed)
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Serialises `value` (a JSON object) with a `"sha256"` map of `files` (relative to `root`) added,
/// and writes it to `path` atomically.
pub fn write_sealed<T: serde::Serialize>(
    path: &Path,
    value: &T,
    root: &Path,
    files: &[String],
) -> Result<()> {
    let mut json = serde_json::to_value(value)
        .map_err(|e| ModelError::config(path, format!("cannot serialise: {e}")))?;
    let mut sums = BTreeMap::new();
    for f in files {
        sums.insert(f.clone(), sha256_file(&root.join(f))?);
    }
    if let Some(obj) = json.as_object_mut() {
        obj.insert(SHA256_KEY.into(), serde_json::to_value(sums).expect("map"));
    }
    let text = serde_json::to_string_pretty(&json).expect("JSON serialises");
    crate::model_dir::write_atomically(path, text.as_bytes())
}

/// The checksum map of the manifest at `manifest` (empty if it has none).
pub fn read_sums(manifest: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(manifest).map_err(|e| ModelError::io(manifest, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::config(manifest, format!("not valid JSON: {e}")))?;
    match json.get(SHA256_KEY) {
        None => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ModelError::config(
                manifest,
                format!("'{SHA256_KEY}' is not a file -> digest map: {e}"),
            )
        }),
    }
}

/// Checks `files` (relative to `root`) against the checksum map of `manifest`, when verification
/// is on and the manifest has a map. A file the map does not list is an error too (a manifest
/// with checksums covers every file it names).
pub fn verify_files(root: &Path, manifest: &Path, files: &[String]) -> Result<()> {
    if !verify_enabled() {
        return Ok(());
    }
    let sums = read_sums(manifest)?;
    if sums.is_empty() {
        return Ok(());
    }
    for f in files {
        let path = root.join(f);
        let Some(want) = sums.get(f) else {
            return Err(ModelError::config(
                manifest,
                format!("'{f}' has no checksum in the manifest's '{SHA256_KEY}' map"),
            ));
        };
        let found = sha256_file(&path)?;
        if &found != want {
            return Err(ModelError::CorruptWeights {
                path,
                reason: format!(
                    "SHA-256 {found} differs from the one recorded in {} ({want}): the file \
                     changed after it was written (damaged, or edited by hand); restore or \
                     re-create it (`generate --no-verify` skips this check)",
                    manifest.display()
                ),
            });
        }
    }
    Ok(())
}

/// Recomputes the checksum map of every `config.json` one folder below `root` that has one (a
/// student's `student/config.json`), over the files it lists: for a copy whose weight files were
/// rewritten (re-stored in another dtype).
pub fn reseal_subfolders(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| ModelError::io(root, e))?;
    for entry in entries {
        let sub = entry.map_err(|e| ModelError::io(root, e))?.path();
        let manifest = sub.join("config.json");
        if !sub.is_dir() || !manifest.is_file() {
            continue;
        }
        let sums = read_sums(&manifest)?;
        if sums.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| ModelError::io(&manifest, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(&manifest, format!("not valid JSON: {e}")))?;
        let files: Vec<String> = sums.keys().cloned().collect();
        write_sealed(&manifest, &json, &sub, &files)?;
    }
    Ok(())
}

/// The small files a manifest names (component configs and the tokenizer), checked when a model
/// directory is opened.
pub fn manifest_small_files(m: &crate::model_dir::Manifest) -> Vec<String> {
    vec![
        m.transformer.config.clone(),
        m.vae.config.clone(),
        m.text_encoder.config.clone(),
        m.tokenizer.clone(),
    ]
}

/// Every file a manifest names: [`manifest_small_files`] and the weight files.
pub fn manifest_files(m: &crate::model_dir::Manifest) -> Vec<String> {
    let mut files = manifest_small_files(m);
    for c in [&m.transformer, &m.vae, &m.text_encoder] {
        files.extend(c.weights.iter().cloned());
    }
    files
}

/// Whether a model directory without `manifest.json` is a conversion that did not finish rather
/// than a diffusers folder: a component folder holds Burnpack weights or a temporary file, or
/// `transformer/config.json` is this crate's config (diffusers' names the class and uses
/// `num_attention_heads`).
pub fn looks_like_unfinished_conversion(root: &Path) -> bool {
    for component in ["transformer", "vae", "text_encoder"] {
        let dir = root.join(component);
        if dir.join("model.bpk").exists() {
            return true;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".tmp-") {
                    return true;
                }
            }
        }
    }
    match std::fs::read_to_string(root.join("transformer/config.json")) {
        Ok(text) => !(text.contains("\"_class_name\"") || text.contains("\"num_attention_heads\"")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_named_and_an_unsealed_manifest_is_accepted() {
        let tmp = tempfile::Builder::new()
            .prefix("tmd-integrity-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("w.bin"), [1u8, 2, 3]).unwrap();
        let manifest = dir.join("m.json");
        std::fs::write(&manifest, "{\"a\": 1}").unwrap();
        verify_files(dir, &manifest, &["w.bin".into()]).unwrap();
        write_sealed(
            &manifest,
            &serde_json::json!({"a": 1}),
            dir,
            &["w.bin".into()],
        )
        .unwrap();
        verify_files(dir, &manifest, &["w.bin".into()]).unwrap();
        std::fs::write(dir.join("w.bin"), [1u8, 2, 4]).unwrap();
        let err = verify_files(dir, &manifest, &["w.bin".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.bin") && err.contains("SHA-256"), "{err}");
        let err = verify_files(dir, &manifest, &["x.bin".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no checksum"), "{err}");
    }

    /// The cost of verification: SHA-256 throughput of [`sha256_file`] on a 256 MiB file (run
    /// with `--ignored --nocapture`; docs/bad-inputs.md quotes it).
    #[test]
    #[ignore]
    fn measure_sha256_throughput() {
        let file = tempfile::Builder::new()
            .prefix("tmd-sha-")
            .tempfile()
            .unwrap();
        let path = file.path();
        let mb = 256usize;
        std::fs::write(path, vec![0x5au8; mb << 20]).unwrap();
        let _ = sha256_file(path).unwrap(); // warm the page cache
        let start = std::time::Instant::now();
        sha256_file(path).unwrap();
        let s = start.elapsed().as_secs_f64();
        println!("sha256: {mb} MiB in {s:.3} s = {:.0} MiB/s", mb as f64 / s);
    }
}
