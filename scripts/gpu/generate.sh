#!/usr/bin/env bash
# `tmd-cli generate` on the GPU through LibTorch (`--device torch-cuda`): the bundled TMD student
# and its 50-step CFG teacher, each run three times (the first pays CUDA and cuDNN start-up), with
# `--timings`. Needs gpu-bin/tmd-cli-tch.xz: on the CPU machine,
#   PATH=~/tchvenv/bin:$PATH LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 \
#     CARGO_TARGET_DIR=target/tch cargo build --release -p tmd-cli --features tch
#   strip target/tch/release/tmd-cli -o /tmp/t && xz -c /tmp/t > gpu-bin/tmd-cli-tch.xz
# then through the device tool, carrying gpu-bin: `bash scripts/gpu/generate.sh`.
# Writes timings.txt and the clips' frames (frames.tar) to $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$torch_lib
xz -dc gpu-bin/tmd-cli-tch.xz > /tmp/tmd-cli && chmod +x /tmp/tmd-cli
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/timings.txt"
prompt="A large red square moves to the right on a black background."
for who in student teacher; do
  flag=""; [ "$who" = teacher ] && flag=--teacher
  for i in 1 2 3; do
    /tmp/tmd-cli generate --device torch-cuda $flag --prompt "$prompt" --seed 3 \
      --out "/tmp/frames-$who" --timings 2>&1 | tail -1 | sed "s/^/$who run $i: /" | tee -a "$out/timings.txt"
  done
done
tar -C /tmp -cf "$out/frames.tar" frames-student frames-teacher
