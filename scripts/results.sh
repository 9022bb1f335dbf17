#!/usr/bin/env bash
# The results table of issue 4 on the bundled world: one documented sequence from a trained teacher
# to docs/results/bundled-world.json (the report behind the README's table).
#
#   bash scripts/results.sh                    # the real run (hours on the CPU machine)
#   SMOKE=1 bash scripts/results.sh            # every command at a few steps (minutes), for checking
#
# Environment: TEACHER (default assets/world, the bundled teacher), RUN (runs/results), DEVICE (cpu, cuda,
# torch-cpu, torch-cuda), SEEDS (3), XTASK (the xtask command, default `cargo xtask`), OUT
# (docs/results/bundled-world.json; with SMOKE=1 $RUN/report.json), JOBS (1: training runs of one
# stage that do not depend on each other run JOBS at a time, each logging to <out>.log; a small
# model leaves a GPU mostly idle, so several runs share it well).
# Every step resumes: run it again after an interruption.
#
# Rows (configs are the paper's where it gives them, TMD.md):
#   teacher UniPC 50 steps CFG (the model directory's defaults)
#   DMD2-v at M = 1 (with the KD warm-up), 2, 4 (outer shift 5 at 4 steps)
#   TMD at M = 1 and 2 with N = 2 and 4, for H = 1 and 2 of the teacher's 4 blocks
#   ablations at M = 2, N = 2, H = 1: no GAN; TM instead of TM-MeanFlow in stage 1; no rollout
#   (stage 2 trained with N = 1, sampled with N = 2)
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${TEACHER:-assets/world}
RUN=${RUN:-runs/results}
DEVICE=${DEVICE:-cpu}
SEEDS=${SEEDS:-3}
XTASK=${XTASK:-cargo xtask}
OUT=${OUT:-docs/results/bundled-world.json}
if [ "${SMOKE:-0}" = 1 ]; then
  # A few steps of everything, a handful of clips and prompts: checks the wiring, measures nothing.
  S1=(--set train.steps=2 --set train.batch=2 --set train.progress=false)
  S2=(--set train.steps=2 --set train.batch=2 --set train.student_every=2 --set train.progress=false)
  KD=(--set kd.steps=2 --set kd.batch=2 --set kd.progress=false)
  DATA=(--set clips=4 --set chunk=4 --set steps=2 --set progress=false)
  EVAL=(--limit 2)
  SEEDS=1
  OUT=${OUT_SMOKE:-$RUN/report.json}
  if [ ! -f "$TEACHER/manifest.json" ]; then
    # No trained teacher: a throwaway one of the world's clip size at a few steps.
    TEACHER=$RUN/smoke-teacher
    x() { echo "+ $XTASK $*" >&2; $XTASK "$@"; }
    x pretrain --run-dir "$RUN/smoke-teacher.run" --out "$TEACHER" --device "$DEVICE" \
      --set vae.base_dim=4 --set vae_train.steps=1 --set vae_train.batch=1 --set vae_train.progress=false \
      --set dit.dim=32 --set dit.ffn_dim=32 --set dit.num_heads=2 --set dit_train.steps=1 \
      --set dit_train.batch=2 --set dit_train.progress=false --set latent_stats_clips=2 \
      --set latent_cache_clips=4 --set sampling.steps=2
  fi
else
  S1=(); S2=(); KD=(--set kd.steps=500); DATA=(); EVAL=()
fi
x() { echo "+ $XTASK $*" >&2; $XTASK "$@"; }
JOBS=${JOBS:-1}
# p LOG ARGS...: x ARGS in the background (at most JOBS at once), output to LOG; `wait_all` joins.
p() {
  local log=$1; shift
  if [ "$JOBS" -le 1 ]; then x "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || exit 1; done
  (x "$@" > "$log" 2>&1 || { echo "FAILED: $* (see $log)" >&2; exit 1; }) &
}
wait_all() { while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || exit 1; done; }

x teacher-data --teacher "$TEACHER" --out "$RUN/teacher-data" --device "$DEVICE" "${DATA[@]}"
data=(--data "$RUN/teacher-data" --device "$DEVICE")

# Stage 1: one student per head size, plus the TM ablation.
for H in 1 2; do
  p "$RUN/s1-h$H.log" adapt-head --teacher "$TEACHER" "${data[@]}" --run-dir "$RUN/s1-h$H.run" \
    --out "$RUN/s1-h$H" --set head.head_blocks=$H "${S1[@]}"
done
p "$RUN/s1-tm-h1.log" adapt-head --teacher "$TEACHER" "${data[@]}" --run-dir "$RUN/s1-tm-h1.run" \
  --out "$RUN/s1-tm-h1" --set head.head_blocks=1 --set train.variant=tm "${S1[@]}"
wait_all

rows=$RUN/rows.toml
{ echo '# written by scripts/results.sh'; echo '[[teacher]]'; echo 'solver = "unipc"'; echo 'steps = 50'; } > "$rows"
row() { printf '[[student]]\nmodel = "%s"\nlabel = "%s"\n%s\n' "$1" "$2" "${3:-}" >> "$rows"; }

# Stage 2, TMD.
for H in 1 2; do for M in 1 2; do for N in 2 4; do
  out=$RUN/tmd-m$M-n$N-h$H
  p "$out.log" distill --input "$RUN/s1-h$H" "${data[@]}" --run-dir "$out.run" --out "$out" \
    --set train.outer_steps=$M --set train.inner_steps=$N "${S2[@]}"
  row "$out" tmd
done; done; done
# The DMD2-v baseline.
for M in 1 2 4; do
  out=$RUN/dmd2v-m$M
  extra=()
  [ $M = 1 ] && extra=("${KD[@]}")
  [ $M = 4 ] && extra=(--set train.outer_shift=5)
  p "$out.log" distill --input "$TEACHER" "${data[@]}" --config configs/distill-dmd2v.toml --run-dir "$out.run" \
    --out "$out" --set train.outer_steps=$M "${extra[@]}" "${S2[@]}"
  row "$out" "dmd2-v$([ $M = 1 ] && echo ' (KD)')"
done
# Ablations at M = 2, N = 2, H = 1.
p "$RUN/abl-nogan.log" distill --input "$RUN/s1-h1" "${data[@]}" --run-dir "$RUN/abl-nogan.run" --out "$RUN/abl-nogan" \
  --set train.gan_weight=0 "${S2[@]}"
row "$RUN/abl-nogan" "tmd (no GAN)"
p "$RUN/abl-tm.log" distill --input "$RUN/s1-tm-h1" "${data[@]}" --run-dir "$RUN/abl-tm.run" --out "$RUN/abl-tm" "${S2[@]}"
row "$RUN/abl-tm" "tmd (TM stage 1)"
p "$RUN/abl-norollout.log" distill --input "$RUN/s1-h1" "${data[@]}" --run-dir "$RUN/abl-norollout.run" --out "$RUN/abl-norollout" \
  --set train.inner_steps=1 "${S2[@]}"
row "$RUN/abl-norollout" "tmd (no rollout)" 'inner_steps = 2'
wait_all

mkdir -p "$(dirname "$OUT")"
x eval --model "$TEACHER" --rows "$rows" --seeds "$SEEDS" --device "$DEVICE" --out "$OUT" \
  --markdown "${OUT%.json}.md" "${EVAL[@]}"
echo "wrote $OUT and ${OUT%.json}.md"
