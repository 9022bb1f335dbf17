//! What a model will make of a prompt, before sampling: how many tokens it has against the text
//! length the model reads (the rest is dropped), and which words the tokenizer does not know
//! (mapped to its unknown token: the model cannot draw them). Reads only the model directory's
//! `tokenizer.json`, so it works for any model, the bundled world model (a closed vocabulary of
//! ~80 words, 24 tokens) and umT5 alike.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// The findings of [`check_prompt`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptReport {
    /// Tokens of the prompt, the end-of-sequence token included.
    pub tokens: usize,
    /// Tokens the model reads (its text length).
    pub text_len: usize,
    /// The part of the prompt past the text length, dropped (`None` if it all fits).
    pub dropped: Option<String>,
    /// Words the tokenizer maps to its unknown token, in order, each once.
    pub unknown: Vec<String>,
}

impl PromptReport {
    /// Human-readable warnings (empty if none).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dropped) = &self.dropped {
            let shown: String = dropped.chars().take(80).collect();
            let more = if shown.len() < dropped.len() {
                "..."
            } else {
                ""
            };
            out.push(format!(
                "the prompt has {} tokens but the model reads {}: the rest is dropped: \
                 \"{shown}{more}\"",
                self.tokens, self.text_len
            ));
        }
        if !self.unknown.is_empty() {
            let shown: Vec<String> = self
                .unknown
                .iter()
                .take(12)
                .map(|w| format!("'{w}'"))
                .collect();
            let more = if self.unknown.len() > 12 {
                format!(" and {} more", self.unknown.len() - 12)
            } else {
                String::new()
            };
            out.push(format!(
                "not in the model's vocabulary, so it cannot draw them: {}{more}",
                shown.join(", ")
            ));
        }
        out
    }
}

/// Reads a `tokenizer.json` into a [`Tokenizer`], with an error naming the file for any damage.
///
/// The `tokenizers` crate (0.23) panics on some malformed files (a file cut inside its
/// `"decoder"` entry hits an `expect` in its decoder deserialiser; the input the property tests
/// found is kept in `tests/fixtures/regressions/`), so the parse runs under `catch_unwind` and a
/// panic becomes an error.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let err = |reason: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes));
    match parsed {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(err(format!(
                "malformed tokenizer.json (the tokenizers library failed on it: {what})"
            )))
        }
    }
}

/// Tokenizes `prompt` with the `tokenizer.json` at `path` (no truncation) and reports what a model
/// reading `text_len` tokens drops and which words it does not know.
pub fn check_prompt(path: &Path, prompt: &str, text_len: usize) -> Result<PromptReport> {
    let err = |reason: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let mut tokenizer = read_tokenizer(path)?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| err(e.to_string()))?;
    tokenizer.with_padding(None);
    let cleaned = super::clean_prompt(prompt);
    let enc = tokenizer
        .encode(cleaned.as_str(), true)
        .map_err(|e| err(e.to_string()))?;
    let unk_id = ["<unk>", "[UNK]", "<UNK>"]
        .iter()
        .find_map(|t| tokenizer.token_to_id(t));
    let ids = enc.get_ids();
    let offsets = enc.get_offsets();
    let special = enc.get_special_tokens_mask();
    let mut unknown: Vec<String> = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        if Some(id) == unk_id && special.get(i) != Some(&1) {
            let (a, b) = offsets[i];
            if let Some(word) = cleaned.get(a..b) {
                let word = word.to_string();
                if !word.is_empty() && !unknown.contains(&word) {
                    unknown.push(word);
                }
            }
        }
    }
    // The text encoder keeps `text_len - 1` tokens of the prompt and the end-of-sequence token.
    let content: Vec<usize> = (0..ids.len())
        .filter(|&i| special.get(i) != Some(&1))
        .collect();
    let keep = text_len.saturating_sub(1);
    let dropped = content
        .get(keep)
        .and_then(|&i| cleaned.get(offsets[i].0..))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(PromptReport {
        tokens: ids.len(),
        text_len,
        dropped,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_tokenizer() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/world/tokenizer.json")
    }

    /// Bad-input table row 14: a long prompt, unknown words, another script.
    #[test]
    fn dropped_tokens_and_unknown_words_are_reported() {
        let ok = check_prompt(&world_tokenizer(), "a red ball moves left", 24).unwrap();
        assert!(ok.warnings().is_empty(), "{:?}", ok.warnings());

        let star = check_prompt(&world_tokenizer(), "an orange star spins", 24).unwrap();
        assert_eq!(star.unknown, vec!["an", "orange", "star", "spins"]);
        assert!(
            star.warnings()[0].contains("'orange'"),
            "{:?}",
            star.warnings()
        );

        let long = "a red ball moves left ".repeat(1000);
        let r = check_prompt(&world_tokenizer(), &long, 24).unwrap();
        assert_eq!(r.tokens, 5001);
        let dropped = r.dropped.as_deref().unwrap();
        assert!(dropped.starts_with("moves left a red ball"), "{dropped}");
        assert!(
            r.warnings()[0].contains("5001 tokens"),
            "{:?}",
            r.warnings()
        );

        let other = check_prompt(&world_tokenizer(), "красный шар", 24).unwrap();
        assert_eq!(other.unknown, vec!["красный", "шар"]);
    }

    /// Regression input of the property tests (`tests/parsers_prop.rs`): a tokenizer.json cut
    /// inside `"decoder"` made the tokenizers crate panic; it is an error naming the file now.
    #[test]
    fn a_tokenizer_cut_in_its_decoder_is_an_error_not_a_panic() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/regressions/tokenizer-truncated-in-decoder.json");
        let err = read_tokenizer(&path).unwrap_err().to_string();
        assert!(err.contains("tokenizer-truncated-in-decoder.json"), "{err}");
        assert!(check_prompt(&path, "a red ball", 24).is_err());
    }
}
