#!/usr/bin/env bash
# Issue 6 on the GPU machine: stage-2 (TMD) iterations of a Wan2.1-1.3B-shaped student on 1 and 2
# GPUs at the same global batch, and the memory of a 14B-shaped step at reduced depth, through
# LibTorch (gpu-bin/xtask-tch.xz, built as scripts/gpu/pretrain_world.sh
# describes).
#
#   bash scripts/gpu/scale.sh            # through the device tool, kind nvidia-h100-x2, carrying gpu-bin
#   ONLY_SHARD=1 bash scripts/gpu/scale.sh   # sharded optimizer state vs replicated, 14B shape
#   ONLY_TOKENS=1 bash scripts/gpu/scale.sh  # 1 vs 2 GPUs (sharded) at 1,560 tokens per clip
#
# Each run prints `xtask bench-distill`'s JSON line; `nvidia-smi` samples the memory of every GPU
# every 200 ms beside it, and the peak per GPU is added to the line (`peak_mib`: the memory the
# process holds, PyTorch's caching allocator included). Everything goes to $OUT/scale.jsonl.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$torch_lib
[ -x /tmp/xtask-tch ] || { xz -dc gpu-bin/xtask-tch.xz > /tmp/xtask-tch && chmod +x /tmp/xtask-tch; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee "$out/gpus.csv"
nvidia-smi topo -m | head -4 | tee -a "$out/gpus.csv"
# What one all-reduce moves: a 1.3B model's f32 gradients (5.2 GB) from GPU 1 to GPU 0 and back.
python3 - <<'PY' | tee -a "$out/gpus.csv"
import time, torch
if torch.cuda.device_count() > 1:
    x = torch.empty(1_300_000_000, dtype=torch.float32, device="cuda:1")
    for i in range(3):
        torch.cuda.synchronize(0); torch.cuda.synchronize(1); t0 = time.time()
        y = x.to("cuda:0"); torch.cuda.synchronize(0)
        dt = time.time() - t0
    print(f"peer access 1->0: {torch.cuda.can_device_access_peer(1, 0)}; 5.2 GB copy GPU1->GPU0: {dt*1e3:.0f} ms ({5.2/dt:.0f} GB/s)")
PY

# run NAME ARGS...: one bench-distill run with memory sampling.
run() {
  local name=$1; shift
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/mem-$name.csv" &
  local smi=$!
  local t0=$(date +%s)
  /tmp/xtask-tch bench-distill --device torch-cuda --run-dir "/tmp/bench-$name" "$@" > "/tmp/run-$name.json" 2> "/tmp/run-$name.log"
  local rc=$?
  kill $smi; wait $smi 2>/dev/null
  echo "== $name (rc $rc, $(( $(date +%s) - t0 )) s): $*"
  { echo "== $name: $*"; tail -5 "/tmp/run-$name.log" | cut -c1-400; } | tee -a "$out/logs.txt"
  python3 - "$out" "$name" "$*" <<'PY'
import json, sys, collections
out, name, args = sys.argv[1:]
peak = collections.defaultdict(int)
for line in open(f"/tmp/mem-{name}.csv"):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].isdigit():
        peak[int(parts[0])] = max(peak[int(parts[0])], int(parts[1]))
try:
    lines = [json.loads(l) for l in open(f"/tmp/run-{name}.json").read().strip().splitlines()]
    rec = next(r for r in lines if r.get("item") == "distill-step")
except Exception:
    rec = {"item": "distill-step", "failed": True}
rec.update(name=name, args=args, peak_mib={str(k): v for k, v in sorted(peak.items())})
with open(f"{out}/scale.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
short = {k: rec.get(k) for k in ("world", "critic_ms", "student_ms", "cycle_ms", "clips_per_s", "peak_mib")}
print(json.dumps(short))
print("losses:", [round(l, 6) for _, l in rec.get("losses", [])])
PY
}

export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
steps=${STEPS:-11}
# Issue 5: one GPU, the stage-2 memory and time of the 1.3B shape with the recomputing attention
# backward (tmd_model::attention) against burn's plain autodiff attention (S x S scores kept;
# TMD_ATTENTION_BACKWARD=plain), batch 1, at growing clip lengths.
if [ "${ONLY_ATTENTION:-0}" = 1 ]; then
  for spec in ${ATTENTION_RUNS:-plain:1,30,52 recompute:1,30,52 plain:1,60,104 recompute:1,60,104 recompute:2,60,104}; do
    mode=${spec%%:*}; lat=${spec#*:}
    if [ "$mode" = plain ]; then export TMD_ATTENTION_BACKWARD=plain; else unset TMD_ATTENTION_BACKWARD; fi
    run "13b-$mode-${lat//,/x}" --model 1.3b --latent "$lat" --batch 1 --steps "${ATTENTION_STEPS:-6}" --world 1
  done
  unset TMD_ATTENTION_BACKWARD
  exit 0
fi
# The optimizer state sharded over the ranks (--shard-optimizer, ZeRO stage 1) against replicated,
# on 2 GPUs: the memory per GPU of the 14B shape at two depths (the slope per block is what 40
# blocks multiply) and of the 1.3B shape, and the 1.3B step time at 1,560 tokens per clip on 1 and
# 2 GPUs (scaling where each micro-batch is 4x the work of the 390-token runs).
if [ "${ONLY_SHARD:-0}" = 1 ]; then
  for d in ${SHARD_DEPTHS:-2 3}; do
    run 14b-d$d-w2 --model 14b --blocks "$d" --head-blocks 1 --batch 2 --steps 6 --world 2
    run 14b-d$d-w2-zero --model 14b --blocks "$d" --head-blocks 1 --batch 2 --steps 6 --world 2 --shard-optimizer
  done
  exit 0
fi
if [ "${ONLY_TOKENS:-0}" = 1 ]; then
  lat=${TOKENS_LATENT:-4,30,52}; b=${TOKENS_BATCH:-4}
  run 13b-w1-t${lat//,/x}-b$b --model 1.3b --latent "$lat" --batch "$b" --steps "${TOKENS_STEPS:-6}" --world 1 --micro-batches "$b"
  run 13b-w2-t${lat//,/x}-b$b --model 1.3b --latent "$lat" --batch "$b" --steps "${TOKENS_STEPS:-6}" --world 2 --micro-batches $((b / 2))
  run 13b-w2-t${lat//,/x}-b$b-zero --model 1.3b --latent "$lat" --batch "$b" --steps "${TOKENS_STEPS:-6}" --world 2 --micro-batches $((b / 2)) --shard-optimizer
  exit 0
fi
# 1.3B: one 240x416 latent frame per clip (390 tokens): at 1,560 tokens one clip's stage-2
# activations (the decomposed attention under autodiff keeps its S x S scores) do not fit beside
# the three models and AdamW on an 80 GB card.
latent=${LATENT:-1,30,52}
if [ "${ONLY_LARGE:-0}" != 1 ]; then
run 13b-w1 --model 1.3b --latent "$latent" --batch 2 --steps "$steps" --world 1
run 13b-w2 --model 1.3b --latent "$latent" --batch 2 --steps "$steps" --world 2
run 13b-w1-b4 --model 1.3b --latent "$latent" --batch 4 --steps "$steps" --world 1
run 13b-w2-b4 --model 1.3b --latent "$latent" --batch 4 --steps "$steps" --world 2
fi
# Larger global batches in micro-batches of 2 clips (the paper's global batch is 64): the
# per-step costs that do not shrink with more devices (optimizer, all-reduce) weigh less.
for b in ${LARGE_BATCHES:-16}; do
  mb=${MB_CLIPS:-2}  # clips per micro-batch
  run 13b-w1-b$b --model 1.3b --latent "$latent" --batch $b --steps "${LARGE_STEPS:-$steps}" --world 1 --micro-batches $((b / mb))
  run 13b-w2-b$b --model 1.3b --latent "$latent" --batch $b --steps "${LARGE_STEPS:-$steps}" --world 2 --micro-batches $((b / mb / 2))
done
[ "${ONLY_LARGE:-0}" = 1 ] && exit 0
# 14B shape at reduced depth (H = 1): memory grows by one block's weights, gradients and AdamW
# state per block; two depths give the slope to extrapolate to 40 blocks.
run 14b-d2 --model 14b --blocks 2 --head-blocks 1 --batch 1 --steps 6 --world 1
run 14b-d3 --model 14b --blocks 3 --head-blocks 1 --batch 1 --steps 6 --world 1
