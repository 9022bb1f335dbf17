#!/usr/bin/env bash
# Builds the LibTorch-backed `tmd-cli` and `xtask` (`--device torch-cuda` / `torch-cpu`) against the
# libtorch of a pip PyTorch, with that libtorch's directory embedded as the binaries' run path: they
# then start with no LD_LIBRARY_PATH or other variable.
#
#   bash scripts/gpu/build.sh            # -> target/tch/release/{tmd-cli,xtask}
#   bash scripts/gpu/build.sh --pack     # also strips and xz-compresses them into gpu-bin/ (git-ignored),
#                                        # for a GPU machine without Rust (see docs/gpu.md)
#
# PyTorch is looked for in $TCHVENV (default ~/tchvenv), then in the `python3` on PATH. None found:
#   python3 -m venv ~/tchvenv && ~/tchvenv/bin/pip install torch==2.11.0
# The binaries need that same PyTorch (same path) at run time: rebuild after moving or upgrading it.
set -euo pipefail
cd "$(dirname "$0")/../.."
pack=0
for a in "$@"; do
  case $a in
    --pack) pack=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "scripts/gpu/build.sh: unknown argument '$a' (expected --pack)" >&2; exit 2 ;;
  esac
done
venv=${TCHVENV:-$HOME/tchvenv}
python=""
for p in "$venv/bin/python" "$(command -v python3 || true)"; do
  if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import torch' 2>/dev/null; then python=$p; break; fi
done
if [ -z "$python" ]; then
  echo "scripts/gpu/build.sh: no PyTorch found (looked in $venv/bin/python and python3 on PATH)." >&2
  echo "Install one with:  python3 -m venv $venv && $venv/bin/pip install torch==2.11.0" >&2
  exit 1
fi
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
echo "building against $("$python" -c 'import torch; print(torch.__version__)') in $torch_lib" >&2
PATH=$(dirname "$python"):$PATH LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 \
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/tch} \
  cargo build --release -p xtask -p tmd-cli --features xtask/tch,tmd-cli/tch
out=${CARGO_TARGET_DIR:-target/tch}/release
for b in xtask tmd-cli; do
  readelf -d "$out/$b" | grep -q "$torch_lib" \
    || { echo "scripts/gpu/build.sh: $out/$b has no run path to $torch_lib" >&2; exit 1; }
done
echo "built $out/tmd-cli and $out/xtask (run path: $torch_lib)" >&2
if [ $pack = 1 ]; then
  mkdir -p gpu-bin
  for b in xtask tmd-cli; do
    cp "$out/$b" "gpu-bin/$b-tch" && strip "gpu-bin/$b-tch" && xz -T2 -f "gpu-bin/$b-tch"
  done
  echo "$torch_lib" > gpu-bin/torch-lib-path
  ls -la gpu-bin >&2
fi
