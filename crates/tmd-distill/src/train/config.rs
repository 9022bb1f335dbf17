//! How a stage reads its settings: the stage's `Default`, then a TOML file, then `key=value`
//! overrides (`--set lr=1e-4`, dotted keys for nested tables), each layer over the previous one.
//! Keys that the stage does not know are errors naming the file (or the override) and the key.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tmd_distill::train::load_stage_config;
//!
//! #[derive(Serialize, Deserialize, Default, Debug)]
//! struct Stage {
//!     lr: f64,
//!     steps: u64,
//! }
//! let s: Stage = load_stage_config(None, &["lr=1e-4".to_string()]).unwrap();
//! assert_eq!((s.lr, s.steps), (1e-4, 0));
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, File, FileFormat, Value as ConfigValue, ValueKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::TrainError;

fn config_err(file: Option<&Path>, key: Option<&str>, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        file: file.map(Path::to_path_buf),
        key: key.map(str::to_string),
        message: message.into(),
    }
}

/// Dotted paths of every leaf (and table) of a JSON value.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone());
            key_paths(v, &path, out);
        }
    }
}

/// Leaf paths of a value read from a file (tables are descended into).
fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Whether `key` is a known key: itself, or below a known key that is `null` by default
/// (an `Option` table) or a free-form map.
fn known(key: &str, keys: &BTreeSet<String>, defaults: &Value) -> bool {
    if keys.contains(key) {
        return true;
    }
    // Accept anything under a key whose default is null or an empty object (optional/free-form).
    let mut node = defaults;
    for part in key.split('.') {
        match node {
            Value::Object(map) => match map.get(part) {
                Some(next) => node = next,
                None => return map.is_empty() && !std::ptr::eq(node, defaults),
            },
            Value::Null => return true,
            _ => return false,
        }
    }
    true
}

/// For a key that moved into the shared sections ([`super::sections`]: `lr` to `optimizer.lr`,
/// `checkpoint_every` to `checkpoint.every`, ...), where it lives now (empty otherwise).
fn moved_hint(key: &str, keys: &BTreeSet<String>) -> String {
    let (parent, leaf) = match key.rsplit_once('.') {
        Some((parent, leaf)) => (format!("{parent}."), leaf),
        None => (String::new(), key),
    };
    let moved = match leaf {
        "checkpoint_every" => format!("{parent}checkpoint.every"),
        "keep_last" | "loss_tail" => format!("{parent}checkpoint.{leaf}"),
        _ => format!("{parent}optimizer.{leaf}"),
    };
    if keys.contains(&moved) {
        format!(" (now `{moved}`)")
    } else {
        String::new()
    }
}

/// An override's value: a bracketed list, `[1, 2, 3]` or `[]`, becomes a list of its
/// comma-separated items (quotes around an item dropped); anything else stays one value. Each is
/// read as the field's type when the settings are deserialised, as a file's values are.
fn override_value(value: &str) -> ValueKind {
    let value = value.trim();
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(items) if items.trim().is_empty() => ValueKind::Array(Vec::new()),
        Some(items) => ValueKind::Array(
            items
                .split(',')
                .map(|item| {
                    let item = item.trim();
                    let unquoted = ['"', '\'']
                        .iter()
                        .find_map(|q| item.strip_prefix(*q).and_then(|i| i.strip_suffix(*q)))
                        .unwrap_or(item);
                    ConfigValue::from(unquoted.to_string())
                })
                .collect(),
        ),
        None => ValueKind::String(value.to_string()),
    }
}

/// Reads a stage's settings: `T::default()`, overlaid by the TOML `file` (if any), overlaid by
/// `overrides` of the form `key=value` (dotted keys reach nested tables; values are parsed as the
/// field's type).
///
/// # Errors
/// [`TrainError::Config`] naming the file or override and the key, for an unreadable file, a key
/// `T` does not have, a malformed override, or a value of the wrong type.
pub fn load_stage_config<T>(file: Option<&Path>, overrides: &[String]) -> Result<T, TrainError>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_stage_config_over(&T::default(), file, overrides)
}

/// As [`load_stage_config`], with `base` as the bottom layer instead of `T::default()` (the keys
/// `T` knows are still those of `base`). Fields the file and the overrides leave out take their
/// value from `base`, or, for a field `base` serialises to nothing (an empty list the config
/// reader drops), from `T`'s serde default.
///
/// # Errors
/// As [`load_stage_config`].
pub fn load_stage_config_over<T>(
    base: &T,
    file: Option<&Path>,
    overrides: &[String],
) -> Result<T, TrainError>
where
    T: Serialize + DeserializeOwned,
{
    let defaults = serde_json::to_value(base)
        .map_err(|e| config_err(None, None, format!("serialising the defaults: {e}")))?;
    let mut keys = BTreeSet::new();
    key_paths(&defaults, "", &mut keys);

    let base = Config::try_from(base)
        .map_err(|e| config_err(None, None, format!("serialising the defaults: {e}")))?;
    let mut builder = Config::builder().add_source(base);

    if let Some(path) = file {
        if !path.is_file() {
            return Err(config_err(Some(path), None, "file not found"));
        }
        let only_file: Value = Config::builder()
            .add_source(File::from(path).format(FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| config_err(Some(path), None, e.to_string()))?;
        let mut leaves = Vec::new();
        leaf_paths(&only_file, "", &mut leaves);
        if let Some(bad) = leaves.iter().find(|k| !known(k, &keys, &defaults)) {
            return Err(config_err(
                Some(path),
                Some(bad),
                format!(
                    "unknown key{}; known keys: {}",
                    moved_hint(bad, &keys),
                    keys.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some((key, message)) = type_mismatch(&only_file, &defaults, "") {
            return Err(config_err(Some(path), Some(&key), message));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }

    for item in overrides {
        let Some((key, value)) = item.split_once('=') else {
            return Err(config_err(
                file,
                None,
                format!("override '{item}' is not of the form key=value"),
            ));
        };
        let key = key.trim();
        if !known(key, &keys, &defaults) {
            return Err(config_err(
                file,
                Some(key),
                format!("unknown key in override '{item}'{}", moved_hint(key, &keys)),
            ));
        }
        builder = builder
            .set_override(key, override_value(value))
            .map_err(|e| config_err(file, Some(key), e.to_string()))?;
    }

    let settings: T = builder
        .build()
        .and_then(|c| c.try_deserialize::<T>())
        .map_err(|e| {
            let message = e.to_string();
            let key = keys
                .iter()
                .rev()
                .find(|k| {
                    message.contains(&format!("`{k}`")) || message.contains(&format!("'{k}'"))
                })
                .cloned();
            config_err(file, key.as_deref(), message)
        })?;
    check_numbers(&settings, &defaults, file)?;
    Ok(settings)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// The first key of `file` whose TOML type does not fit the type of its default (the config
/// crate reads `motion_weight = true` as 1.0 and `steps = "5"` as 5): booleans only for
/// booleans, numbers only for numbers (a fraction not for an integer), strings only for strings.
fn type_mismatch(file: &Value, defaults: &Value, prefix: &str) -> Option<(String, String)> {
    let Value::Object(map) = file else {
        return None;
    };
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Some(d) = defaults.get(k) else { continue };
        let fits = match (d, v) {
            (Value::Null, _) => true,
            // A TOML `nan` or `inf` arrives as null.
            (Value::Number(_), Value::Null) => {
                return Some((
                    key,
                    "must be a finite number (NaN and infinity are not settings)".into(),
                ))
            }
            (Value::Object(_), Value::Object(_)) => {
                if let Some(found) = type_mismatch(v, d, &key) {
                    return Some(found);
                }
                true
            }
            (Value::Bool(_), Value::Bool(_)) => true,
            (Value::Number(dn), Value::Number(vn)) => {
                dn.is_f64() || !vn.is_f64() || vn.as_f64().is_some_and(|x| x.fract() == 0.0)
            }
            (Value::String(_), Value::String(_)) => true,
            (Value::Array(_), Value::Array(_)) => true,
            _ => false,
        };
        if !fits {
            return Some((
                key,
                format!(
                    "invalid type: {} ({v}), expected {} like the default {d}",
                    kind(v),
                    kind(d)
                ),
            ));
        }
    }
    None
}

/// Every float setting must be finite (TOML allows `nan` and `inf`), and a learning rate (`lr`,
/// `*_lr`, `learning_rate`) must not be negative.
fn check_numbers<T: Serialize>(
    settings: &T,
    defaults: &Value,
    file: Option<&Path>,
) -> Result<(), TrainError> {
    let value = serde_json::to_value(settings)
        .map_err(|e| config_err(file, None, format!("serialising the settings: {e}")))?;
    fn walk(v: &Value, d: &Value, prefix: &str, file: Option<&Path>) -> Result<(), TrainError> {
        match (v, d) {
            (Value::Object(map), _) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, d.get(k).unwrap_or(&Value::Null), &key, file)?;
                }
                Ok(())
            }
            // serde_json writes a non-finite float as null.
            (Value::Null, Value::Number(_)) => Err(config_err(
                file,
                Some(prefix),
                "must be a finite number (NaN and infinity are not settings)",
            )),
            (Value::Number(n), _) => {
                let leaf = prefix.rsplit('.').next().unwrap_or(prefix);
                let is_lr = leaf == "lr" || leaf.ends_with("_lr") || leaf == "learning_rate";
                match n.as_f64() {
                    Some(x) if is_lr && x < 0.0 => Err(config_err(
                        file,
                        Some(prefix),
                        format!("a learning rate must not be negative, got {x}"),
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
    walk(&value, defaults, "", file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(default)]
    struct Disc {
        feature_blocks: Vec<usize>,
        hidden: usize,
    }

    impl Default for Disc {
        fn default() -> Self {
            Self {
                feature_blocks: vec![2, 3],
                hidden: 64,
            }
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    #[serde(default)]
    struct Recipe {
        discriminator: Disc,
        labels: Vec<String>,
    }

    fn load(overrides: &[&str]) -> Result<Recipe, TrainError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        load_stage_config(None, &overrides)
    }

    #[test]
    fn a_bracketed_override_is_a_list() {
        let r = load(&["discriminator.feature_blocks=[0, 1,3]"]).expect("list");
        assert_eq!(r.discriminator.feature_blocks, vec![0, 1, 3]);
        assert_eq!(r.discriminator.hidden, 64);
        let r = load(&["discriminator.feature_blocks=[]"]).expect("empty list");
        assert!(r.discriminator.feature_blocks.is_empty());
        let r = load(&["labels=[\"a b\", 'c']"]).expect("strings");
        assert_eq!(r.labels, vec!["a b".to_string(), "c".to_string()]);
        // a scalar stays a scalar
        let r = load(&["discriminator.hidden=32"]).expect("scalar");
        assert_eq!(r.discriminator.hidden, 32);
    }

    #[test]
    fn a_list_item_of_the_wrong_type_names_the_key() {
        let err = load(&["discriminator.feature_blocks=[1, x]"]).expect_err("bad item");
        assert!(err.to_string().contains("feature_blocks"), "{err}");
        let err = load(&["discriminator.feature_blocks=3"]).expect_err("not a list");
        assert!(err.to_string().contains("feature_blocks"), "{err}");
    }
}
