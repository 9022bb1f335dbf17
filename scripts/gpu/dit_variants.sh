#!/usr/bin/env bash
# Trains several DiT variants of the bundled teacher side by side on one GPU (each its own LibTorch
# process: the tiny DiT's step is bound by host-side op issue, so processes share the card well),
# then exports each and scores it with the evaluator (UniPC 50 steps with CFG).
#
#   bash scripts/gpu/dit_variants.sh SECS NAME:"--set k=v ..." [NAME:"..."] -- COMMON_ARGS...
#
# DEVICE (default torch-cuda) and EVAL_LIMIT (held-out prompts scored, default 64) change the
# device and the eval; `DEVICE=torch-cpu EVAL_LIMIT=1` with toy settings smoke-tests it on a CPU.
#
# Each NAME trains in runs/world-teacher-NAME (created from runs/world-teacher: VAE checkpoint,
# text encoder, latent statistics; the DiT checkpoints too when NAME is `base`, which is
# runs/world-teacher itself), exports to assets/world-teacher-NAME, and comes back in $OUT as
# NAME.tar.* (the exported transformer, the newest checkpoint to resume from and the loss log),
# with every log and eval-NAME.json in logs.tar. A run stopped by the time
# limit is exported and scored at its newest checkpoint (`dit_train.steps` set to that step, which
# is outside the resume hash). The first variant builds the latent cache; the others share it
# (same VAE, same clips) once it is built. Needs gpu-bin/xtask-tch.xz.
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
first=${variants[0]%%:*}
run_of() { if [ "$1" = base ]; then echo runs/world-teacher; else echo "runs/world-teacher-$1"; fi; }
one() { # name, overrides
  local name=$1 run model=assets/world-teacher-$1
  run=$(run_of "$name")
  if [ ! -d "$run" ]; then
    mkdir -p "$run/vae" && cp -r runs/world-teacher/vae/step-* "$run/vae/"
    cp -r runs/world-teacher/text_encoder runs/world-teacher/*.json "$run/"
  fi
  if [ "$name" != "$first" ] && [ ! -e "$run/latents" ]; then
    # Encoding is CPU-bound (~2 min for 8192 clips on 16 cores), better done once.
    until [ -f "$(run_of "$first")/dit/.cache-done" ]; do sleep 5; done
    ln -s "$PWD/$(run_of "$first")/latents" "$run/latents"
  fi
  local t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout --signal=INT "$secs" /tmp/xtask-tch pretrain --device "${DEVICE:-torch-cuda}" --stage dit --run-dir "$run" \
    --out "$model" "${common[@]}" $2 --set dit_train.progress=false > "$out/$name.log" 2>&1
  echo "== $name: dit exit $? after $(( $(date +%s) - t0 )) s" >> "$out/$name.log"
  local last; last=$(ls -d "$run"/dit/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] || return
  last=$((10#${last##*step-}))
  # shellcheck disable=SC2086
  /tmp/xtask-tch pretrain --device torch-cpu --stage export --run-dir "$run" --out "$model" \
    "${common[@]}" $2 --set dit_train.steps=$last >> "$out/$name.log" 2>&1 || return
  echo "== $name: exported step $last" >> "$out/$name.log"
  /tmp/xtask-tch eval --device "${DEVICE:-torch-cuda}" --model "$model" --rows /tmp/unipc50.toml --limit "${EVAL_LIMIT:-64}" \
    --out "$out/eval-$name.json" 2>&1 | tr '\r' '\n' | grep '^|' >> "$out/$name.log"
}
keep() { # name: the export and the newest checkpoint (weights and optimizer, to resume from),
  # split below the 16 MiB limit of a returned file
  local run model=assets/world-teacher-$1 files=()
  run=$(run_of "$1")
  [ -d "$model/transformer" ] && files+=("$model/transformer" "$model/manifest.json")
  local last; last=$(ls -d "$run"/dit/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] && files+=("$last" "$run/dit/loss.csv")
  [ ${#files[@]} -gt 0 ] && tar cf - "${files[@]}" | split -b 15M - "$out/$1.tar."
}
n() { (wc -l < "$1") 2>/dev/null || echo 0; }
n "$(run_of "$first")/dit/loss.csv" > /tmp/first-start
( while sleep 30; do
    line="[$(date +%T)]"
    for v in "${variants[@]}"; do r=$(run_of "${v%%:*}")
      line="$line ${v%%:*}: $(n $r/dit/loss.csv) steps, $(ls $r/latents 2>/dev/null | wc -l) cache files;"; done
    echo "$line"; done ) &
ticker=$!
for v in "${variants[@]}"; do one "${v%%:*}" "${v#*:}" & done
# The first variant's first training step means its cache is complete.
( until [ "$(n "$(run_of "$first")/dit/loss.csv")" -gt "$(cat /tmp/first-start)" ]; do sleep 5; done
  touch "$(run_of "$first")/dit/.cache-done" ) &
watcher=$!
wait $(jobs -p | grep -v "^$ticker$" | grep -v "^$watcher$")
kill $ticker $watcher 2>/dev/null
for v in "${variants[@]}"; do keep "${v%%:*}"; done
for v in "${variants[@]}"; do n=${v%%:*}; echo "### $n"; grep -v '^dit step' "$out/$n.log" | tail -12; done
# Logs and reports in one file: the device tool brings back at most 8.
(cd "$out" && tar cf logs.tar ./*.log ./*.json 2>/dev/null && rm -f ./*.log ./*.json)
