#!/usr/bin/env bash
# Trains several DiT variants of the bundled teacher side by side on one GPU (each its own LibTorch
# process: the tiny DiT's step is bound by host-side op issue, so processes share the card well),
# then exports each and scores it with the evaluator (UniPC 50 steps with CFG).
#
#   bash scripts/gpu/dit_variants.sh SECS NAME:"--set k=v ..." [NAME:"..."] -- COMMON_ARGS...
#
# Each NAME trains in runs/world-teacher-NAME (created from runs/world-teacher: VAE checkpoint,
# text encoder, latent statistics; the DiT checkpoints too when NAME is `base`, which is
# runs/world-teacher itself), exports to assets/world-teacher-NAME, and comes back in $OUT as
# NAME.tar (the exported transformer and loss log) with eval-NAME.json; a run that did not finish
# comes back as NAME-ckpt.tar.* (its newest checkpoint) to resume from. Other variants share base's
# latent cache once base has built it. Needs gpu-bin/xtask-tch.xz.
set -uo pipefail
secs=$1; shift
variants=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do variants+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
common=("$@")
# Each process gets a share of the cores: LibTorch's OpenMP pool and rayon both default to every
# core, and several processes spinning on all 16 made no step in 430 s (2026-11-27).
threads=$(( $(nproc) / ${#variants[@]} )); [ "$threads" -lt 1 ] && threads=1
export OMP_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
out=${OUT:-/tmp/out}; mkdir -p "$out"
xz -dc gpu-bin/xtask-tch.xz > /tmp/xtask-tch && chmod +x /tmp/xtask-tch
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:$torch_lib
printf '[[teacher]]\nsolver = "unipc"\nsteps = 50\n' > /tmp/unipc50.toml
one() { # name, overrides
  local name=$1 run=runs/world-teacher-$1 model=assets/world-teacher-$1
  [ "$name" = base ] && run=runs/world-teacher
  if [ ! -d "$run" ]; then
    mkdir -p "$run/vae" && cp -r runs/world-teacher/vae/step-* "$run/vae/"
    cp -r runs/world-teacher/text_encoder runs/world-teacher/*.json "$run/"
    # Share base's latent cache (same VAE, same clips) once base has finished building it:
    # encoding is CPU-bound (~2 min for 8192 clips on 16 cores), better done once.
    if [[ " ${variants[*]} " == *" base:"* ]]; then
      until [ -f runs/world-teacher/dit/.cache-done ]; do sleep 5; done
      ln -s "$PWD/runs/world-teacher/latents" "$run/latents"
    fi
  fi
  local t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout --signal=INT "$secs" /tmp/xtask-tch pretrain --device torch-cuda --stage dit --run-dir "$run" \
    --out "$model" "${common[@]}" $2 --set dit_train.progress=false > "$out/$name.log" 2>&1
  echo "== $name: dit exit $? after $(( $(date +%s) - t0 )) s" >> "$out/$name.log"
  # shellcheck disable=SC2086
  /tmp/xtask-tch pretrain --device torch-cpu --stage export --run-dir "$run" --out "$model" \
    "${common[@]}" $2 >> "$out/$name.log" 2>&1 || return
  /tmp/xtask-tch eval --device torch-cuda --model "$model" --rows /tmp/unipc50.toml --limit 64 \
    --out "$out/eval-$name.json" 2>&1 | tr '\r' '\n' | grep '^|' >> "$out/$name.log"
  tar cf "$out/$name.tar" "$model/transformer" "$model/manifest.json" "$run/dit/loss.csv"
}
keep() { # name: the newest checkpoint when the run did not finish, so the next call resumes
  local run=runs/world-teacher-$1; [ "$1" = base ] && run=runs/world-teacher
  [ -f "$out/$1.tar" ] && return
  local last; last=$(ls -d "$run"/dit/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] && tar cf - "$last" "$run/dit/loss.csv" | split -b 15M - "$out/$1-ckpt.tar."
}
n() { (wc -l < "$1") 2>/dev/null || echo 0; }
n runs/world-teacher/dit/loss.csv > /tmp/base-start
( while sleep 30; do
    line="[$(date +%T)]"
    for v in "${variants[@]}"; do r=runs/world-teacher-${v%%:*}; [ "${v%%:*}" = base ] && r=runs/world-teacher
      line="$line ${v%%:*}: $(n $r/dit/loss.csv) steps, $(ls $r/latents 2>/dev/null | wc -l) cache files;"; done
    echo "$line"; done ) &
ticker=$!
for v in "${variants[@]}"; do one "${v%%:*}" "${v#*:}" & done
# base's first training step means its cache is complete.
( until [ "$(n runs/world-teacher/dit/loss.csv)" -gt "$(cat /tmp/base-start 2>/dev/null || echo 0)" ]; do sleep 5; done
  touch runs/world-teacher/dit/.cache-done ) &
watcher=$!
wait $(jobs -p | grep -v "^$ticker$" | grep -v "^$watcher$")
kill $ticker $watcher 2>/dev/null
for v in "${variants[@]}"; do keep "${v%%:*}"; done
for v in "${variants[@]}"; do n=${v%%:*}; echo "### $n"; grep -v '^dit step' "$out/$n.log" | tail -12; done
