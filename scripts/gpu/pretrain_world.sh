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
# kernel shape again (minutes). (Persisting CubeCL's PTX and autotune caches was tried: 280 MB
# after one call, too large to bring back.)
#
# VAE_DEVICE=cpu / DIT_DEVICE=cpu / EVAL_DEVICE=cpu run a stage with the NdArray build
# (gpu-bin/xtask-cpu.xz, `cargo build --release -p xtask`) on the machine's 16 cores instead;
# measured: no faster than 2 cores for the VAE (its small per-tap matmuls do not spread over
# threads). EVAL_DEVICE=none skips the evaluator beside the VAE; `evaluator` trains it alone.
# VAE_DEVICE=torch-cuda (and DIT_/EVAL_) run a stage through LibTorch (burn's tch backend: cuDNN
# convolutions, no kernel compilation) with gpu-bin/xtask-tch.xz, built on the CPU machine against
# the PyTorch version of the GPU machine (2.11):
#
#   python3 -m venv ~/tchvenv && ~/tchvenv/bin/pip install torch==2.11.0
#   PATH=~/tchvenv/bin:$PATH LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 \
#     CARGO_TARGET_DIR=target/tch cargo build --release -p xtask --features tch
#   cp target/tch/release/xtask /tmp/xtask-tch && strip /tmp/xtask-tch && xz -c /tmp/xtask-tch > gpu-bin/xtask-tch.xz
#
# TMD_CONV=native makes the VAE and the evaluator use burn's own convolution kernels instead of the
# per-tap matmuls (tmd_model::conv). The newest
# checkpoint of each stage comes back in $OUT as <stage>-ckpt.tar.* (split below the 16 MiB
# limit of returned files); unpack them into the repository root before the next call.
set -uo pipefail
what=$1; secs=$2; shift 2
export CUDA_PATH=/usr/local/cuda LD_LIBRARY_PATH=/usr/local/cuda/lib64
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
out=${OUT:-/tmp/out}; mkdir -p "$out"
unpack() { [ -x /tmp/$1 ] || { xz -dc gpu-bin/$1.xz > /tmp/$1 && chmod +x /tmp/$1; }; }
binary() { # device -> path of the xtask build for it
  case $1 in
    cpu) unpack xtask-cpu; echo /tmp/xtask-cpu ;;
    torch-*) unpack xtask-tch; echo /tmp/xtask-tch ;;
    *) unpack xtask; echo /tmp/xtask ;;
  esac
}
# LibTorch builds load the machine's own PyTorch libraries.
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
[ -n "$torch_lib" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$torch_lib
VAE_DEVICE=${VAE_DEVICE:-cuda} DIT_DEVICE=${DIT_DEVICE:-cuda} EVAL_DEVICE=${EVAL_DEVICE:-cuda}
echo "cpu cores: $(nproc)"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
stage() { # name seconds device args...
  local name=$1 s=$2 bin; bin=$(binary "$3"); shift 3
  local t0=$(date +%s)
  timeout --signal=INT "$s" $bin "$@" 2>&1 | tr '\r' '\n' | grep --line-buffered -v '^\s*$'
  echo "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
}
n() { (wc -l < "$1") 2>/dev/null || echo 0; }
( while sleep 30; do echo "[$(date +%T)] steps: vae $(n runs/world-teacher/vae/loss.csv) dit $(n runs/world-teacher/dit/loss.csv) evaluator $(n runs/world-evaluator/loss.csv)"; done ) &
ticker=$!
case $what in
  vae)
    if [ "$EVAL_DEVICE" != none ]; then
      stage evaluator "$secs" $EVAL_DEVICE train-evaluator --device $EVAL_DEVICE > "$out/evaluator.log" 2>&1 &
    fi
    stage vae "$secs" $VAE_DEVICE pretrain --device $VAE_DEVICE --stage vae "$@"
    awk -F, '{s+=$2; n++; if (n==50){printf "vae loss, mean of 50 steps to %d: %.4f\n", $1, s/n; s=0; n=0}}' runs/world-teacher/vae/loss.csv 2>/dev/null | tail -20
    wait 2>/dev/null; [ -f "$out/evaluator.log" ] && cat "$out/evaluator.log"
    [ -f assets/world-evaluator/accuracy.json ] && tar cf "$out/world-evaluator.tar" assets/world-evaluator runs/world-evaluator/loss.csv
    ;;
  evaluator)
    stage evaluator "$secs" $EVAL_DEVICE train-evaluator --device $EVAL_DEVICE "$@"
    [ -f assets/world-evaluator/accuracy.json ] && tar cf "$out/world-evaluator.tar" assets/world-evaluator runs/world-evaluator/loss.csv
    ;;
  teacher)
    # The whole teacher in one call (LibTorch on the GPU makes each stage minutes):
    # VAE for VAE_SECS (default a third of SECS), its check on held-out clips, DiT, export.
    vs=${VAE_SECS:-$(( secs / 3 ))}; t0=$(date +%s)
    stage vae "$vs" $VAE_DEVICE pretrain --device $VAE_DEVICE --stage vae "$@"
    stage vae-check 120 $VAE_DEVICE pretrain --device $VAE_DEVICE --stage vae-check "$@"
    left=$(( secs - ($(date +%s) - t0) - 60 ))
    stage dit "$left" $DIT_DEVICE pretrain --device $DIT_DEVICE --stage dit "$@"
    stage export 60 $DIT_DEVICE pretrain --device $DIT_DEVICE --stage export "$@"
    awk -F, '{s+=$2; n++; if (n==100){printf "dit loss, mean of 100 steps to %d: %.4f\n", $1, s/n; s=0; n=0}}' runs/world-teacher/dit/loss.csv 2>/dev/null | tail -30
    [ -f assets/world-teacher/manifest.json ] && tar cf "$out/world-teacher.tar" assets/world-teacher
    ;;
  dit)
    stage dit "$secs" $DIT_DEVICE pretrain --device $DIT_DEVICE --stage dit "$@"
    exp_dev=cpu; case $DIT_DEVICE in torch-*) exp_dev=torch-cpu ;; esac
    stage export 120 $exp_dev pretrain --device $exp_dev --stage export "$@"
    [ -f assets/world-teacher/manifest.json ] && tar cf "$out/world-teacher.tar" assets/world-teacher
    ;;
esac
kill $ticker
for d in vae dit; do
  last=$(ls -d runs/world-teacher/$d/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] && tar cf - "$last" runs/world-teacher/$d/loss.csv runs/world-teacher/*.json runs/world-teacher/text_encoder 2>/dev/null | split -b 15M - "$out/$d-ckpt.tar."
done
last=$(ls -d runs/world-evaluator/step-* 2>/dev/null | tail -1)
[ -n "$last" ] && tar cf - "$last" runs/world-evaluator/loss.csv | split -b 15M - "$out/evaluator-ckpt.tar."
ls -la "$out"
