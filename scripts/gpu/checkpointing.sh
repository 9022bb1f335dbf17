#!/usr/bin/env bash
# Issue 20 on one GPU: activation checkpointing (`train.checkpoint_activations`) for a
# Wan2.1-1.3B-shaped student (random weights, H = 5, N = 2 inner steps, batch 1), through LibTorch.
#
# Build on the CPU machine: `bash scripts/gpu/build.sh --pack` (LibTorch xtask into gpu-bin/).
#
# Run in ONE device call (kind nvidia-h100-x1, carrying gpu-bin):
#
#   bash scripts/gpu/checkpointing.sh
#
# then copy $OUT/checkpointing.jsonl to benches/results/<date>-h100-checkpointing.jsonl.
#
# Runs, each its own process under `timeout`, the whole call kept under the device tool's 600 s
# (BUDGET_SECS, default 570: a run gets what is left, at most its own limit; one that cannot
# start with 30 s left is skipped and recorded as such):
#   1,560 tokens (latent 1x60x104), without and with checkpointing (SHORT_SECS each, default 75):
#     stage 1 (3 steps) and the stage-2 cycle (6 iterations: 4 critic + 1 student + 1 critic)
#   32,760 tokens (latent 21x60x104: 480x832, 81 frames), with checkpointing (LONG_SECS, 300):
#     the stage-2 pair (--student-every 2 --steps 2: one critic, then one student iteration, so
#     the student's runs with all three AdamW states allocated: the process peak is the cycle's
#     peak), then stage 1 (2 steps)
# At Wan scale one iteration takes tens of seconds to minutes (estimated from the 3,120-token
# 2.1 s critic iteration with quadratic attention), so only the first iteration of each kind
# runs there: its time includes the warm-up (`warmup_included: true` in the record). The paper's
# cycle time is 4 x critic + 1 x student. FULL_STAGE2_STEPS / FULL_STUDENT_EVERY run more.
# SKIP_SHORT=1, SKIP_FULL_STAGE2=1 and SKIP_FULL_STAGE1=1 leave out the 1,560-token set and either
# 32,760-token run.
#
# `nvidia-smi` samples the card every 200 ms beside each process; the peak (whole card: CUDA
# context and PyTorch's caching allocator included; expandable segments on) goes into each phase
# record as `peak_gib`, with `activations_estimate_gib = peak - weights - gradients - optimizer
# state` (an estimate: it also holds the context, the allocator's slack and the data), the three
# parts computed by bench-distill from the parameter counts. Every record goes to
# $OUT/checkpointing.jsonl, a failed or timed-out run as `{"failed": true, "rc": ...}` with its peak
# (rc 124: timed out) and the iterations it finished (`finished_iterations`, from bench-distill's
# per-iteration stderr lines).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
[ -x /tmp/xtask-tch ] || { xz -dc gpu-bin/xtask-tch.xz > /tmp/xtask-tch && chmod +x /tmp/xtask-tch; }
source scripts/gpu/link_torch.sh   # the binary's run path (scripts/gpu/build.sh), no LD_LIBRARY_PATH
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "$gpu_name" >&2
t_start=$(date +%s)

# run NAME SECS ARGS...: one bench-distill process with memory sampling; records -> checkpointing.jsonl.
run() {
  local name=$1 secs=$2; shift 2
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/mem-$name.csv" &
  local smi=$!
  local t0=$(date +%s)
  timeout "$secs" $NOENV /tmp/xtask-tch bench-distill --device torch-cuda --model 1.3b --head-blocks 5 \
    --batch 1 --run-dir "/tmp/bench-$name" "$@" > "/tmp/run-$name.json" 2> "/tmp/run-$name.log"
  local rc=$?
  kill $smi; wait $smi 2>/dev/null
  echo "== $name (rc $rc, $(( $(date +%s) - t0 )) s): $*"
  { echo "== $name (rc $rc): $*"; tail -5 "/tmp/run-$name.log" | cut -c1-400; } >&2
  GPU_NAME=$gpu_name python3 - "$out" "$name" "$rc" "$*" <<'PY'
import json, os, sys
out, name, rc, args = sys.argv[1:]
peak_mib = 0
for line in open(f"/tmp/mem-{name}.csv"):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].isdigit() and parts[0] == "0":
        peak_mib = max(peak_mib, int(parts[1]))
peak_gib = round(peak_mib / 1024, 3)
records = []
try:
    for line in open(f"/tmp/run-{name}.json"):
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
except Exception:
    pass
if not any(r.get("item") == "distill-phase" for r in records):
    argv = args.split()
    val = lambda flag, default: argv[argv.index(flag) + 1] if flag in argv else default
    f, h, w = (int(x) for x in val("--latent", "1,60,104").split(","))
    records.append({"item": "distill-phase", "stage": val("--phase", "stage2"),
                    "tokens": f * (h // 2) * (w // 2),
                    "checkpoint_activations": "--checkpoint-activations" in argv,
                    "failed": True, "ms_per_iteration": None})
    # A run stopped by its time limit: the iterations it finished (bench-distill's stderr lines).
    import re
    try:
        done = [(int(i), float(ms)) for i, ms in
                re.findall(r"iteration (\d+) took ([0-9.]+) ms", open(f"/tmp/run-{name}.log").read())]
    except OSError:
        done = []
    records[-1]["finished_iterations"] = [{"iteration": i, "ms": ms} for i, ms in done]
for r in records:
    r.update(name=name, args=args, rc=int(rc), gpu=os.environ.get("GPU_NAME"))
    if r.get("item") == "distill-phase":
        r["peak_gib"] = peak_gib
        r["peak_source"] = "nvidia-smi memory.used of GPU 0, sampled every 200 ms over the whole process"
        m = r.get("memory_gib")
        if m:
            m["activations_estimate_gib"] = round(
                peak_gib - m["weights"] - m["gradients"] - m["optimizer_state"], 3)
            m["activations_note"] = "estimate: peak minus the computed parts (includes CUDA context, allocator slack, data)"
with open(f"{out}/checkpointing.jsonl", "a") as fh:
    for r in records:
        fh.write(json.dumps(r) + "\n")
for r in records:
    if r.get("item") == "distill-phase":
        print(json.dumps({k: r.get(k) for k in ("stage", "tokens", "checkpoint_activations", "peak_gib", "ms_per_iteration", "failed")}))
PY
}

budget=${BUDGET_SECS:-570}
# limit SECS: what a run may take, at most SECS and what is left of the budget (0: skip).
limit() {
  local left=$(( budget - ($(date +%s) - t_start) ))
  if [ "$left" -lt 30 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# go NAME SECS ARGS...: `run` within the budget, or a skipped record.
go() {
  local name=$1 s; s=$(limit "$2"); shift 2
  if [ "$s" = 0 ]; then
    echo "== $name skipped (budget spent)"
    echo "{\"item\": \"skipped\", \"name\": \"$name\", \"args\": \"$*\"}" >> "$out/checkpointing.jsonl"
    return
  fi
  run "$name" "$s" "$@"
}
short=${SHORT_LATENT:-1,60,104}
full=${FULL_LATENT:-21,60,104}
ss=${SHORT_SECS:-75}
long_secs=${LONG_SECS:-300}
# PRECISIONS: the training precision policies to run (`--precision`: f32, bf16 = bf16 products and
# attention with f32 weights and optimizer state), each the whole set below, in order.
for prec in ${PRECISIONS:-f32}; do
  p=(--precision "$prec")
  if [ "${SKIP_SHORT:-0}" != 1 ]; then
    go "s1-short-plain-$prec" "$ss" --phase stage1 --latent "$short" --steps 3 "${p[@]}"
    go "s1-short-ckpt-$prec" "$ss" --phase stage1 --latent "$short" --steps 3 --checkpoint-activations "${p[@]}"
    go "s2-short-plain-$prec" "$ss" --phase stage2 --latent "$short" --steps 6 "${p[@]}"
    go "s2-short-ckpt-$prec" "$ss" --phase stage2 --latent "$short" --steps 6 --checkpoint-activations "${p[@]}"
  fi
  [ "${SKIP_FULL_STAGE2:-0}" = 1 ] || go "s2-full-ckpt-$prec" "$long_secs" --phase stage2 --latent "$full" --steps "${FULL_STAGE2_STEPS:-2}" \
    --student-every "${FULL_STUDENT_EVERY:-2}" --checkpoint-activations "${p[@]}"
  [ "${SKIP_FULL_STAGE1:-0}" = 1 ] || go "s1-full-ckpt-$prec" "$long_secs" --phase stage1 --latent "$full" \
    --steps "${FULL_STAGE1_STEPS:-2}" --checkpoint-activations "${p[@]}"
done
echo "total $(( $(date +%s) - t_start )) s; records in $out/checkpointing.jsonl"
