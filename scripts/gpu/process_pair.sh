#!/usr/bin/env bash
# Issue 6: why two ranks scale to ~1.7x and not 2x. The same 1-GPU stage-2 run (1.3B shape, 1,560
# tokens per clip, 4 clips as 4 micro-batches) alone on GPU 0; then two copies at once as separate
# processes on GPU 0 and GPU 1 (no collective); then one process of two rank threads (--world 2,
# 4 clips per rank). Equal per-rank times alone and as a process pair, but slower as threads, put
# the loss in the process (threads sharing host-side state), not in the machine.
#
#   bash scripts/gpu/process_pair.sh   # through the device tool, kind nvidia-h100-x2, carrying gpu-bin
#
# Writes alone.json, pair0.json, pair1.json and threads.json (bench-distill lines) to $OUT.
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$torch_lib PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
xz -dc gpu-bin/xtask-tch.xz > /tmp/x && chmod +x /tmp/x
A="bench-distill --device torch-cuda --model 1.3b --latent 4,30,52 --batch 4 --micro-batches 4 --steps 6 --world 1"
CUDA_VISIBLE_DEVICES=0 /tmp/x $A --run-dir /tmp/a > $OUT/alone.json 2>/tmp/a.log; echo alone rc $?
CUDA_VISIBLE_DEVICES=0 /tmp/x $A --run-dir /tmp/b0 > $OUT/pair0.json 2>/tmp/b0.log &
CUDA_VISIBLE_DEVICES=1 /tmp/x $A --run-dir /tmp/b1 > $OUT/pair1.json 2>/tmp/b1.log; wait; echo pair done
/tmp/x bench-distill --device torch-cuda --model 1.3b --latent 4,30,52 --batch 8 --micro-batches 4 --steps 6 --world 2 --run-dir /tmp/c > $OUT/threads.json 2>/tmp/c.log; echo threads rc $?
for f in alone pair0 pair1 threads; do python3 -c "
import json,sys; r=json.loads(open('$OUT/$f.json').read().strip().splitlines()[-1]); print('$f', r['world'], r['global_batch'], r['micro_batches'], round(r['critic_ms']), round(r['student_ms']), round(r['cycle_ms']), r['losses'][:3])"; done
