"""Writes a Wan2.1-shaped diffusers checkpoint with random weights, for measuring conversion memory
and speed without downloading the real weights.

    python3 scripts/reference/random_wan_checkpoint.py --preset 1.3b --out /tmp/wan-1.3b-random

Writes OUT/transformer (the DiT at full size, f32 safetensors shards as diffusers saves them),
OUT/vae (the full-size Wan2.1 VAE), and, because umT5-XXL (5.7B parameters, 22.7 GB in f32) does not
fit this machine next to the rest, the tiny text encoder and tokenizer of tests/fixtures/t5.
"""
import argparse
import os
import shutil

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

PRESETS = {
    "1.3b": dict(num_attention_heads=12, ffn_dim=8960, num_layers=30),
    "14b": dict(num_attention_heads=40, ffn_dim=13824, num_layers=40),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=PRESETS, default="1.3b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=None, help="override the number of blocks")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = dict(PRESETS[args.preset])
    if args.layers:
        cfg["num_layers"] = args.layers
    dit = WanTransformer3DModel(attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096,
                                freq_dim=256, **cfg)
    dit.save_pretrained(os.path.join(args.out, "transformer"), max_shard_size="2GB")
    del dit
    AutoencoderKLWan().save_pretrained(os.path.join(args.out, "vae"))
    fixtures = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "t5")
    shutil.copytree(os.path.join(fixtures, "text_encoder"), os.path.join(args.out, "text_encoder"), dirs_exist_ok=True)
    shutil.copytree(os.path.join(fixtures, "tokenizer"), os.path.join(args.out, "tokenizer"), dirs_exist_ok=True)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
