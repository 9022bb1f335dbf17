#!/usr/bin/env bash
# Issue 3 diagnosis: can the bundled teacher's DiT recipe learn clips that hold together in time
# when the data is small enough to memorise? Trains the recipe's DiT from scratch on a latent
# cache of only CLIPS (64) training clips, then scores it with the evaluator on exactly those
# clips' captions (runs/overfit-captions.txt: `xtask world-preview --seed 1 --count 64`, the same
# clips the cache encodes). A DiT that memorised them draws each caption's clip, motion and shape
# included; one that cannot, even there, points at the model or its training, not at data scale.
#
#   SECS=360 bash scripts/gpu/dit_overfit.sh [NAME:"--set k=v ..." ...]   # default: base:
#
# Several variants train side by side (one LibTorch process each, cores shared out). Needs
# runs/world-teacher/vae (from `cargo run --release -p tmd-world --example seed_vae_run --
# assets/world runs/world-teacher 8700`) and gpu-bin/xtask-tch.xz; through the device tool,
# carrying gpu-bin, runs/world-teacher and runs/overfit-captions.txt. Returns results.tar (per
# variant: loss.csv, the eval JSON on the training captions, the log) and prints a summary.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
[ $# -eq 0 ] && set -- "base:"
threads=$(( $(nproc) / $# )); [ "$threads" -lt 1 ] && threads=1
export OMP_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$torch_lib
xz -dc gpu-bin/xtask-tch.xz > /tmp/xtask-tch && chmod +x /tmp/xtask-tch
printf '[[teacher]]\nsolver = "unipc"\nsteps = 50\n' > /tmp/unipc50.toml
res=/tmp/overfit-results; rm -rf "$res"; mkdir -p "$res"
one() { # name, overrides
  local name=$1 run=/tmp/overfit-run-$1 model=/tmp/overfit-model-$1
  rm -rf "$run" && mkdir -p "$run" && cp -r runs/world-teacher/vae "$run/"
  local common=(--set world.vae_frames=17 --set world.vae_crop=0 --set vae_train.steps=8700
    --set latent_cache_clips="${CLIPS:-64}" --set dit_train.steps=100000
    --set dit_train.checkpoint.every=250 --set dit_train.progress=false)
  # shellcheck disable=SC2086
  timeout --signal=INT "${SECS:-360}" /tmp/xtask-tch pretrain --device torch-cuda --stage dit \
    --run-dir "$run" --out "$model" "${common[@]}" $2 > "$res/$name.log" 2>&1
  local last; last=$(ls -d "$run"/dit/step-* | tail -1); last=$((10#${last##*step-}))
  cp "$run/dit/loss.csv" "$res/$name-loss.csv"
  # shellcheck disable=SC2086
  /tmp/xtask-tch pretrain --device torch-cpu --stage export --run-dir "$run" --out "$model" \
    "${common[@]}" $2 --set dit_train.steps=$last >> "$res/$name.log" 2>&1
  /tmp/xtask-tch eval --device torch-cuda --model "$model" --rows /tmp/unipc50.toml \
    --prompts runs/overfit-captions.txt --out "$res/$name-eval.json" >> "$res/$name.log" 2>&1
  echo "$last" > "$res/$name-step"
}
for v in "$@"; do one "${v%%:*}" "${v#*:}" & done
wait
python3 - "$res" "$@" <<'PY'
import json, sys
res, names = sys.argv[1], [v.split(":", 1)[0] for v in sys.argv[2:]]
for n in names:
    try:
        losses = [float(l.split(",")[1]) for l in open(f"{res}/{n}-loss.csv")]
        curve = " ".join(f"{i}:{sum(losses[i-250:i])/250:.3f}" for i in range(250, len(losses) + 1, 500))
        row = json.load(open(f"{res}/{n}-eval.json"))["rows"][0]
        acc = {k: round(v * 100) for k, v in row["attribute_accuracy"].items()}
        print(f"{n}: step {len(losses)}, loss {curve}; training captions {row['prompt_accuracy']*100:.1f}% {acc}")
    except Exception as e:
        print(f"{n}: no result ({e})")
PY
tar -C "$res" -cf "$out/results.tar" .
