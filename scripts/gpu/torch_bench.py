"""The PyTorch side of `scripts/gpu/bench.sh`: the same items as `cargo xtask bench`, timed the
same way (warm-up runs, then the median of timed runs, CUDA events), one JSON line per item.

Random weights in bf16 (the reference's inference dtype): diffusers' WanTransformer3DModel and
AutoencoderKLWan, transformers' UMT5EncoderModel when transformers is installed. Items whose
library is missing print {"item": .., "skipped": reason}.

    python3 torch_bench.py gemm,attention,dit-1.3b [--latent 21,60,104] [--warm 2] [--rep 5]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

DEV = "cuda"


def median_ms(fn, warm, rep):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rep):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def randn(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device=DEV, dtype=dtype)


def dit_config(name):
    # Wan2.1 T2V presets (WAN21.md): heads x 128 = dim.
    return {"dit-1.3b": (12, 8960, 30), "dit-14b": (40, 13824, 40)}[name]


def dit_flops(heads, ffn, layers, n, text=512):
    d = heads * 128
    return layers * (8 * n * d * d + 4 * n * n * d + 4 * n * d * d + 4 * n * text * d + 4 * n * d * ffn)


def item(name, latent, warm, rep):
    f, h, w = latent
    n = f * (h // 2) * (w // 2)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        if name == "gemm":
            shapes = []
            for label, k, m in [("proj_1536x1536", 1536, 1536), ("ffn_up_1536x8960", 1536, 8960),
                                ("ffn_down_8960x1536", 8960, 1536)]:
                a, b = randn(n, k), randn(k, m)
                ms = median_ms(lambda: a @ b, warm, rep)
                shapes.append({"shape": label, "m": n, "k": k, "n": m, "ms": ms,
                               "tflops": 2 * n * k * m / ms / 1e9})
            return {"item": name, "dtype": "bf16", "shapes": shapes}
        if name == "attention":
            heads, d = 12, 128
            q, k, v = randn(1, heads, n, d), randn(1, heads, n, d), randn(1, heads, n, d)
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v), warm, rep)
            return {"item": name, "shape": [1, heads, n, d], "dtype": "bf16", "ms": ms,
                    "tflops": 4 * n * n * d * heads / ms / 1e9}
        if name in ("dit-1.3b", "dit-14b"):
            try:
                from diffusers import WanTransformer3DModel
            except ImportError as e:
                return {"item": name, "skipped": f"diffusers: {e}"}
            heads, ffn, layers = dit_config(name)
            torch.manual_seed(0)
            torch.set_default_dtype(torch.bfloat16)
            with torch.device(DEV):
                m = WanTransformer3DModel(num_attention_heads=heads, attention_head_dim=128, in_channels=16,
                                          out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=ffn,
                                          num_layers=layers).eval()
            torch.set_default_dtype(torch.float32)
            x, t, c = randn(1, 16, f, h, w), torch.tensor([500.0], device=DEV), randn(1, 512, 4096)
            ms = median_ms(lambda: m(x, t, c, return_dict=False), warm, rep)
            out = {"item": name, "tokens": n, "precision": "bf16", "ms": ms,
                   "tflops": dit_flops(heads, ffn, layers, n) / ms / 1e9,
                   "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
            del m
            torch.cuda.empty_cache()
            return out
        if name == "dit-1.3b-block":
            try:
                from diffusers import WanTransformer3DModel
            except ImportError as e:
                return {"item": name, "skipped": f"diffusers: {e}"}
            heads, ffn, _ = dit_config("dit-1.3b")
            d = heads * 128
            torch.manual_seed(0)
            torch.set_default_dtype(torch.bfloat16)
            with torch.device(DEV):
                m = WanTransformer3DModel(num_attention_heads=heads, attention_head_dim=128, in_channels=16,
                                          out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=ffn,
                                          num_layers=1).eval()
            torch.set_default_dtype(torch.float32)
            x = randn(1, 16, f, h, w)
            tokens, context = randn(1, n, d), randn(1, 512, d)
            temb = torch.randn(1, 6, d, device=DEV, dtype=torch.float32)
            rope = m.rope(x)
            block = m.blocks[0]
            ms = median_ms(lambda: block(tokens, context, temb, rope), warm, rep)
            return {"item": name, "tokens": n, "precision": "bf16", "ms": ms, "forward_estimate_ms": ms * 30}
        if name in ("vae-decode", "vae-decode-f32"):
            try:
                from diffusers import AutoencoderKLWan
            except ImportError as e:
                return {"item": name, "skipped": f"diffusers: {e}"}
            dtype = torch.float32 if name.endswith("-f32") else torch.bfloat16
            torch.manual_seed(0)
            with torch.device(DEV):
                vae = AutoencoderKLWan().to(dtype).eval()
            z = randn(1, 16, f, h, w, dtype=dtype)
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                ms = median_ms(lambda: vae.decode(z, return_dict=False), min(warm, 1), min(rep, 3))
            return {"item": name, "latent": [1, 16, f, h, w],
                    "precision": "f32" if dtype == torch.float32 else "bf16", "ms": ms,
                    "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                    "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
        if name in ("t5", "t5-f32"):
            try:
                from transformers import UMT5Config, UMT5EncoderModel
            except ImportError as e:
                return {"item": name, "skipped": f"transformers: {e}"}
            dtype = torch.float32 if name.endswith("-f32") else torch.bfloat16
            cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                             num_heads=64, relative_attention_num_buckets=32,
                             feed_forward_proj="gated-gelu")
            with torch.device(DEV):
                enc = UMT5EncoderModel(cfg).to(dtype).eval()
            ids = (torch.arange(512, device=DEV) * 7919 % 32000).unsqueeze(0)
            mask = torch.ones_like(ids)
            with torch.no_grad():
                ms = median_ms(lambda: enc(input_ids=ids, attention_mask=mask), warm, rep)
            return {"item": name, "tokens": 512,
                    "precision": "f32" if dtype == torch.float32 else "bf16", "ms": ms}
        if name in ("vae-bf16-error", "t5-bf16-error"):
            return {"item": name, "skipped": "a property of the Rust side (bf16 vs f32)"}
        if name == "bf16-error":
            return {"item": name, "skipped": "a property of the Rust side (bf16 policy vs f32)"}
        if name == "tmd-step":
            return {"item": name, "skipped": "no PyTorch TMD student exists (the reference is the teacher)"}
    raise SystemExit(f"unknown item {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("items")
    p.add_argument("--latent", default="21,60,104")
    p.add_argument("--warm", type=int, default=2)
    p.add_argument("--rep", type=int, default=5)
    a = p.parse_args()
    latent = [int(x) for x in a.latent.split(",")]
    torch.backends.cuda.matmul.allow_tf32 = True
    for name in a.items.split(","):
        rec = item(name, latent, a.warm, a.rep)
        rec["gpu"] = torch.cuda.get_device_name(0)
        rec["torch"] = torch.__version__
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    sys.exit(main())
