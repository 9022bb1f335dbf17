//! `cargo xtask bench`: timings of the Wan-scale pieces on one device, with random weights, for
//! comparison with the PyTorch reference measured in the same GPU call
//! (`scripts/gpu/bench.sh` runs both and `scripts/gpu/bench_merge.py` writes the ratios).
//!
//! Each item prints one JSON line `{"item": .., "ms": median, ..}`. Timing: `warm` untimed runs
//! (NVRTC compilation and autotune happen there), then `rep` runs, each followed by a device
//! sync; the median is reported. The DiT runs under the bf16 policy of the original's autocast
//! ([`Precision::Bf16Matmul`]: bf16 matrix products, f32 norms, modulation and residual stream).
//! GEMM and attention operands are bf16 ([`to_bf16`]: a real cast on CUDA, rounding emulated in
//! f32 on NdArray, so CPU runs only check the code path).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Distribution;
use serde_json::{json, Value};
use tmd_flowhead::{rollout, FlowHeadConfig, TmdStudent};
use tmd_model::dit::{to_bf16, Precision, WanConfig};
use tmd_model::t5::UMT5Config;
use tmd_model::vae::WanVaeConfig;
use tmd_sampler::TmdGrids;

use crate::common::DeviceKind;

/// What to time and at which size.
pub struct BenchArgs {
    /// Latent frames, height, width of the DiT and VAE items (480x832x81 pixels: 21, 60, 104).
    pub latent: [usize; 3],
    /// Untimed warm-up runs.
    pub warm: usize,
    /// Timed runs (median reported).
    pub rep: usize,
}

fn median_ms<B: Backend, T>(
    device: &B::Device,
    warm: usize,
    rep: usize,
    mut f: impl FnMut() -> T,
) -> f64 {
    for _ in 0..warm {
        let _ = f();
        let _ = B::sync(device);
    }
    let mut ms: Vec<f64> = (0..rep.max(1))
        .map(|_| {
            let t0 = Instant::now();
            let out = f();
            let _ = B::sync(device);
            drop(out);
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[ms.len() / 2]
}

fn rand<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn rel_err<B: Backend, const D: usize>(a: Tensor<B, D>, reference: Tensor<B, D>) -> f64 {
    let num: f64 = (a - reference.clone())
        .powi_scalar(2)
        .sum()
        .sqrt()
        .into_scalar()
        .elem();
    let den: f64 = reference.powi_scalar(2).sum().sqrt().into_scalar().elem();
    num / den
}

/// Tokens of the DiT at `latent` (patch 1x2x2).
fn tokens(latent: [usize; 3]) -> usize {
    latent[0] * (latent[1] / 2) * (latent[2] / 2)
}

/// The FLOP count the PyTorch reference script uses for one DiT forward.
fn dit_flops(c: &WanConfig, n: usize, text: usize) -> f64 {
    let (n, d, f, t) = (n as f64, c.dim as f64, c.ffn_dim as f64, text as f64);
    c.num_layers as f64
        * (8.0 * n * d * d + 4.0 * n * n * d + 4.0 * n * d * d + 4.0 * n * t * d + 4.0 * n * d * f)
}

/// Tokens of the umT5 items (Wan2.1's `text_len`).
const T5_TOKENS: usize = 512;

/// A fixed token batch of `T5_TOKENS` ids, no padding (as torch_bench.py).
fn t5_tokens<B: Backend>(device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            (0..T5_TOKENS as i64).map(|i| (i * 7919) % 32000).collect(),
            [1, T5_TOKENS],
        ),
        device,
    );
    (ids, Tensor::<B, 2, Int>::ones([1, T5_TOKENS], device))
}

/// bf16 where the backend has it, else f32.
fn bf16_or_f32<B: Backend>(device: &B::Device) -> burn::tensor::DType {
    use burn::tensor::DType;
    if tmd_model::dtype::supports::<B>(device, DType::BF16) {
        DType::BF16
    } else {
        DType::F32
    }
}

/// The dtype an item runs in: f32 for `*-f32` items, else [`bf16_or_f32`].
fn item_dtype<B: Backend>(item: &str, device: &B::Device) -> burn::tensor::DType {
    if item.ends_with("-f32") {
        burn::tensor::DType::F32
    } else {
        bf16_or_f32::<B>(device)
    }
}

fn dtype_name(dtype: burn::tensor::DType) -> &'static str {
    match dtype {
        burn::tensor::DType::BF16 => "bf16",
        burn::tensor::DType::F16 => "f16",
        burn::tensor::DType::F64 => "f64",
        _ => "f32",
    }
}

/// Runs one item and returns its JSON record.
pub fn run_item<B: Backend>(item: &str, args: &BenchArgs, device: &B::Device) -> Result<Value> {
    let (warm, rep) = (args.warm, args.rep);
    let n = tokens(args.latent);
    let [lf, lh, lw] = args.latent;
    Ok(match item {
        "gemm" => {
            // The 1.3B block's GEMM shapes at full resolution: qkv/o (d x d), FFN up and down.
            let mut shapes = Vec::new();
            for (name, k, m) in [
                ("proj_1536x1536", 1536, 1536),
                ("ffn_up_1536x8960", 1536, 8960),
                ("ffn_down_8960x1536", 8960, 1536),
            ] {
                let a = to_bf16(rand::<B, 2>([n, k], device));
                let b = to_bf16(rand::<B, 2>([k, m], device));
                let ms = median_ms::<B, _>(device, warm, rep, || a.clone().matmul(b.clone()));
                let tflops = 2.0 * (n * k * m) as f64 / ms / 1e9;
                shapes.push(json!({"shape": name, "m": n, "k": k, "n": m, "ms": ms, "tflops": tflops}));
            }
            json!({"item": "gemm", "dtype": "bf16", "shapes": shapes})
        }
        "attention" => {
            let (h, d) = (12, 128);
            let q = to_bf16(rand::<B, 4>([1, h, n, d], device));
            let k = to_bf16(rand::<B, 4>([1, h, n, d], device));
            let v = to_bf16(rand::<B, 4>([1, h, n, d], device));
            let ms = median_ms::<B, _>(device, warm, rep, || {
                attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    None,
                    None,
                    AttentionModuleOptions::default(),
                )
            });
            let tflops = 4.0 * (n * n * d * h) as f64 / ms / 1e9;
            json!({"item": "attention", "shape": [1, h, n, d], "dtype": "bf16", "ms": ms, "tflops": tflops})
        }
        "dit-1.3b" | "dit-14b" => {
            let c = if item == "dit-1.3b" {
                WanConfig::t2v_1_3b()
            } else {
                WanConfig::t2v_14b()
            };
            let text = 512;
            let model = c.init::<B>(device).with_precision(Precision::Bf16Matmul);
            let x = rand::<B, 5>([1, c.in_channels, lf, lh, lw], device);
            let t = Tensor::<B, 1>::from_floats([500.0], device);
            let ctx = rand::<B, 3>([1, text, c.text_dim], device);
            let ms = median_ms::<B, _>(device, warm, rep, || {
                model.forward(x.clone(), t.clone(), ctx.clone())
            });
            let tflops = dit_flops(&c, n, text) / ms / 1e9;
            json!({"item": item, "tokens": n, "precision": "bf16-matmul", "ms": ms, "tflops": tflops})
        }
        "dit-1.3b-block" => {
            // One block of the 1.3B DiT at full length: the forward's cost per block, when the
            // whole forward is too slow to time within a device call.
            let mut c = WanConfig::t2v_1_3b();
            c.num_layers = 1;
            let model = c.init::<B>(device).with_precision(Precision::Bf16Matmul);
            let x = rand::<B, 5>([1, c.in_channels, lf, lh, lw], device);
            let t = Tensor::<B, 1>::from_floats([500.0], device);
            let ctx = rand::<B, 3>([1, 512, c.text_dim], device);
            let inputs = model.embed(x, t, ctx)?;
            let ms = median_ms::<B, _>(device, warm, rep, || {
                model.forward_blocks(inputs.tokens.clone(), &inputs, 0..1)
            });
            json!({"item": item, "tokens": n, "precision": "bf16-matmul", "ms": ms,
                   "forward_estimate_ms": ms * 30.0})
        }
        "bf16-error" => {
            // The 1.3B DiT under the bf16 policy against full f32, same weights and inputs, at
            // half the spatial size (a full-size f32 attention would not fit beside it).
            let c = WanConfig::t2v_1_3b();
            let model = c.init::<B>(device).with_precision(Precision::Bf16Matmul);
            let latent = [lf, lh / 2 / 2 * 2, lw / 2 / 2 * 2];
            let x = rand::<B, 5>([1, c.in_channels, latent[0], latent[1], latent[2]], device);
            let t = Tensor::<B, 1>::from_floats([500.0], device);
            let ctx = rand::<B, 3>([1, 512, c.text_dim], device);
            let bf16 = model.forward(x.clone(), t.clone(), ctx.clone())?;
            let f32_out = model.with_precision(Precision::F32).forward(x, t, ctx)?;
            json!({"item": item, "model": "dit-1.3b", "latent": latent, "tokens": tokens(latent),
                   "rel_err": rel_err(bf16, f32_out)})
        }
        "tmd-step" => {
            // One outer step of the TMD-N2H5 student at 1.3B: backbone (25 blocks) + 2 head
            // passes (5 blocks each).
            let c = WanConfig::t2v_1_3b();
            let model = c.init::<B>(device).with_precision(Precision::Bf16Matmul);
            let student = TmdStudent::from_teacher(model, &FlowHeadConfig::paper(5))?;
            let grids = TmdGrids::new(2, 2, 10.0, 10.0)?;
            let x = rand::<B, 5>([1, c.in_channels, lf, lh, lw], device);
            let ctx = rand::<B, 3>([1, 512, c.text_dim], device);
            let t = Tensor::<B, 1>::from_floats([grids.outer[0] as f32], device);
            let ms = median_ms::<B, _>(device, warm, rep, || -> Result<Tensor<B, 5>> {
                let bb = student.backbone(x.clone(), t.clone(), ctx.clone())?;
                Ok(rollout(&student, &bb, x.clone(), &grids.inner)?)
            });
            json!({"item": "tmd-step", "config": "N2H5", "tokens": n, "precision": "bf16-matmul", "ms": ms,
                   "effective_nfe_per_step": tmd_sampler::effective_nfe::tmd(1, 2, 5, 30)})
        }
        "vae-decode" | "vae-decode-f32" => {
            // The reference's dtype (bf16, as diffusers' AutoencoderKLWan in torch_bench.py)
            // where the backend has it; `vae-decode-f32` and backends without bf16: f32.
            let dtype = item_dtype::<B>(item, device);
            let vae = WanVaeConfig::wan2_1().init::<B>(device).with_dtype(dtype);
            let z = rand::<B, 5>([1, 16, lf, lh, lw], device);
            let ms = median_ms::<B, _>(device, warm.min(1), rep.min(3), || vae.decode(z.clone()));
            json!({"item": item, "latent": [1, 16, lf, lh, lw], "precision": dtype_name(dtype), "ms": ms})
        }
        "vae-bf16-error" => {
            // The bf16 decode against f32, same weights and latent, at a quarter of the frames
            // and half the height and width (the error is a per-layer property; this keeps the
            // f32 reference quick).
            let vae = WanVaeConfig::wan2_1().init::<B>(device);
            let (f, h, w) = (lf.div_ceil(4).max(2), lh.div_ceil(2), lw.div_ceil(2));
            let z = rand::<B, 5>([1, 16, f, h, w], device);
            let f32_out = vae.decode(z.clone())?;
            let dtype = bf16_or_f32::<B>(device);
            let bf16_out = vae.with_dtype(dtype).decode(z)?;
            json!({"item": item, "latent": [1, 16, f, h, w], "precision": dtype_name(dtype),
                   "rel_err": rel_err(bf16_out.clone(), f32_out.clone()),
                   "max_abs_err": (bf16_out - f32_out).abs().max().into_scalar().elem::<f64>()})
        }
        "t5" | "t5-f32" => {
            let dtype = item_dtype::<B>(item, device);
            let enc = tmd_model::dtype::cast_float_params(UMT5Config::umt5_xxl().init::<B>(device), dtype);
            let (ids, mask) = t5_tokens::<B>(device);
            let ms = median_ms::<B, _>(device, warm, rep, || enc.forward(ids.clone(), mask.clone()));
            json!({"item": item, "tokens": T5_TOKENS, "precision": dtype_name(dtype), "ms": ms})
        }
        "t5-bf16-error" => {
            let enc = UMT5Config::umt5_xxl().init::<B>(device);
            let (ids, mask) = t5_tokens::<B>(device);
            let f32_out = enc.forward(ids.clone(), mask.clone());
            let dtype = bf16_or_f32::<B>(device);
            let enc = tmd_model::dtype::cast_float_params(enc, dtype);
            let bf16_out = enc.forward(ids, mask).cast(burn::tensor::DType::F32);
            json!({"item": item, "tokens": T5_TOKENS, "precision": dtype_name(dtype),
                   "rel_err": rel_err(bf16_out, f32_out)})
        }
        other => anyhow::bail!(
            "unknown bench item '{other}' (gemm, attention, dit-1.3b, dit-1.3b-block, dit-14b, bf16-error, tmd-step, vae-decode, vae-decode-f32, vae-bf16-error, t5, t5-f32, t5-bf16-error)"
        ),
    })
}

/// Arguments of `bench` (its help text is the doc comment of `Command::Bench`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Items, comma-separated: gemm, attention, dit-1.3b, dit-1.3b-block, dit-14b, bf16-error,
    /// tmd-step, vae-decode (bf16 where the backend has it), vae-decode-f32, vae-bf16-error,
    /// t5 (bf16 likewise), t5-f32, t5-bf16-error.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gemm,attention,dit-1.3b,tmd-step"
    )]
    items: Vec<String>,
    /// Latent frames,height,width (480x832x81 pixels: 21,60,104).
    #[arg(long, value_delimiter = ',', default_value = "21,60,104")]
    latent: Vec<usize>,
    /// Untimed warm-up runs per item (kernel compilation and autotune happen here).
    #[arg(long, default_value_t = 2)]
    warm: usize,
    /// Timed runs per item (the median is reported).
    #[arg(long, default_value_t = 5)]
    rep: usize,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    device: DeviceKind,
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    let Args {
        items,
        latent,
        warm,
        rep,
        device,
    } = args;
    let [f, h, w] = latent[..] else {
        bail!("--latent takes frames,height,width (e.g. 21,60,104), got {latent:?}");
    };
    let args = BenchArgs {
        latent: [f, h, w],
        warm,
        rep,
    };
    for item in &items {
        let t0 = Instant::now();
        let record = on_backend!(device, B, dev => run_item::<B>(item, &args, &dev))
            .with_context(|| format!("bench item {item}"))?;
        let mut record = record;
        record["device"] = serde_json::json!(device.name());
        record["wall_s"] = serde_json::json!(t0.elapsed().as_secs_f64());
        println!("{record}");
    }
    Ok(())
}
