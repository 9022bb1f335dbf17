"""Parity fixtures for the Wan2.1 causal 3D VAE (`crates/tmd-model/src/vae/`).

Rerun from the workspace root:

    python3 scripts/reference/vae_fixtures.py

What it writes (all f32, fixed seed 0):

* `tests/fixtures/vae/vae/{config.json,diffusion_pytorch_model.safetensors}`: a tiny random
  diffusers `AutoencoderKLWan` (base_dim 6, z_dim 4, dim_mult [1,2,2,2], 2 res blocks,
  temperal_downsample [False,True,True]: the Wan2.1 layout, narrower), saved with `save_pretrained`.
  Every parameter is randomised (RMS-norm gammas too), so nothing sits at its default.
* `tests/fixtures/vae/io.safetensors`:
    - `video`       [1,3,9,16,24] input in [-1,1] (9 frames -> chunks 1,4,4 -> 3 latent frames)
    - `latent_mean` [1,4,3,2,3]   `vae.encode(video).latent_dist.mean`
    - `z`           [2,4,4,2,3]   a random latent (4 latent frames, batch 2)
    - `decoded`     [2,3,13,16,24] `vae.decode(z).sample` (clamped to [-1,1])
* `tests/fixtures/vae/{vae_map.txt,vae_orig_keys.txt,vae_diff_keys.txt}`: copies of the key lists of
  the real Wan2.1 VAE, facts used by the key-map unit test. They are copied from the directory
  named by `WAN_KEYS` when it is set (the project's reference notes, `shared/reference/keys/`);
  otherwise the copies already in `tests/fixtures/vae/` are kept.
"""

import json
import math
import os
import shutil

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "vae")
KEYS = os.environ.get("WAN_KEYS")


def main() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=6,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075],
        latents_std=[2.8184, 1.4541, 2.3275, 2.6558],
    ).eval()

    # Randomise every parameter: weights ~ N(0, 1/fan_in) so activations keep unit scale,
    # biases and gammas visibly away from their defaults.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
        # Keep the decoded video mostly inside the clamp range so the comparison is informative.
        vae.decoder.conv_out.weight.mul_(0.6)

    os.makedirs(OUT, exist_ok=True)
    vae.save_pretrained(os.path.join(OUT, "vae"), safe_serialization=True)

    video = (torch.rand(1, 3, 9, 16, 24) * 2.0 - 1.0).float()
    z = torch.randn(2, 4, 4, 2, 3).float()
    with torch.no_grad():
        latent_mean = vae.encode(video).latent_dist.mean.contiguous()
        decoded = vae.decode(z).sample.contiguous()

    save_file(
        {"video": video, "latent_mean": latent_mean, "z": z, "decoded": decoded},
        os.path.join(OUT, "io.safetensors"),
    )
    for f in ["vae_map.txt", "vae_orig_keys.txt", "vae_diff_keys.txt"]:
        if KEYS:
            shutil.copyfile(os.path.join(KEYS, f), os.path.join(OUT, f))
        elif not os.path.exists(os.path.join(OUT, f)):
            raise SystemExit(f"{os.path.join(OUT, f)} is missing: set WAN_KEYS=<dir with {f}>")

    clamped = (decoded.abs() >= 1.0).float().mean().item()
    print(f"decoded max|.| {decoded.abs().max():.4f} mean|.| {decoded.abs().mean():.4f}")
    print(f"latent_mean {tuple(latent_mean.shape)} max|.| {latent_mean.abs().max():.4f}")
    print(f"decoded {tuple(decoded.shape)} fraction at the clamp {clamped:.3f}")
    print(json.dumps({k: v for k, v in vae.config.items() if not k.startswith("_")}))


if __name__ == "__main__":
    main()
