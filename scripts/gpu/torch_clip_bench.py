"""The PyTorch side of `scripts/gpu/clip_bench.sh`: one whole clip of diffusers' `WanPipeline`
with random Wan2.1-T2V-1.3B-shaped weights in bf16, 2 steps and no CFG (guidance 1), the same
pieces `tmd-cli generate` runs for a 2-step student: umT5 on 512 tokens, two DiT passes, the VAE
decode, the frames brought to the host.

The prompt is tokenised outside the timed region (a fixed 512-token id sequence, as
torch_bench.py's `t5` item: the Rust side's tokenizer is not the real umT5 one either, and
tokenising is microseconds); the text encoder runs inside it. Prints one JSON line per run
kind: the first clip after building the pipeline (`cold`) and the median of `--rep` clips after
it (`warm`), in seconds, with the split into text encoder and the rest, plus the peak memory.

    python3 torch_clip_bench.py [--frames 81 --height 480 --width 832] [--steps 2] [--rep 3]
"""
import argparse
import json
import time

import torch

DEV = "cuda"


def build(steps_shift):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                     num_heads=64, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu")
    with torch.device(DEV):
        enc = UMT5EncoderModel(cfg).to(torch.bfloat16).eval()
        dit = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
            rope_max_seq_len=1024).to(torch.bfloat16).eval()
        vae = AutoencoderKLWan().to(torch.bfloat16).eval()
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                    num_train_timesteps=1000, flow_shift=steps_shift)
    pipe = WanPipeline(tokenizer=None, text_encoder=enc, transformer=dit, vae=vae, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rep", type=int, default=3)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.perf_counter()
    pipe = build(5.0)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    ids = (torch.arange(512, device=DEV) * 7919 % 32000).unsqueeze(0)
    mask = torch.ones_like(ids)

    def clip():
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            embeds = pipe.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.cuda.synchronize()
        text_s = time.perf_counter() - t
        out = pipe(prompt_embeds=embeds, num_inference_steps=a.steps, guidance_scale=1.0,
                   height=a.height, width=a.width, num_frames=a.frames, output_type="np")
        frames = out.frames[0]
        torch.cuda.synchronize()
        return time.perf_counter() - t, text_s, frames.shape

    cold, cold_text, shape = clip()
    warm = sorted(clip() for _ in range(a.rep))
    med = warm[len(warm) // 2]
    base = {"item": "clip", "decoder": "full", "outer_steps": a.steps, "guidance": 1.0,
            "frames": a.frames, "height": a.height, "width": a.width, "shape": list(shape),
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "pipeline_build_s": build_s,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(json.dumps({**base, "run": "cold", "torch_s": cold, "text_encoder_s": cold_text}), flush=True)
    print(json.dumps({**base, "run": "warm", "torch_s": med[0], "text_encoder_s": med[1],
                      "all_s": [w[0] for w in warm]}), flush=True)


if __name__ == "__main__":
    main()
