#!/usr/bin/env bash
# Wan-scale benchmark on the GPU machine: every item of `cargo xtask bench` (Rust, burn CUDA) and
# of scripts/gpu/torch_bench.py (PyTorch + diffusers, the reference), in the same call on the same
# card, merged into $OUT/bench.json with ratio = rust_ms / torch_ms.
#
# On the CPU machine, `[BACKEND=torch-cuda] bash scripts/gpu/bench.sh --build` builds the stripped
# xtask (burn CUDA, or burn LibTorch) into gpu-bin/ (git-ignored), copies the diffusers wheel
# beside it, and prints the command to run through the device tool (carrying gpu-bin):
#   bash scripts/gpu/bench.sh gemm,attention,dit-1.3b,tmd-step,bf16-error,dit-14b,vae-decode,t5
# then copy $OUT/bench.json to benches/results/<date>-<card>.json.
#
# Measured 2026-11-26 (H200): burn's attention at 32,760 tokens takes ~1.06 s, so a full 1.3B
# forward (30 blocks) does not finish 1 warm-up + 3 timed runs in 120 s; `dit-1.3b-block` times
# one block instead. Device time is scarce: put the items that matter first.
#
# Each Rust item runs in its own process under `timeout` (ITEM_SECS, default 240), so one item
# that fails or runs out of memory does not stop the others; the peak GPU memory of each process
# is sampled with nvidia-smi every 0.2 s (whole device, so it includes burn's memory pools).
set -uo pipefail
if [ "${1:-}" = --build ]; then
  cd "$(dirname "$0")/../.." || exit 1
  mkdir -p gpu-bin/wheels
  if [ "${BACKEND:-cuda}" = torch-cuda ]; then
    # LibTorch build: links the PyTorch of /work/tchvenv (torch==2.11.0, the GPU machine's version).
    venv=${TCHVENV:-/work/tchvenv}
    [ -x "$venv/bin/python" ] || { echo "no $venv: python3 -m venv $venv && $venv/bin/pip install torch==2.11.0"; exit 1; }
    PATH=$venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 \
      CARGO_TARGET_DIR=target/tch cargo build --release -p xtask --features tch || exit 1
    cp target/tch/release/xtask /tmp/xtask-tch && strip /tmp/xtask-tch && xz -T2 -c /tmp/xtask-tch > gpu-bin/xtask-tch.xz
    packed=gpu-bin/xtask-tch.xz
  else
    CARGO_TARGET_DIR=target/cuda cargo build --release -p xtask --features cuda || exit 1
    cp target/cuda/release/xtask /tmp/xtask-cuda && strip /tmp/xtask-cuda && xz -T2 -c /tmp/xtask-cuda > gpu-bin/xtask.xz
    packed=gpu-bin/xtask.xz
  fi
  cp "${WHEELS:-../shared/reference/wheels}"/*.whl gpu-bin/wheels/ 2>/dev/null || echo "no wheels found: set WHEELS=<dir with diffusers wheel>"
  ls -la "$packed" gpu-bin/wheels
  echo "now run, through the device tool with carry [\"gpu-bin\"]:"
  echo "  BACKEND=${BACKEND:-cuda} bash scripts/gpu/bench.sh gemm,attention,dit-1.3b,tmd-step,bf16-error,dit-14b,vae-decode,t5"
  exit 0
fi
items=${1:-gemm,attention,dit-1.3b,tmd-step}
# BACKEND=cuda (default): burn's CUDA backend, gpu-bin/xtask.xz. BACKEND=torch-cuda: burn's LibTorch
# backend (cuBLAS GEMMs, PyTorch's scaled_dot_product_attention), gpu-bin/xtask-tch.xz built as
# scripts/gpu/pretrain_world.sh describes, linked against the machine's own PyTorch.
backend=${BACKEND:-cuda}
latent=${LATENT:-21,60,104}
out=${OUT:-/tmp/out}; mkdir -p "$out"
export CUDA_PATH=/usr/local/cuda LD_LIBRARY_PATH=/usr/local/cuda/lib64
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
if [ "$backend" = torch-cuda ]; then
  xtask=/tmp/xtask-tch; packed=gpu-bin/xtask-tch.xz
  torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$torch_lib
else
  xtask=/tmp/xtask; packed=gpu-bin/xtask.xz
fi
[ -x $xtask ] || { xz -dc $packed > $xtask && chmod +x $xtask; }
if [ -d gpu-bin/wheels ] && ! python3 -c 'import diffusers' 2>/dev/null; then
  pip install -q --no-index --no-deps --target /tmp/site gpu-bin/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
peak() { # command... : runs it, prints the peak device memory (MiB) seen meanwhile to fd 3
  local f; f=$(mktemp)
  ( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$f"; done ) &
  local s=$!; "$@"; local rc=$?; kill $s 2>/dev/null; wait $s 2>/dev/null
  echo "$(sort -n "$f" | tail -1)" >&3; rm -f "$f"; return $rc
}
: > "$out/rust.jsonl"; : > "$out/torch.jsonl"
for item in ${items//,/ }; do
  # The reference first: it is quick, and a Rust item that runs out of time must not cost it.
  t0=$(date +%s)
  timeout "${ITEM_SECS:-240}" python3 scripts/gpu/torch_bench.py "$item" --latent "$latent" --warm "${WARM:-1}" --rep "${REP:-3}" >> "$out/torch.jsonl" 2> "$out/torch-$item.err"
  echo "== torch $item: exit $? after $(( $(date +%s) - t0 )) s"; tail -2 "$out/torch-$item.err"
  t0=$(date +%s)
  mib=$( { peak timeout "${ITEM_SECS:-240}" $xtask bench --device "$backend" --items "$item" --latent "$latent" --warm "${WARM:-1}" --rep "${REP:-3}" \
            > "$out/rust-$item.txt" 2> "$out/rust-$item.err"; } 3>&1 )
  rc=$?
  echo "== rust $item: exit $rc after $(( $(date +%s) - t0 )) s, peak ${mib} MiB"
  tail -3 "$out/rust-$item.err"
  grep '^{' "$out/rust-$item.txt" | python3 -c "import json,sys
for l in sys.stdin:
    r=json.loads(l); r['peak_mib_nvidia_smi']=int('${mib:-0}' or 0); print(json.dumps(r))" >> "$out/rust.jsonl"
done
python3 scripts/gpu/bench_merge.py "$out/rust.jsonl" "$out/torch.jsonl" "$out/bench.json"
