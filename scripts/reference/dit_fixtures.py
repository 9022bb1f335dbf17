"""Parity fixtures for the Wan2.1 DiT (diffusers `WanTransformer3DModel`).

Rerun from the workspace root:

    python3 scripts/reference/dit_fixtures.py

Writes (all small, fixed seed):
  tests/fixtures/dit/transformer/config.json                         diffusers config (+ our `text_len`: 16)
  tests/fixtures/dit/transformer/diffusion_pytorch_model.safetensors random tiny weights (save_pretrained)
  tests/fixtures/dit/io.safetensors   inputs and reference outputs, f32:
      x        [2, 4, 3, 6, 4]   latent (batch 2, 4 channels, 3 frames, 6 x 4 pixels -> grid 3 x 3 x 2)
      timestep [2]               999.0 and 421.5
      context  [2, 16, 32]       text features, rows 8.. are zero (padded text); the Rust test feeds rows ..8
      temb     [2, 48]           time embedding e (condition_embedder output 0)
      e0       [2, 6, 48]        projected modulation (timestep_proj, unflattened)
      ctx_emb  [2, 16, 48]       embedded text
      tokens   [2, 18, 48]       patch tokens before block 0
      block0   [2, 18, 48]       tokens after block 0
      block1   [2, 18, 48]       tokens after block 1
      out      [2, 5, 3, 6, 4]   model output (`.sample`)

Model: 2 layers, 2 heads x 24 (RoPE split 8/8/8), ffn 64, text_dim 32, freq_dim 256,
in 4 / out 5 channels, patch (1, 2, 2). Every parameter (norm weights and biases, modulation
tables included) is redrawn from a seeded normal so nothing is trivially 0 or 1.
"""

import json
import os

import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "dit")
TEXT_LEN = 16
REAL_TEXT = 8


def main():
    torch.manual_seed(20261126)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=24,
        in_channels=4,
        out_channels=5,
        text_dim=32,
        freq_dim=256,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    ).eval()

    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or ".norm2." in name:
                # norm scales around 1, biases around 0 but clearly non-trivial
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.3 * noise)
            elif "scale_shift_table" in name:
                p.copy_(0.5 * noise)
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(noise / fan_in**0.5)
            else:
                p.copy_(0.2 * noise)

    dit_dir = os.path.join(OUT, "transformer")
    os.makedirs(dit_dir, exist_ok=True)
    model.save_pretrained(dit_dir, safe_serialization=True)
    # diffusers has no text length (its pipeline pads prompts to 512); record ours.
    cfg_path = os.path.join(dit_dir, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["text_len"] = TEXT_LEN
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")

    x = torch.randn(2, 4, 3, 6, 4, generator=gen)
    timestep = torch.tensor([999.0, 421.5])
    context = torch.randn(2, TEXT_LEN, 32, generator=gen)
    context[:, REAL_TEXT:] = 0.0

    captured = {}

    def keep(name):
        def hook(_module, _inputs, output):
            captured[name] = output
        return hook

    def keep_input(name):
        def hook(_module, args, kwargs):
            captured[name] = args[0] if args else kwargs["hidden_states"]
        return hook

    handles = [
        model.condition_embedder.register_forward_hook(keep("cond")),
        model.blocks[0].register_forward_pre_hook(keep_input("tokens"), with_kwargs=True),
        model.blocks[0].register_forward_hook(keep("block0")),
        model.blocks[1].register_forward_hook(keep("block1")),
    ]
    with torch.no_grad():
        out = model(hidden_states=x, timestep=timestep, encoder_hidden_states=context).sample
    for h in handles:
        h.remove()

    temb, timestep_proj, ctx_emb, _ = captured["cond"]
    tensors = {
        "x": x,
        "timestep": timestep,
        "context": context,
        "temb": temb,
        "e0": timestep_proj.unflatten(1, (6, -1)),
        "ctx_emb": ctx_emb,
        "tokens": captured["tokens"],
        "block0": captured["block0"],
        "block1": captured["block1"],
        "out": out,
    }
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, "io.safetensors"))
    for k, v in tensors.items():
        print(f"{k:10s} {tuple(v.shape)} max|.|={v.abs().max().item():.4f}")


if __name__ == "__main__":
    main()
