#!/usr/bin/env bash
# Trains the bundled world teacher and the evaluator on the GPU machine with a CUDA xtask built on
# the CPU machine:
#
#   cargo build --release -p xtask --features cuda
#   cp target/release/xtask /tmp/xtask && strip /tmp/xtask && xz -c /tmp/xtask > gpu-bin/xtask.xz
#
# then, through the device tool, with `carry: ["gpu-bin"]`:
#
#   bash scripts/gpu/pretrain_world.sh VAE_SECS DIT_SECS EVAL_SECS [--set KEY=VALUE ...]
#
# Every stage resumes from its newest checkpoint under runs/, so calling the script again (on the
# same warm machine) continues where a time limit stopped it. What is finished is copied to $OUT:
# world-teacher.tar (the exported model directory), world-evaluator.tar, and the loss logs.
set -uo pipefail
vae_secs=${1:-240}; dit_secs=${2:-240}; eval_secs=${3:-60}; shift 3 || true
export CUDA_PATH=/usr/local/cuda LD_LIBRARY_PATH=/usr/local/cuda/lib64
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
out=${OUT:-/tmp/out}; mkdir -p "$out"
bin=/tmp/xtask
[ -x $bin ] || { xz -dc gpu-bin/xtask.xz > $bin && chmod +x $bin; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
stage() { # name seconds args...
  local name=$1 secs=$2; shift 2
  local t0=$(date +%s)
  timeout --signal=INT "$secs" $bin "$@" 2>&1 | grep -v '^\s*$' | tail -40
  echo "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
}
stage vae "$vae_secs" pretrain --device cuda --stage vae "$@"
stage dit "$dit_secs" pretrain --device cuda --stage dit "$@"
stage export 120 pretrain --device cuda --stage export "$@"
stage evaluator "$eval_secs" train-evaluator --device cuda
for d in vae dit; do cp runs/world-teacher/$d/loss.csv "$out/$d-loss.csv" 2>/dev/null; done
cp runs/world-evaluator/loss.csv "$out/evaluator-loss.csv" 2>/dev/null
cp runs/world-teacher/latent_stats.json "$out/" 2>/dev/null
[ -f assets/world-teacher/manifest.json ] && tar cf "$out/world-teacher.tar" assets/world-teacher
[ -f assets/world-evaluator/accuracy.json ] && tar cf "$out/world-evaluator.tar" assets/world-evaluator
ls -la "$out"
