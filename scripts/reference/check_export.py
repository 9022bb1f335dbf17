"""Checks `cargo xtask export` output with diffusers itself (docs/export.md).

Needs diffusers 0.42.1, torch (the CPU build is enough) and safetensors; the LoRA check also needs
peft. From the workspace root, with such a Python (e.g. a venv where
`pip install diffusers==0.42.1 torch safetensors peft` was run):

    # A teacher (or a DMD2-v student) as a diffusers folder, plus one forward pass of our DiT:
    cargo xtask export --model assets/world --format diffusers --teacher \
        --out /tmp/export/teacher --io /tmp/export/io.safetensors
    python scripts/reference/check_export.py --transformer /tmp/export/teacher \
        --io /tmp/export/io.safetensors

    # A LoRA of a student against its teacher; the student exported as a diffusers folder (DMD2-v)
    # or with --format safetensors (TMD: its DiT part is compared):
    cargo xtask export --model assets/world --format safetensors --out /tmp/export/student
    cargo xtask export --model assets/world --format lora --rank 8 --out /tmp/export/lora.safetensors
    python scripts/reference/check_export.py --transformer /tmp/export/teacher \
        --lora /tmp/export/lora.safetensors --student /tmp/export/student

What it checks:
  --io       `WanTransformer3DModel.from_pretrained(--transformer)` loads the folder with no
             missing, unexpected or mis-shaped key (its loading info), and its forward on the inputs in the io
             file (x, timestep, context) matches our DiT's output `out` there: prints the relative
             error max|diff| / max|out| and fails above --tol (default 1e-4; use ~3e-2 for a bf16
             or f16 export).
  --lora     `WanPipeline.lora_state_dict` reads the LoRA file (diffusers' Wan LoRA entry point),
             `load_lora_adapter(..., prefix="transformer")` attaches it to the teacher with no
             unmatched key, `fuse_lora()` merges it; for every module of the report beside the file
             (`<lora>.report.json`) the fused weight's error against the student,
             ||W_fused - W_student|| / ||W_student - W_teacher||, must equal the report's
             `rel_error` within --tol, and the modules the LoRA leaves alone keep the teacher's
             weights.
Exits 1 on any failure, 0 when every check passes.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file


def check_forward(model, io_path, tol):
    io = load_file(io_path)
    with torch.no_grad():
        out = model(
            hidden_states=io["x"],
            timestep=io["timestep"],
            encoder_hidden_states=io["context"],
            return_dict=False,
        )[0]
    ref = io["out"]
    if out.shape != ref.shape:
        print(f"FAIL forward: diffusers gives shape {tuple(out.shape)}, ours {tuple(ref.shape)}")
        return False
    err = ((out - ref).abs().max() / ref.abs().max()).item()
    ok = err <= tol
    print(f"{'ok' if ok else 'FAIL'} forward: diffusers vs ours, rel err {err:.3e} (tol {tol:.0e})")
    return ok


def student_state_dict(student_dir):
    """The DiT weights of a student exported as a diffusers folder or with --format safetensors."""
    from diffusers import WanTransformer3DModel

    with open(os.path.join(student_dir, "config.json")) as f:
        config = json.load(f)
    if config.get("format") == "tmd-student":
        weights = load_file(os.path.join(student_dir, config["weights"]))
        return {k: v.float() for k, v in weights.items() if not k.startswith("flow_head.")}
    return WanTransformer3DModel.from_pretrained(student_dir, torch_dtype=torch.float32).state_dict()


def check_lora(teacher_dir, lora_path, student_dir, tol):
    from diffusers import WanPipeline, WanTransformer3DModel

    report_path = os.path.splitext(lora_path)[0] + ".report.json"
    with open(report_path) as f:
        report = json.load(f)
    state_dict = WanPipeline.lora_state_dict(lora_path)
    model = WanTransformer3DModel.from_pretrained(teacher_dir, torch_dtype=torch.float32)
    teacher = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_lora_adapter(state_dict, prefix="transformer")
    model.fuse_lora()
    fused = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    student = student_state_dict(student_dir)
    ok, worst = True, 0.0
    kept = set()
    for layer in report["layers"]:
        key = layer["name"] + ".weight"
        kept.add(key)
        delta = (student[key] - teacher[key]).norm().item()
        err = (fused[key] - student[key]).norm().item() / delta if delta > 0 else 0.0
        gap = abs(err - layer["rel_error"])
        worst = max(worst, gap)
        if gap > tol:
            ok = False
            print(f"FAIL {layer['name']}: fused error {err:.3e}, report {layer['rel_error']:.3e}")
    untouched = [k for k in teacher if k not in kept and not torch.equal(fused[k], teacher[k])]
    if untouched:
        ok = False
        print(f"FAIL the LoRA changed {len(untouched)} weights outside its modules: {untouched[:5]}")
    print(
        f"{'ok' if ok else 'FAIL'} lora: {len(report['layers'])} modules, rank {report['rank']}, "
        f"fused-vs-student error equals the report's within {worst:.1e} (tol {tol:.0e})"
    )
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transformer", required=True, help="exported diffusers folder (config.json + weights)")
    ap.add_argument("--io", help="forward pass written by `xtask export --io`")
    ap.add_argument("--lora", help="LoRA written by `xtask export --format lora` (report beside it)")
    ap.add_argument("--student", help="the student exported as a diffusers folder or with --format safetensors (for --lora)")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if not args.io and not args.lora:
        ap.error("give --io and/or --lora")
    if args.lora and not args.student:
        ap.error("--lora needs --student")

    import diffusers
    from diffusers import WanTransformer3DModel

    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}")
    ok = True
    if args.io:
        model, info = WanTransformer3DModel.from_pretrained(
            args.transformer, torch_dtype=torch.float32, output_loading_info=True
        )
        model.eval()
        bad = {k: v for k, v in info.items() if v}
        print(f"{'FAIL' if bad else 'ok'} load: WanTransformer3DModel.from_pretrained({args.transformer}), "
              f"{sum(p.numel() for p in model.parameters())} parameters{', ' + str(bad) if bad else ''}")
        ok &= not bad
        ok &= check_forward(model, args.io, args.tol)
    if args.lora:
        ok &= check_lora(args.transformer, args.lora, args.student, args.tol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
