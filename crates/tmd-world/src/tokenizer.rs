//! The world's tokenizer: a word-level `tokenizer.json` whose vocabulary is every word the caption
//! templates can write.
//!
//! The real umT5 tokenizer (a 256k-piece SentencePiece model) cannot be downloaded here and would
//! be wasted on a world of a few hundred words. A word-level vocabulary keeps the text side honest
//! and small: lower-cased, split on whitespace and punctuation (BERT pre-tokenizer), `</s>`
//! appended as T5 does, `<pad>` = 0, `</s>` = 1, `<unk>` = 2 as in umT5. Any word outside the
//! world maps to `<unk>`, so an unknown prompt is visible rather than silently mangled.
//! The file loads through the same [`tmd_model::t5::TextEncoder`] pipeline as umT5's.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::attributes::Attributes;
use super::caption::{caption_with_template, TEMPLATE_COUNT};
use super::error::WorldError;

/// Special tokens, in id order (the umT5 convention).
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// Seeds per (combination, template) used to enumerate the synonyms the templates draw.
const SYNONYM_SEEDS: u64 = 24;

/// Splits text the way the tokenizer's pre-tokenizer does: lower-case, whitespace, and every
/// ASCII punctuation character on its own.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in text.to_lowercase().split_whitespace() {
        let mut word = String::new();
        for c in chunk.chars() {
            if c.is_ascii_punctuation() {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// Every word the caption templates can produce, sorted.
pub fn world_vocabulary() -> BTreeSet<String> {
    let mut vocab = BTreeSet::new();
    for a in Attributes::all() {
        for template in 0..TEMPLATE_COUNT {
            for seed in 0..SYNONYM_SEEDS {
                vocab.extend(words(&caption_with_template(&a, template, seed)));
            }
        }
    }
    vocab
}

/// The `tokenizer.json` text of the world tokenizer.
pub fn world_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for (i, w) in world_vocabulary().into_iter().enumerate() {
        vocab.insert(w, json!(i + SPECIAL_TOKENS.len()));
    }
    let added: Vec<_> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, t)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}}
            ],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}}
            ],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    serde_json::to_string_pretty(&tokenizer).expect("JSON value serialises")
}

/// Writes the world tokenizer to `path`.
pub fn write_world_tokenizer(path: &Path) -> Result<(), WorldError> {
    std::fs::write(path, world_tokenizer_json()).map_err(|e| WorldError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caption_tokenizes_without_unknown_words() {
        let tok = tokenizers::Tokenizer::from_bytes(world_tokenizer_json().as_bytes()).unwrap();
        let unk = tok.token_to_id("<unk>").unwrap();
        assert_eq!(unk, 2);
        assert_eq!(tok.token_to_id("</s>"), Some(1));
        for (i, a) in Attributes::all().enumerate().step_by(7) {
            let c = caption_with_template(&a, i % TEMPLATE_COUNT, i as u64 + 1000);
            let enc = tok.encode(c.as_str(), true).unwrap();
            assert!(!enc.get_ids().contains(&unk), "{c}: {:?}", enc.get_tokens());
            assert_eq!(enc.get_ids().last(), Some(&1), "{c}: </s> appended");
            assert_eq!(
                enc.get_ids().len(),
                words(&c).len() + 1,
                "{c}: one id per word"
            );
        }
        let enc = tok.encode("a purple elephant", true).unwrap();
        assert!(
            enc.get_ids().contains(&unk),
            "words outside the world are <unk>"
        );
    }
}
