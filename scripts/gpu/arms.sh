#!/usr/bin/env bash
# A one-key experiment of issue 22: the same training runs (scripts/gpu/results.sh with
# SEEDS_TRAIN) in several arms side by side on one card, each arm with its own extra arguments to
# every stage-1 and stage-2 command, sharing one set of teacher data.
#
#   ARMS="base=;shift2=--set train.outer_shift=2" SEEDS_TRAIN="0 1 2" STUDENTS="tmd-m2 dmd2v-m2" \
#     H=2 S1=20000 S1_SECS=400 CKPT=100 PHASES="data s1" bash scripts/gpu/arms.sh
#   ... PHASES=s2 S2=40000 S2_SECS=520 ...; then PHASES=eval EVAL_SECS=500 STORE_DTYPE=f16 ...
#
# ARMS: ';'-separated NAME=ARGS (NAME in letters, digits, '-' and '_'; ARGS may be empty: the
# configs' recipe). The data phase runs once, before the arms; each other phase runs every arm at
# once, with an equal share of the cores, its runs under runs/results/NAME, its report and logs
# under $OUT/NAME and its progress in $OUT/NAME.log. Every other variable is results.sh's and
# reaches every arm; MPS=1 starts NVIDIA's Multi-Process Service first (scripts/gpu/mps.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
ARMS=${ARMS:?ARMS is required: ';'-separated NAME=ARGS, e.g. "base=;shift2=--set train.outer_shift=2"}
IFS=';' read -ra arms <<< "$ARMS"
for a in "${arms[@]}"; do
  name=${a%%=*}
  [[ "$a" == *=* && "$name" =~ ^[A-Za-z0-9_-]+$ ]] \
    || { echo "arms.sh: ARMS: '$a' is not NAME=ARGS with NAME in letters, digits, '-' and '_'" >&2; exit 2; }
done
phases=" ${PHASES:-data s1 s2 eval} "
if [[ "$phases" == *" data "* ]]; then
  PHASES=data OUT=$out bash scripts/gpu/results.sh || exit
fi
rest=$(echo "$phases" | sed 's/ data / /; s/^ *//; s/ *$//')
[ -n "$rest" ] || exit 0
# MPS=1: NVIDIA's Multi-Process Service for the arms' processes (scripts/gpu/mps.sh)
if [ "${MPS:-0}" = 1 ]; then . scripts/gpu/mps.sh; mps_start; export MPS=0; fi
cores=$(( $(nproc) / ${#arms[@]} )); [ $cores -lt 1 ] && cores=1
for a in "${arms[@]}"; do
  name=${a%%=*}
  PHASES="$rest" TAG=$name EXTRA="${a#*=}" CORES=$cores OUT=$out/$name \
    bash scripts/gpu/results.sh > "$out/$name.log" 2>&1 &
done
wait
for a in "${arms[@]}"; do echo "== ${a%%=*}"; tail -n 30 "$out/${a%%=*}.log"; done
