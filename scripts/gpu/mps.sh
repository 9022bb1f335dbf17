# Sourced by results.sh and arms.sh when MPS=1: starts NVIDIA's Multi-Process Service, so that the
# kernels of the training processes sharing one card run side by side instead of in turns.
#
# Why: the bundled world's DiT (4.86M parameters, 80 tokens a clip) is bound by host-side op
# issue, and its kernels fill a few of the card's 132 multiprocessors. Without MPS the processes'
# contexts time-slice the card, and in the 2026-12-06 runs twelve processes made 22 iterations a
# second together, hardly more than four processes' 19 (benches/NOTES.md). Under MPS, six
# processes made ~33 (docs/results/m1-pair, 2026-12-06; other students and process count, so
# MPS's own share is not separated).
#
# The daemon's folders live under /tmp; it does not change the card's compute mode, and it goes
# with the machine. If it cannot start, the runs go on without it, as before, and say so.
mps_start() {
  export CUDA_MPS_PIPE_DIRECTORY=${CUDA_MPS_PIPE_DIRECTORY:-/tmp/tmd-mps/pipe}
  export CUDA_MPS_LOG_DIRECTORY=${CUDA_MPS_LOG_DIRECTORY:-/tmp/tmd-mps/log}
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if ! command -v nvidia-cuda-mps-control > /dev/null; then
    echo "MPS: nvidia-cuda-mps-control not found; the processes share the card in turns" >&2
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; return 1
  fi
  if timeout 10 bash -c 'echo get_server_list | nvidia-cuda-mps-control' > /dev/null 2>&1; then
    echo "MPS: already running"; return 0
  fi
  # Started, and a CUDA client gets through it (a client that cannot reach the server fails at
  # its first CUDA call, which would fail every run): else the daemon is stopped again.
  if nvidia-cuda-mps-control -d && sleep 1 \
    && timeout 10 bash -c 'echo get_server_list | nvidia-cuda-mps-control' > /dev/null 2>&1 \
    && timeout 90 python3 -c 'import torch; torch.ones(1, device="cuda").sum().item()' > /dev/null 2>&1; then
    echo "MPS: started (pipes in $CUDA_MPS_PIPE_DIRECTORY)"; return 0
  fi
  timeout 10 bash -c 'echo quit | nvidia-cuda-mps-control' > /dev/null 2>&1
  echo "MPS: could not start (log: $CUDA_MPS_LOG_DIRECTORY); the processes share the card in turns" >&2
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; return 1
}
