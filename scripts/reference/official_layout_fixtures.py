"""Rewrites the tiny diffusers/transformers fixtures in the *official Wan2.1 release layout*.

The official release ships `diffusion_pytorch_model.safetensors` + `config.json` (original key
names and config fields), `Wan2.1_VAE.pth` and `models_t5_umt5-xxl-enc-bf16.pth` (PyTorch pickles,
the encoder in bf16) and `google/umt5-xxl/tokenizer.json`. This script renames the keys of the tiny
fixtures made by dit_fixtures.py, vae_fixtures.py and t5_fixtures.py back to the original names
(facts from the Wan2.1 code and diffusers' convert_wan_to_diffusers.py, recorded in
shared/reference/WAN21.md and keys/vae_map.txt) so that `convert-weights` can be tested on the
official layout, including the pickle reader and the bf16 cast, and its output compared with the
reference outputs of the diffusers fixtures.

Rerun (after the three scripts above):
    python3 scripts/reference/official_layout_fixtures.py
Writes tests/fixtures/official/.
"""
import json
import os
import re
import shutil

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "official")


def dit_to_original(key):
    rules = [
        (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
        (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
        (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
        (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
        (r"^condition_embedder\.time_proj\.", "time_projection.1."),
        (r"^blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
        (r"^blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.self_attn.o."),
        (r"^blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.o."),
        (r"^blocks\.(\d+)\.attn1\.to_([qkv])\.", r"blocks.\1.self_attn.\2."),
        (r"^blocks\.(\d+)\.attn2\.to_([qkv])\.", r"blocks.\1.cross_attn.\2."),
        (r"^blocks\.(\d+)\.attn1\.norm_([qk])\.", r"blocks.\1.self_attn.norm_\2."),
        (r"^blocks\.(\d+)\.attn2\.norm_([qk])\.", r"blocks.\1.cross_attn.norm_\2."),
        (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),
        (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
        (r"^blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
        (r"^scale_shift_table$", "head.modulation"),
        (r"^proj_out\.", "head.head."),
    ]
    for pat, rep in rules:
        new = re.sub(pat, rep, key)
        if new != key:
            return new
    return key


def t5_to_original(key):
    rules = [
        (r"^(shared|encoder\.embed_tokens)\.weight$", "token_embedding.weight"),
        (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.", r"blocks.\1.pos_embedding.embedding."),
        (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.", r"blocks.\1.attn.\2."),
        (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"blocks.\1.norm1."),
        (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", r"blocks.\1.ffn.gate.0."),
        (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", r"blocks.\1.ffn.fc1."),
        (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", r"blocks.\1.ffn.fc2."),
        (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"blocks.\1.norm2."),
        (r"^encoder\.final_layer_norm\.", "norm."),
    ]
    for pat, rep in rules:
        new = re.sub(pat, rep, key)
        if new != key:
            return new
    raise KeyError(key)


def vae_to_original(key, cfg):
    """Diffusers AutoencoderKLWan key -> original WanVAE key, for the fixture's config."""
    res = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
           "conv_shortcut": "shortcut"}
    key = re.sub(r"^quant_conv\.", "conv1.", key)
    key = re.sub(r"^post_quant_conv\.", "conv2.", key)
    for side in ("encoder", "decoder"):
        key = re.sub(rf"^{side}\.conv_in\.", f"{side}.conv1.", key)
        key = re.sub(rf"^{side}\.norm_out\.", f"{side}.head.0.", key)
        key = re.sub(rf"^{side}\.conv_out\.", f"{side}.head.2.", key)
        m = re.match(rf"^{side}\.mid_block\.(resnets|attentions)\.(\d+)\.(.*)$", key)
        if m:
            kind, i, rest = m.group(1), int(m.group(2)), m.group(3)
            idx = 2 * i if kind == "resnets" else 1
            if kind == "resnets":
                part, tail = rest.split(".", 1)
                rest = f"{res[part]}.{tail}"
            return f"{side}.middle.{idx}.{rest}"
    m = re.match(r"^encoder\.down_blocks\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)\.(.*)$", key)
    if m:
        return f"encoder.downsamples.{m.group(1)}.{res[m.group(2)]}.{m.group(3)}"
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.", r"encoder.downsamples.\1.", key)
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*)$", key)
    if m:
        stage, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        per_stage = cfg["num_res_blocks"] + 1
        stages = len(cfg["dim_mult"])
        base = sum(per_stage + (1 if s < stages - 1 else 0) for s in range(stage))
        if kind == "resnets":
            part, tail = rest.split(".", 1)
            return f"decoder.upsamples.{base + j}.{res[part]}.{tail}"
        return f"decoder.upsamples.{base + per_stage}.{rest}"
    return key


def main():
    os.makedirs(os.path.join(OUT, "google", "umt5-xxl"), exist_ok=True)

    dit_dir = os.path.join(ROOT, "dit", "transformer")
    dcfg = json.load(open(os.path.join(dit_dir, "config.json")))
    sd = load_file(os.path.join(dit_dir, "diffusion_pytorch_model.safetensors"))
    save_file({dit_to_original(k): v.contiguous() for k, v in sd.items()},
              os.path.join(OUT, "diffusion_pytorch_model.safetensors"))
    heads, hd = dcfg["num_attention_heads"], dcfg["attention_head_dim"]
    json.dump({
        "_class_name": "WanModel", "model_type": "t2v", "dim": heads * hd, "num_heads": heads,
        "ffn_dim": dcfg["ffn_dim"], "freq_dim": dcfg["freq_dim"], "in_dim": dcfg["in_channels"],
        "out_dim": dcfg["out_channels"], "num_layers": dcfg["num_layers"], "eps": dcfg["eps"],
        "text_len": dcfg.get("text_len", 512), "text_dim": dcfg["text_dim"], "patch_size": list(dcfg["patch_size"]), "window_size": [-1, -1],
        "qk_norm": True, "cross_attn_norm": True,
    }, open(os.path.join(OUT, "config.json"), "w"), indent=2)

    vae_dir = os.path.join(ROOT, "vae", "vae")
    vcfg = json.load(open(os.path.join(vae_dir, "config.json")))
    vsd = load_file(os.path.join(vae_dir, "diffusion_pytorch_model.safetensors"))
    torch.save({vae_to_original(k, vcfg): v for k, v in vsd.items()}, os.path.join(OUT, "Wan2.1_VAE.pth"))

    t5_dir = os.path.join(ROOT, "t5", "text_encoder")
    tsd = load_file(os.path.join(t5_dir, "model.safetensors"))
    out = {}
    for k, v in tsd.items():
        out[t5_to_original(k)] = v.to(torch.bfloat16)
    torch.save(out, os.path.join(OUT, "models_t5_umt5-xxl-enc-bf16.pth"))

    shutil.copy(os.path.join(ROOT, "t5", "tokenizer", "tokenizer.json"),
                os.path.join(OUT, "google", "umt5-xxl", "tokenizer.json"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
