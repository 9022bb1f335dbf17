//! The Wan2.1 text pipeline: clean, tokenize (with `</s>`), pad/truncate to `text_len`, encode with
//! umT5, zero the positions past each prompt's length; with a per-process embedding cache.
//!
//! The original trims each output to its real length and the DiT zero-pads it back to 512; here
//! the padded rows are zeroed directly, which gives the same `[batch, text_len, d_model]` context.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use burn::prelude::*;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::utils::padding::{PaddingDirection, PaddingParams, PaddingStrategy};
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::Tokenizer;

use super::clean::clean_prompt;
use super::model::UMT5Encoder;
use crate::error::{ModelError, Result};

/// Number of text positions of Wan2.1 (`text_len` in its config).
pub const DEFAULT_TEXT_LEN: usize = 512;

/// Token ids and attention mask of a batch of prompts, padded/truncated to `text_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, row-major `[batch, text_len]`, padding id 0.
    pub ids: Vec<i64>,
    /// Attention mask, row-major `[batch, text_len]`: 1 for real tokens (including `</s>`), 0 for padding.
    pub mask: Vec<i64>,
    /// Number of real tokens of each prompt (the sum of its mask row).
    pub lengths: Vec<usize>,
    /// Number of positions per prompt.
    pub text_len: usize,
}

impl TokenBatch {
    /// Number of prompts.
    pub fn batch(&self) -> usize {
        self.lengths.len()
    }

    /// The ids and mask as integer tensors.
    ///
    /// # Shapes
    /// - output: (`ids` `[batch, text_len]`, `mask` `[batch, text_len]`)
    pub fn to_tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let shape = [self.batch(), self.text_len];
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), shape), device),
        )
    }
}

/// Text embeddings computed once per process, keyed by the cleaned prompt text.
///
/// Entries are `[text_len, d_model]` tensors on the encoder's device (8 MiB each for umT5-XXL in f32).
#[derive(Debug)]
pub struct EmbeddingCache<B: Backend> {
    entries: Mutex<HashMap<String, Tensor<B, 2>>>,
}

impl<B: Backend> Default for EmbeddingCache<B> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<B: Backend> EmbeddingCache<B> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tensor<B, 2>>> {
        // A panic while holding the lock leaves a map that is still consistent: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The embedding of a cleaned prompt, if cached.
    ///
    /// # Shapes
    /// - output: `[text_len, d_model]`
    pub fn get(&self, cleaned: &str) -> Option<Tensor<B, 2>> {
        self.lock().get(cleaned).cloned()
    }

    /// Stores the embedding of a cleaned prompt.
    ///
    /// # Shapes
    /// - `embedding`: `[text_len, d_model]`
    pub fn insert(&self, cleaned: String, embedding: Tensor<B, 2>) {
        self.lock().insert(cleaned, embedding);
    }

    /// Number of cached prompts.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Prompt -> umT5 context for the DiT: cleaning, tokenizer, encoder, `text_len`, cache.
#[derive(Debug)]
pub struct TextEncoder<B: Backend> {
    tokenizer: Tokenizer,
    tokenizer_path: PathBuf,
    encoder: UMT5Encoder<B>,
    text_len: usize,
    device: B::Device,
    cache: EmbeddingCache<B>,
    encoder_calls: AtomicUsize,
}

impl<B: Backend> TextEncoder<B> {
    /// Loads the encoder from a transformers folder (`text_encoder/`: `config.json` +
    /// `*.safetensors`) and the tokenizer from its `tokenizer.json`; `text_len` is 512.
    pub fn from_dirs(
        text_encoder_dir: impl AsRef<Path>,
        tokenizer_json_path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Self> {
        let encoder = UMT5Encoder::from_hf_dir(text_encoder_dir, device)?;
        Self::new(tokenizer_json_path, encoder, DEFAULT_TEXT_LEN, device)
    }

    /// Builds the pipeline from a `tokenizer.json` and a loaded encoder.
    ///
    /// The tokenizer is set to truncate to `text_len` tokens (room kept for `</s>`) and pad to
    /// `text_len` on the right with `<pad>` (id 0), as the reference calls it
    /// (`padding="max_length", truncation=True, add_special_tokens=True`). A tokenizer.json without
    /// a post-processor gets T5's: `</s>` appended to every sequence.
    pub fn new(
        tokenizer_json_path: impl AsRef<Path>,
        encoder: UMT5Encoder<B>,
        text_len: usize,
        device: &B::Device,
    ) -> Result<Self> {
        let path = tokenizer_json_path.as_ref().to_path_buf();
        let err = |reason: String| ModelError::Tokenizer {
            path: path.clone(),
            reason,
        };
        if !path.is_file() {
            return Err(ModelError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
            ));
        }
        let mut tokenizer = super::prompt_check::read_tokenizer(&path)?;
        if tokenizer.get_post_processor().is_none() {
            let eos_id = tokenizer
                .token_to_id("</s>")
                .ok_or_else(|| err("no post-processor and no '</s>' token to append".into()))?;
            let template = TemplateProcessing::builder()
                .try_single("$A </s>")
                .and_then(|b| b.try_pair("$A </s> $B </s>"))
                .map_err(|e| err(e.to_string()))?
                .special_tokens(vec![("</s>".to_string(), eos_id)])
                .build()
                .map_err(|e| err(e.to_string()))?;
            tokenizer.with_post_processor(Some(template));
        }
        set_length(&mut tokenizer, text_len).map_err(err)?;
        Ok(Self {
            tokenizer,
            tokenizer_path: path,
            encoder,
            text_len,
            device: device.clone(),
            cache: EmbeddingCache::new(),
            encoder_calls: AtomicUsize::new(0),
        })
    }

    /// The same pipeline with the encoder's weights cast to `dtype` (bf16 on GPUs, as the
    /// reference loads umT5); the encoder then computes in `dtype` (RMS norms and softmax in f32)
    /// and [`encode_tokens`](Self::encode_tokens) still returns f32. Empties the cache.
    pub fn with_dtype(mut self, dtype: burn::tensor::DType) -> Self {
        self.encoder = crate::dtype::cast_float_params(self.encoder, dtype);
        self.cache.clear();
        self
    }

    /// The same pipeline with another number of text positions (Wan2.1 uses 512); empties the cache.
    pub fn with_text_len(mut self, text_len: usize) -> Result<Self> {
        set_length(&mut self.tokenizer, text_len).map_err(|reason| ModelError::Tokenizer {
            path: self.tokenizer_path.clone(),
            reason,
        })?;
        self.text_len = text_len;
        self.cache.clear();
        Ok(self)
    }

    /// Number of text positions of the output.
    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// The umT5 encoder.
    pub fn encoder(&self) -> &UMT5Encoder<B> {
        &self.encoder
    }

    /// The configured tokenizer (truncation and padding set to `text_len`).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The embedding cache used by [`encode_cached`](Self::encode_cached).
    pub fn cache(&self) -> &EmbeddingCache<B> {
        &self.cache
    }

    /// How many times the umT5 encoder has run (one per batch, cache hits do not count).
    pub fn encoder_calls(&self) -> usize {
        self.encoder_calls.load(Ordering::Relaxed)
    }

    /// Cleans each prompt (see [`clean_prompt`]); fails with [`ModelError::EmptyPrompt`] for an
    /// empty result unless `allow_empty`.
    pub fn clean(&self, prompts: &[&str], allow_empty: bool) -> Result<Vec<String>> {
        prompts
            .iter()
            .map(|p| {
                let cleaned = clean_prompt(p);
                if cleaned.is_empty() && !allow_empty {
                    Err(ModelError::EmptyPrompt)
                } else {
                    Ok(cleaned)
                }
            })
            .collect()
    }

    /// Tokenizes already cleaned prompts: `</s>` appended, truncated/padded to `text_len`.
    pub fn tokenize_cleaned(&self, cleaned: &[String]) -> Result<TokenBatch> {
        let inputs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        let encodings =
            self.tokenizer
                .encode_batch(inputs, true)
                .map_err(|e| ModelError::Tokenizer {
                    path: self.tokenizer_path.clone(),
                    reason: e.to_string(),
                })?;
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(cleaned.len() * self.text_len),
            mask: Vec::with_capacity(cleaned.len() * self.text_len),
            lengths: Vec::with_capacity(cleaned.len()),
            text_len: self.text_len,
        };
        for enc in &encodings {
            if enc.get_ids().len() != self.text_len {
                return Err(ModelError::Tokenizer {
                    path: self.tokenizer_path.clone(),
                    reason: format!(
                        "expected {} tokens after padding, got {}",
                        self.text_len,
                        enc.get_ids().len()
                    ),
                });
            }
            batch.ids.extend(enc.get_ids().iter().map(|&i| i as i64));
            batch
                .mask
                .extend(enc.get_attention_mask().iter().map(|&m| m as i64));
            batch
                .lengths
                .push(enc.get_attention_mask().iter().map(|&m| m as usize).sum());
        }
        Ok(batch)
    }

    /// Cleans and tokenizes prompts (empty prompts are an error).
    pub fn tokenize(&self, prompts: &[&str]) -> Result<TokenBatch> {
        self.tokenize_cleaned(&self.clean(prompts, false)?)
    }

    /// Runs the encoder on a token batch and zeroes the rows past each prompt's length.
    ///
    /// # Shapes
    /// - output: `[batch, text_len, d_model]`
    pub fn encode_tokens(&self, tokens: &TokenBatch) -> Tensor<B, 3> {
        let (ids, mask) = tokens.to_tensors::<B>(&self.device);
        self.encoder_calls.fetch_add(1, Ordering::Relaxed);
        let hidden = self.encoder.forward(ids, mask.clone());
        // Wan trims to the real length and the DiT pads back with zeros: same as zeroing here.
        // In the default float dtype whatever the encoder's (a bf16 encoder's output is cast up).
        let mask = mask.float();
        hidden.cast(mask.dtype()) * mask.unsqueeze_dim::<3>(2)
    }

    /// Encodes prompts into the DiT context.
    ///
    /// An empty prompt (after cleaning) is an error: [`ModelError::EmptyPrompt`]. For the
    /// unconditional branch with an empty negative prompt, use
    /// [`encode_allow_empty`](Self::encode_allow_empty).
    ///
    /// # Shapes
    /// - output: `[prompts.len(), text_len, d_model]`, zero past each prompt's token count
    pub fn encode(&self, prompts: &[&str]) -> Result<Tensor<B, 3>> {
        self.encode_with(prompts, false)
    }

    /// Like [`encode`](Self::encode), but an empty prompt is encoded as the lone `</s>` token, as
    /// diffusers' `WanPipeline` does for `negative_prompt=""`. (The original Wan2.1 code replaces an
    /// empty negative prompt by its default Chinese negative prompt instead; do that before calling
    /// if you want the original's behaviour.)
    ///
    /// # Shapes
    /// - output: `[prompts.len(), text_len, d_model]`
    pub fn encode_allow_empty(&self, prompts: &[&str]) -> Result<Tensor<B, 3>> {
        self.encode_with(prompts, true)
    }

    fn encode_with(&self, prompts: &[&str], allow_empty: bool) -> Result<Tensor<B, 3>> {
        if prompts.is_empty() {
            return Err(ModelError::BadShape {
                what: "prompts".into(),
                expected: "at least one prompt".into(),
                found: vec![0],
            });
        }
        let cleaned = self.clean(prompts, allow_empty)?;
        let tokens = self.tokenize_cleaned(&cleaned)?;
        Ok(self.encode_tokens(&tokens))
    }

    /// Encodes one prompt through the cache: the encoder runs only the first time a given cleaned
    /// prompt is seen in this process.
    ///
    /// # Shapes
    /// - output: `[1, text_len, d_model]`
    pub fn encode_cached(&self, prompt: &str) -> Result<Tensor<B, 3>> {
        self.encode_cached_batch(&[prompt], false)
    }

    /// Encodes prompts through the cache; the prompts not cached yet are encoded together in one
    /// batch. `allow_empty` as in [`encode_allow_empty`](Self::encode_allow_empty).
    ///
    /// # Shapes
    /// - output: `[prompts.len(), text_len, d_model]`
    pub fn encode_cached_batch(&self, prompts: &[&str], allow_empty: bool) -> Result<Tensor<B, 3>> {
        if prompts.is_empty() {
            return Err(ModelError::BadShape {
                what: "prompts".into(),
                expected: "at least one prompt".into(),
                found: vec![0],
            });
        }
        let cleaned = self.clean(prompts, allow_empty)?;
        let mut missing: Vec<String> = Vec::new();
        for c in &cleaned {
            if self.cache.get(c).is_none() && !missing.contains(c) {
                missing.push(c.clone());
            }
        }
        if !missing.is_empty() {
            let tokens = self.tokenize_cleaned(&missing)?;
            let encoded = self.encode_tokens(&tokens);
            let [n, len, d] = encoded.dims();
            for (i, key) in missing.into_iter().enumerate().take(n) {
                let row = encoded.clone().narrow(0, i, 1).reshape([len, d]);
                self.cache.insert(key, row);
            }
        }
        let rows = cleaned
            .iter()
            .map(|c| {
                self.cache
                    .get(c)
                    .map(|t| t.unsqueeze_dim::<3>(0))
                    .ok_or_else(|| ModelError::Tokenizer {
                        path: self.tokenizer_path.clone(),
                        reason: format!("embedding of prompt {c:?} missing from the cache"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(rows, 0))
    }
}

/// Sets truncation to `text_len` tokens (special tokens included) and right padding to exactly
/// `text_len` with `<pad>` (id 0 when the vocabulary has no `<pad>`).
fn set_length(tokenizer: &mut Tokenizer, text_len: usize) -> std::result::Result<(), String> {
    if text_len < 2 {
        return Err(format!("text_len must be at least 2, got {text_len}"));
    }
    let pad_id = tokenizer.token_to_id("<pad>").unwrap_or(0);
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: text_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| e.to_string())?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(text_len),
        direction: PaddingDirection::Right,
        pad_to_multiple_of: None,
        pad_id,
        pad_type_id: 0,
        pad_token: "<pad>".into(),
    }));
    Ok(())
}
