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
#
# The words of ARGS after a word --s2 go to the stage-2 commands only (a stage-2 key such as
# train.backward_simulation is unknown to stage 1, which refuses it):
#   ARMS="base=;bsim=--s2 --set train.backward_simulation=true" ...
#
# An arm can also set some of results.sh's variables for itself, as VAR=VALUE words among its
# ARGS: CLIPS, BATCH, KD, H, S1, S2, EVAL_INNER or STUDENTS (comma-separated, e.g.
# STUDENTS=tmd-m2: that arm trains only those; the rest of ARGS goes to xtask as before). An
# arm with a CLIPS other than the shared data's trains on its own teacher data,
# runs/results/teacher-data-CLIPS, made in the data phase after the shared one. The clips are
# seeded by index (configs/teacher-data.toml), so 8,192 clips hold the 1,024 of the shared data.
# E.g. the data experiment at M = 2:
#   ARMS="c1k=--set train.outer_shift=2;c8k=CLIPS=8192 --set train.outer_shift=2" ...
#
# S1_FROM=NAME makes an arm share arm NAME's stage 1: it trains no stage 1 of its own, and its
# TMD stage-2 runs start from NAME's students. The two arms' stage-1 arguments (the words before
# --s2, and CLIPS, BATCH, H and S1) must be the same; otherwise the arms are refused.
# Every arm's stage 1 runs (and ends) before any arm's stage 2 in the same call.
#   ARMS="bsim=--s2 --set train.backward_simulation=true;ts1=S1_FROM=bsim --s2 --set ..." ...
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
ARMS=${ARMS:?ARMS is required: ';'-separated NAME=ARGS, e.g. "base=;shift2=--set train.outer_shift=2"}
IFS=';' read -ra arms <<< "$ARMS"
# arm_env ARGS: an arm's VAR=VALUE words (one a line); arm_extra ARGS 1|2: the rest of its ARGS
# before --s2 (both stages) / after it (stage 2 only). Words are split at blanks and never
# expanded as file patterns, so '--set discriminator.feature_blocks=[1,2,3]' arrives as written.
arm_env() { local w ws; read -ra ws <<< "$1"; for w in ${ws[@]+"${ws[@]}"}; do [[ "$w" =~ ^[A-Z][A-Z0-9_]*= ]] && echo "$w"; done; return 0; }
arm_extra() { local w ws o=() part=1; read -ra ws <<< "$1"; for w in ${ws[@]+"${ws[@]}"}; do
    if [ "$w" = --s2 ]; then part=2; elif ! [[ "$w" =~ ^[A-Z][A-Z0-9_]*= ]] && [ $part = "$2" ]; then o+=("$w"); fi
  done; echo "${o[*]}"; }
for a in "${arms[@]}"; do
  name=${a%%=*}
  [[ "$a" == *=* && "$name" =~ ^[A-Za-z0-9_-]+$ ]] \
    || { echo "arms.sh: ARMS: '$a' is not NAME=ARGS with NAME in letters, digits, '-' and '_'" >&2; exit 2; }
  while IFS= read -r w; do
    [[ "${w%%=*}" =~ ^(CLIPS|BATCH|KD|H|S1|S2|EVAL_INNER|STUDENTS|S1_FROM)$ && -n "${w#*=}" ]] || {
      echo "arms.sh: ARMS: arm '$name' sets '$w'; an arm can set CLIPS, BATCH, KD, H, S1, S2, EVAL_INNER, STUDENTS or S1_FROM, each to a value" >&2; exit 2; }
  done < <(arm_env "${a#*=}")
done
# s1_of ARGS: what an arm's stage 1 depends on (its words before --s2, CLIPS, BATCH, H and S1)
s1_of() { echo "$(arm_extra "$1" 1) | $(arm_env "$1" | grep -E '^(CLIPS|BATCH|H|S1)=' | sort | tr '\n' ' ')"; }
# s1_from ARGS: the arm whose stage 1 an arm shares (empty: its own)
s1_from() { arm_env "$1" | sed -n 's/^S1_FROM=//p'; }
for a in "${arms[@]}"; do
  f=$(s1_from "${a#*=}"); [ -n "$f" ] || continue
  ok=0; for b in "${arms[@]}"; do
    [ "${b%%=*}" = "$f" ] && [ "$b" != "$a" ] && [ -z "$(s1_from "${b#*=}")" ] && ok=1; done
  [ $ok = 1 ] || { echo "arms.sh: ARMS: arm '${a%%=*}' sets S1_FROM=$f; it must name another arm that trains its own stage 1" >&2; exit 2; }
  # and the two arms' stage 1 must be the same: the words before --s2 and the variables stage 1
  # reads (its data, batch, head and length)
  for b in "${arms[@]}"; do [ "${b%%=*}" = "$f" ] && fb=${b#*=}; done
  [ "$(s1_of "${a#*=}")" = "$(s1_of "$fb")" ] || {
    echo "arms.sh: ARMS: arm '${a%%=*}' sets S1_FROM=$f, but its stage-1 arguments ('$(s1_of "${a#*=}")') differ from arm '$f''s ('$(s1_of "$fb")'); put stage-2-only words after --s2" >&2; exit 2; }
done
# The arm's own variables (one a line; STUDENTS' commas become spaces), and DATA for an arm with
# a CLIPS other than the shared data's.
arm_vars() { local v c; v=$(arm_env "$1" | sed '/^STUDENTS=/s/,/ /g; s/^S1_FROM=/S1_TAG=/'); [ -z "$v" ] || echo "$v"
  c=$(echo "$v" | sed -n 's/^CLIPS=//p')
  [ -z "$c" ] || [ "$c" = "${CLIPS:-1024}" ] || echo "DATA=runs/results/teacher-data-$c"; }
phases=" ${PHASES:-data s1 s2 eval} "
if [[ "$phases" == *" data "* ]]; then
  PHASES=data OUT=$out bash scripts/gpu/results.sh || exit
  made=" "
  for a in "${arms[@]}"; do
    mapfile -t v < <(arm_vars "${a#*=}")
    d=$(printf '%s\n' "${v[@]}" | sed -n 's/^DATA=//p')
    [ -n "$d" ] && [[ "$made" != *" $d "* ]] || continue
    made="$made$d "
    env "${v[@]}" PHASES=data OUT=$out bash scripts/gpu/results.sh || exit
  done
fi
rest=$(echo "$phases" | sed 's/ data / /; s/^ *//; s/ *$//')
[ -n "$rest" ] || exit 0
# MPS=1: NVIDIA's Multi-Process Service for the arms' processes (scripts/gpu/mps.sh)
if [ "${MPS:-0}" = 1 ]; then . scripts/gpu/mps.sh; mps_start; export MPS=0; fi
cores=$(( $(nproc) / ${#arms[@]} )); [ $cores -lt 1 ] && cores=1
run_arms() { # phases: every arm at once (an arm sharing another's stage 1 leaves s1 out), then wait
  local a name ph v
  for a in "${arms[@]}"; do
    name=${a%%=*}; ph=" $1 "
    [ -z "$(s1_from "${a#*=}")" ] || ph=${ph/ s1 / }
    ph=$(echo $ph); [ -n "$ph" ] || continue
    mapfile -t v < <(arm_vars "${a#*=}")
    env ${v[@]+"${v[@]}"} PHASES="$ph" TAG=$name EXTRA="$(arm_extra "${a#*=}" 1)" EXTRA_S2="$(arm_extra "${a#*=}" 2)" CORES=$cores OUT=$out/$name \
      bash scripts/gpu/results.sh >> "$out/$name.log" 2>&1 &
  done
  wait; }
for a in "${arms[@]}"; do : > "$out/${a%%=*}.log"; done
# stage 1 of every arm first, so that a shared stage 1 is finished before stage 2 reads it
if [[ " $rest " == *" s1 "* ]]; then run_arms s1; rest=$(echo " $rest " | sed 's/ s1 / /; s/^ *//; s/ *$//'); fi
[ -z "$rest" ] || run_arms "$rest"
for a in "${arms[@]}"; do echo "== ${a%%=*}"; tail -n 30 "$out/${a%%=*}.log"; done
