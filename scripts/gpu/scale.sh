#!/usr/bin/env bash
# Issue 6 on the GPU machine: stage-2 (TMD) iterations of a Wan2.1-1.3B-shaped student on 1 and 2
# GPUs at the same global batch, and the memory of a 14B-shaped step at reduced depth, through
# LibTorch (gpu-bin/xtask-tch.xz, built as scripts/gpu/pretrain_world.sh
# describes).
#
#   bash scripts/gpu/scale.sh            # through the device tool, kind nvidia-h100-x2, carrying gpu-bin
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

# run NAME ARGS...: one bench-distill run with memory sampling.
run() {
  local name=$1; shift
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$out/mem-$name.csv" &
  local smi=$!
  local t0=$(date +%s)
  /tmp/xtask-tch bench-distill --device torch-cuda --run-dir "/tmp/bench-$name" "$@" > "$out/run-$name.json" 2> "$out/run-$name.log"
  local rc=$?
  kill $smi; wait $smi 2>/dev/null
  echo "== $name (rc $rc, $(( $(date +%s) - t0 )) s): $*"
  tail -3 "$out/run-$name.log"
  python3 - "$out" "$name" "$*" <<'PY'
import json, sys, collections
out, name, args = sys.argv[1:]
peak = collections.defaultdict(int)
for line in open(f"{out}/mem-{name}.csv"):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].isdigit():
        peak[int(parts[0])] = max(peak[int(parts[0])], int(parts[1]))
try:
    rec = json.loads(open(f"{out}/run-{name}.json").read().strip().splitlines()[-1])
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

steps=${STEPS:-11}
run 13b-w1 --model 1.3b --batch 2 --steps "$steps" --world 1
run 13b-w2 --model 1.3b --batch 2 --steps "$steps" --world 2
run 13b-w1-b4 --model 1.3b --batch 4 --steps "$steps" --world 1
run 13b-w2-b4 --model 1.3b --batch 4 --steps "$steps" --world 2
# 14B shape at reduced depth (H = 1): memory grows by one block's weights, gradients and AdamW
# state per block; two depths give the slope to extrapolate to 40 blocks.
run 14b-d2 --model 14b --blocks 2 --head-blocks 1 --batch 1 --steps 6 --world 1
run 14b-d3 --model 14b --blocks 3 --head-blocks 1 --batch 1 --steps 6 --world 1
