#!/usr/bin/env bash
# Wan-scale benchmark on the GPU machine: every item of `cargo xtask bench` (Rust: burn CUDA or
# burn LibTorch) and of scripts/gpu/torch_bench.py (PyTorch + diffusers, the reference), in the same
# call on the same card, with ratio = rust_ms / torch_ms. Each item is timed as the median of REP
# timed runs after WARM untimed ones (defaults 2 and 5, the defaults of `xtask bench` and
# torch_bench.py; docs/gpu.md).
#
# Build, on the CPU machine (strips and packs the xtask binary into gpu-bin/, git-ignored, and puts
# the diffusers wheel beside it, from PyPI or from WHEELS=<dir with the .whl files>):
#   [BACKEND=torch-cuda] bash scripts/gpu/bench.sh --build
# BACKEND=torch-cuda builds against the pip PyTorch of $TCHVENV (default ~/tchvenv; create it with
# `python3 -m venv ~/tchvenv && ~/tchvenv/bin/pip install torch==2.11.0`, the GPU machine's version).
# Then, on the GPU machine from the repository root (through the device tool, carrying gpu-bin):
#   BACKEND=torch-cuda bash scripts/gpu/bench.sh gemm,attention,dit-1.3b,tmd-step,bf16-error,dit-14b,vae-decode,t5
# It writes ONE file, $OUT/bench.json ({"card", "items": [{item, rust_ms, torch_ms, ratio, rust,
# torch}]}); every log goes to stderr. Copy it to benches/results/<date>-<card>.json.
#
# Each Rust item runs in its own process under `timeout` (ITEM_SECS, default 240), so one item
# that fails or runs out of memory does not stop the others; the peak GPU memory of each process
# is sampled with nvidia-smi every 0.2 s (whole device, so it includes the memory pools). On burn's
# own CUDA backend a full 1.3B forward at 32,760 tokens does not finish in 120 s (its attention);
# `dit-1.3b-block` times one block instead. Put the items that matter first.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
warm=${WARM:-2}; rep=${REP:-5}
if [ "${1:-}" = --build ]; then
  mkdir -p gpu-bin/wheels
  if [ "${BACKEND:-cuda}" = torch-cuda ]; then
    if [ -f scripts/gpu/build.sh ]; then
      bash scripts/gpu/build.sh || exit 1   # target/tch/release/{tmd-cli,xtask} against $TCHVENV's PyTorch
    else
      venv=${TCHVENV:-$HOME/tchvenv}
      [ -x "$venv/bin/python" ] || { echo "no $venv: python3 -m venv $venv && $venv/bin/pip install torch==2.11.0"; exit 1; }
      PATH=$venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 \
        CARGO_TARGET_DIR=target/tch cargo build --release -p xtask --features tch || exit 1
    fi
    cp target/tch/release/xtask /tmp/xtask-tch && strip /tmp/xtask-tch && xz -T2 -c /tmp/xtask-tch > gpu-bin/xtask-tch.xz
    packed=gpu-bin/xtask-tch.xz
  else
    CARGO_TARGET_DIR=target/cuda cargo build --release -p xtask --features cuda || exit 1
    cp target/cuda/release/xtask /tmp/xtask-cuda && strip /tmp/xtask-cuda && xz -T2 -c /tmp/xtask-cuda > gpu-bin/xtask.xz
    packed=gpu-bin/xtask.xz
  fi
  # The reference side needs diffusers 0.42.1 on the GPU machine, which has no network.
  if [ -n "${WHEELS:-}" ]; then
    cp "$WHEELS"/*.whl gpu-bin/wheels/ || exit 1
  else
    python3 -m pip download -q --no-deps -d gpu-bin/wheels diffusers==0.42.1 importlib_metadata \
      || echo "could not download diffusers==0.42.1 from PyPI: set WHEELS=<dir with the diffusers wheel>"
  fi
  ls -la "$packed" gpu-bin/wheels
  echo "now run, through the device tool with carry [\"gpu-bin\"]:"
  echo "  BACKEND=${BACKEND:-cuda} bash scripts/gpu/bench.sh gemm,attention,dit-1.3b,tmd-step,bf16-error,dit-14b,vae-decode,t5"
  exit 0
fi
exec 1>&2   # logs to stderr; the one result is $OUT/bench.json
items=${1:-gemm,attention,dit-1.3b,tmd-step}
# BACKEND=cuda (default): burn's CUDA backend, gpu-bin/xtask.xz. BACKEND=torch-cuda: burn's LibTorch
# backend (cuBLAS GEMMs, PyTorch's scaled_dot_product_attention), gpu-bin/xtask-tch.xz from
# `--build` above, linked here against the machine's own PyTorch.
backend=${BACKEND:-cuda}
latent=${LATENT:-21,60,104}
out=${OUT:-/tmp/out}; mkdir -p "$out"
work=$(mktemp -d)   # per-item logs and raw JSON lines, kept out of $OUT
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
: > "$work/rust.jsonl"; : > "$work/torch.jsonl"
for item in ${items//,/ }; do
  # The reference first: it is quick, and a Rust item that runs out of time must not cost it.
  t0=$(date +%s)
  timeout "${ITEM_SECS:-240}" python3 scripts/gpu/torch_bench.py "$item" --latent "$latent" --warm "$warm" --rep "$rep" >> "$work/torch.jsonl" 2> "$work/torch-$item.err"
  echo "== torch $item: exit $? after $(( $(date +%s) - t0 )) s"; tail -5 "$work/torch-$item.err"
  t0=$(date +%s)
  mib=$( { peak timeout "${ITEM_SECS:-240}" $xtask bench --device "$backend" --items "$item" --latent "$latent" --warm "$warm" --rep "$rep" \
            > "$work/rust-$item.txt" 2> "$work/rust-$item.err"; } 3>&1 )
  rc=$?
  echo "== rust $item: exit $rc after $(( $(date +%s) - t0 )) s, peak ${mib} MiB"
  tail -5 "$work/rust-$item.err"
  grep '^{' "$work/rust-$item.txt" | python3 -c "import json,sys
for l in sys.stdin:
    r=json.loads(l); r['peak_mib_nvidia_smi']=int('${mib:-0}' or 0); print(json.dumps(r))" >> "$work/rust.jsonl"
done
python3 scripts/gpu/bench_merge.py "$work/rust.jsonl" "$work/torch.jsonl" "$work/bench.json"
# Record the timing protocol beside the numbers, then write the one result file.
python3 -c "import json, sys
d = json.load(open(sys.argv[1])); d['warm'], d['rep'] = int(sys.argv[2]), int(sys.argv[3])
json.dump(d, open(sys.argv[4], 'w'), indent=2)" "$work/bench.json" "$warm" "$rep" "$out/bench.json"
