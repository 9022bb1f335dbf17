//! Checks of a request at the edge, before any weight is loaded or sampled: numbers (finite, in
//! range), the memory the request will take (refused with the figure when it cannot fit), and what
//! the model will make of the prompt (warnings for dropped tokens and words it cannot draw).

use std::path::Path;

use anyhow::{bail, Context, Result};
use tmd_model::model_dir::ModelDir;

/// Guidance scales above this are refused: the clip saturates long before (Wan2.1 uses 5; 1e30
/// made every pixel grey 128).
pub const MAX_GUIDANCE: f64 = 100.0;

/// Checks the teacher's guidance and shift.
pub fn numbers(guidance: f64, shift: f64) -> Result<()> {
    if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
        bail!(
            "--guidance {guidance} is out of range: use a finite scale in [0, {MAX_GUIDANCE}] \
             (1 disables guidance; Wan2.1 uses 5; larger scales give a saturated or constant clip)"
        );
    }
    if !shift.is_finite() || shift <= 0.0 {
        bail!("--shift {shift} is out of range: use a finite number > 0 (Wan2.1 uses 5)");
    }
    Ok(())
}

/// Refuses a `frames x height x width` request whose memory estimate exceeds the memory
/// available, with the figures; `cpu`: burn's CPU backend (attention as a full score matrix).
pub fn memory(
    model: &Path,
    frames: usize,
    height: usize,
    width: usize,
    cfg: bool,
    cpu: bool,
) -> Result<()> {
    let dir = ModelDir::open(model).with_context(|| format!("opening {}", model.display()))?;
    let (dit, vae) = (dir.transformer_config()?, dir.vae_config()?);
    // Resolution rules first (they name the flag).
    tmd_sampler::pipeline::latent_shape(&vae, &dit, frames, height, width)?;
    let est = tmd_sampler::budget::estimate(&dit, &vae, frames, height, width, cfg, cpu);
    let Some(available) = tmd_sampler::budget::available_memory() else {
        return Ok(());
    };
    // On a GPU the host holds at least the decoded clip; on the CPU everything.
    let need = if cpu { est.total() } else { est.vae };
    if need > available {
        use tmd_sampler::budget::gib;
        bail!(
            "--frames {frames} --height {height} --width {width} needs about {} of memory \
             ({} tokens: attention {}, DiT activations {}, VAE and clip {}), but {} is \
             available; lower --frames, --height or --width",
            gib(need),
            est.tokens,
            gib(est.attention),
            gib(est.dit),
            gib(est.vae),
            gib(available)
        );
    }
    Ok(())
}

/// Warnings about the prompt (dropped past the model's text length, words it cannot draw), printed
/// to stderr. A tokenizer that cannot be read is left to the loader to report.
pub fn prompt(model: &Path, prompt: &str) {
    let Ok(dir) = ModelDir::open(model) else {
        return;
    };
    let Ok(text_len) = dir.transformer_config().map(|c| c.text_len) else {
        return;
    };
    if let Ok(report) =
        tmd_model::t5::prompt_check::check_prompt(&dir.tokenizer_path(), prompt, text_len)
    {
        for w in report.warnings() {
            eprintln!("warning: --prompt: {w}");
        }
    }
}
