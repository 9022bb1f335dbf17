#!/usr/bin/env bash
# Trains the bundled world teacher and the evaluator on the GPU machine with a CUDA xtask built on
# the CPU machine:
#
#   cargo build --release -p xtask --features cuda
#   cp target/release/xtask /tmp/xtask && strip /tmp/xtask && xz -c /tmp/xtask > gpu-bin/xtask.xz
#
# then, through the device tool, carrying gpu-bin (and runs/ from earlier calls):
#
#   bash scripts/gpu/pretrain_world.sh vae SECS       # VAE, with the evaluator beside it
#   bash scripts/gpu/pretrain_world.sh dit SECS       # DiT (needs runs/world-teacher/vae), export
#
# Every stage resumes from its newest checkpoint under runs/. A fresh GPU machine compiles every
# kernel shape again (minutes), so each call should do one stage to the end. The newest
# checkpoint of each stage comes back in $OUT as <stage>-ckpt.tar.* (split below the 16 MiB
# limit of returned files); unpack them into the repository root before the next call.
set -uo pipefail
what=$1; secs=$2; shift 2
export CUDA_PATH=/usr/local/cuda LD_LIBRARY_PATH=/usr/local/cuda/lib64
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
out=${OUT:-/tmp/out}; mkdir -p "$out"
bin=/tmp/xtask
[ -x $bin ] || { xz -dc gpu-bin/xtask.xz > $bin && chmod +x $bin; }
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
stage() { # name seconds args...
  local name=$1 s=$2; shift 2
  local t0=$(date +%s)
  timeout --signal=INT "$s" $bin "$@" 2>&1 | grep -v '^\s*$' | tail -40
  echo "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
}
n() { (wc -l < "$1") 2>/dev/null || echo 0; }
( while sleep 30; do echo "[$(date +%T)] steps: vae $(n runs/world-teacher/vae/loss.csv) dit $(n runs/world-teacher/dit/loss.csv) evaluator $(n runs/world-evaluator/loss.csv)"; done ) &
ticker=$!
case $what in
  vae)
    stage evaluator "$secs" train-evaluator --device cuda > "$out/evaluator.log" 2>&1 &
    stage vae "$secs" pretrain --device cuda --stage vae "$@"
    wait %2 2>/dev/null; cat "$out/evaluator.log"
    [ -f assets/world-evaluator/accuracy.json ] && tar cf "$out/world-evaluator.tar" assets/world-evaluator runs/world-evaluator/loss.csv
    ;;
  dit)
    stage dit "$secs" pretrain --device cuda --stage dit "$@"
    stage export 120 pretrain --device cuda --stage export "$@"
    [ -f assets/world-teacher/manifest.json ] && tar cf "$out/world-teacher.tar" assets/world-teacher
    ;;
esac
kill $ticker
for d in vae dit; do
  last=$(ls -d runs/world-teacher/$d/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] && tar cf - "$last" runs/world-teacher/$d/loss.csv runs/world-teacher/*.json runs/world-teacher/text_encoder 2>/dev/null | split -b 15M - "$out/$d-ckpt.tar."
done
ls -la "$out"
