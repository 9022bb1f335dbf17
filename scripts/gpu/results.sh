#!/usr/bin/env bash
# Issue 4's results table in one device call: teacher data, stage 1 for two head sizes, stage 2
# for the TMD students and the DMD2-v baselines (each its own LibTorch process, side by side on
# one card: the bundled world's DiT is bound by host-side op issue, so processes share the card
# well; each gets an equal share of the cores), then one `xtask eval` over every row.
#
#   bash scripts/gpu/results.sh                       # on the GPU machine, carrying
#                                                     # gpu-bin/xtask-tch.xz and TEACHER
#   DEVICE=torch-cpu CLIPS=8 S1=2 S2=2 KD=2 PROMPTS=2 bash scripts/gpu/results.sh   # smoke test
#
# Env: TEACHER (model directory, default assets/world, the bundled teacher), DEVICE (torch-cuda), CLIPS
# (teacher-data clips, 1024), S1 / S2 / KD (stage-1 / stage-2 / KD warm-up steps: 1000 / 1000 /
# 300), S1_SECS / S2_SECS (time limits of the stage-1 / stage-2 runs: a run stopped by its limit
# is written out from its newest checkpoint, every CKPT steps, default 50; the step reached is in
# its log), EVAL_SECS (the eval's limit), PROMPTS (held-out prompts evaluated, 0 = all), SEEDS (2).
# Everything else is the configs' (configs/teacher-data.toml, adapt-head.toml, distill.toml,
# distill-dmd2v.toml); XTASK (the xtask binary; default gpu-bin/xtask-tch.xz, unpacked). Writes
# $OUT/bundled-world.json (+ .md), and every log with both reports in $OUT/results.tar.gz (the
# device tool brings back at most 8 files), with the students named in KEEP (default tmd-m2-h$H)
# as $OUT/NAME.tar.gz; the students stay under runs/results/.
# Smoke-tested on the CPU machine (2026-11-27: every stage exits 0 and the table has its rows).
# The tables in docs/results were made with it on an H100, commands there. The tiny-random model
# cannot be evaluated (its 9-frame clips are not the world's).
#
# Independent training runs (issue 22): SEEDS_TRAIN="0 1 2" trains the four headline students
# (implies MAIN_ONLY=1) once per training seed, each seed in its own run directory
# runs/results/seed-N (`--set train.seed=N` in stage 1, stage 2 and the KD warm-up: the seed draws
# the initial noise, data order and fresh parameters; the teacher data is shared, and the eval's
# sampling seeds are the same for every run). The eval phase scores each seed's students in its
# own eval ($OUT/seed-N.json + .md, side by side; the teacher row in the first seed's only) and
# merges them with `xtask eval-merge` into $OUT/bundled-world.json (+ .md): each row's mean,
# min-max and `training_runs` (with one seed, its report is that table as it is). KEEP names
# students of every seed ($OUT/seed-N-NAME.tar.gz; default none). Unset (the default): one run
# with the configs' seed, in runs/results, as before.
#
# One-key experiments (issue 22's hypotheses): STUDENTS picks which of the four headline students
# are trained and scored (default "tmd-m2 tmd-m1 dmd2v-m1 dmd2v-m2"), or the three-step pair at
# effective NFE 3, tmd-m3 (M = 3, N = 1, head H) and dmd2v-m3 (run only when named); EXTRA is
# appended to every stage-1 and stage-2 command (e.g. "--set train.outer_shift=2"), EXTRA_S2 to
# the stage-2 ones only (e.g. "--set train.backward_simulation=true"); TAG puts the arm's runs
# under runs/results/TAG (the teacher data stays shared in runs/results). Two arms side by side on one
# card: one call with PHASES=data, then per phase both arms at once, each with OUT=$OUT/ARM and
# CORES set to its share of the machine's cores (default all of them).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
TEACHER=${TEACHER:-assets/world}; DEVICE=${DEVICE:-torch-cuda}
CLIPS=${CLIPS:-1024}; S1=${S1:-1000}; S2=${S2:-1000}; KD=${KD:-300}; PROMPTS=${PROMPTS:-0}; SEEDS=${SEEDS:-2}
S1_SECS=${S1_SECS:-100000}; S2_SECS=${S2_SECS:-100000}; EVAL_SECS=${EVAL_SECS:-100000}; CKPT=${CKPT:-50}
# H: the head size of the headline pair (TMD M = 2 and M = 1; default 1); the full set adds the
# other size at M = 2. BATCH: the batch of stage 1, stage 2 and the KD warm-up (default: the configs').
H=${H:-1}; BATCH=${BATCH:-}
[[ "$H" =~ ^[1-9][0-9]*$ ]] || { echo "results.sh: H: '$H' is not a number of blocks (1, 2, ...)" >&2; exit 2; }
Ho=$(( 3 - H ))
SEEDS_TRAIN=${SEEDS_TRAIN:-}; STUDENTS=${STUDENTS:-tmd-m2 tmd-m1 dmd2v-m1 dmd2v-m2}
EXTRA=${EXTRA:-}; EXTRA_S2=${EXTRA_S2:-}; TAG=${TAG:-}; CORES=${CORES:-$(nproc)}
# (split at blanks, never expanded as file patterns: '--set key=[1,2,3]' reaches xtask as written)
read -ra extra <<< "$EXTRA"; read -ra extra_s2 <<< "$EXTRA_S2"
# S1_TAG: the tag whose stage-1 students the TMD stage-2 runs start from (default TAG: their own;
# arms.sh sets it for an arm that shares another arm's stage 1)
S1_TAG=${S1_TAG-$TAG}
for st in $STUDENTS; do case $st in tmd-m2|tmd-m1|tmd-m3|dmd2v-m1|dmd2v-m2|dmd2v-m3) ;;
  *) echo "results.sh: STUDENTS: unknown student '$st' (expected tmd-m2, tmd-m1, tmd-m3, dmd2v-m1, dmd2v-m2, dmd2v-m3)" >&2; exit 2;; esac; done
if [ -n "$SEEDS_TRAIN" ]; then KEEP=${KEEP:-}; MAIN_ONLY=1; else KEEP=${KEEP:-tmd-m2-h$H}; fi
# PHASES: which of "data s1 s2 eval" to run (default all four): a device call is limited to 10 min,
# so a longer run splits into back-to-back calls on the same warm machine, where runs/results stays.
# STORE_DTYPE (f32, or f16 / bf16): the students are re-stored at that dtype (`convert-weights
# --dtype`) before the eval, so the table scores the weights as bundled.
PHASES=${PHASES:-data s1 s2 eval}; STORE_DTYPE=${STORE_DTYPE:-f32}
# TEACHER_ROW=0 leaves the teacher row out of the eval (it is deterministic: every eval of
# assets/world on the 160 held-out prompts x 2 seeds gave 92.7 +- 1.1% and 1,415, and it is the
# eval's longest row); EVAL_INNER: the N of each TMD row (default "2 4").
TEACHER_ROW=${TEACHER_ROW:-1}; EVAL_INNER=${EVAL_INNER:-2 4}
phase() { case " $PHASES " in *" $1 "*) return 0;; *) return 1;; esac; }
# MAIN_ONLY=1: only the runs of the headline comparison (TMD M = 1 and 2 at H = 1 against DMD2-v at
# 1 and 2 steps), each with a larger share of the card and the cores in the same time.
MAIN_ONLY=${MAIN_ONLY:-0}
main() { [ "$MAIN_ONLY" = 1 ]; }
# the runs beside the headline ones (MAIN_ONLY=0) use the other of H = 1 and 2 (3 - H), so there H
# is 1 or 2; with SEEDS_TRAIN or MAIN_ONLY=1 it is any number of blocks the teacher has
main || [ "$H" -le 2 ] || {
  echo "results.sh: H=$H needs SEEDS_TRAIN or MAIN_ONLY=1 (without them the other runs use H = 3 - H)" >&2; exit 2; }
# named NAME: whether NAME is among STUDENTS
named() { case " $STUDENTS " in *" $1 "*) return 0;; *) return 1;; esac; }
# wants NAME: whether student NAME is trained: a headline student when named or unless MAIN_ONLY,
# the three-step pair (*-m3) only when named
wants() { case $1 in *-m3) named "$1"; return;; esac; main || return 0; named "$1"; }
# The training runs: "-" is the configs' seed in runs/results; with SEEDS_TRAIN, one per seed.
seeds=${SEEDS_TRAIN:--}; nseeds=$(echo $seeds | wc -w)
dir_of() { # seed [tag, default TAG]
  local t=${2-$TAG} b; b=runs/results${t:+/$t}; if [ "$1" = - ]; then echo $b; else echo $b/seed-$1; fi; }
name_of() { if [ "$1" = - ]; then echo "$2"; else echo "seed-$1-$2"; fi; }
seed_args() { [ "$1" = - ] || echo "--set train.seed=$1"; }
n1=4; n2=8; wants tmd-m3 && n1=$(( n1 + 1 )) && n2=$(( n2 + 1 )); wants dmd2v-m3 && n2=$(( n2 + 1 ))
if main; then n1=0; n2=0; for st in $STUDENTS; do n2=$(( n2 + 1 )); case $st in tmd-*) n1=$(( n1 + 1 ));; esac; done; fi
n1=$(( n1 * nseeds )); n2=$(( n2 * nseeds ))
x=${XTASK:-/tmp/xtask-tch}; [ -x $x ] || { xz -dc gpu-bin/xtask-tch.xz > $x && chmod +x $x; }
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64:${torch_lib:-}
# MPS=1: NVIDIA's Multi-Process Service, so that the processes sharing the card run side by side
# (scripts/gpu/mps.sh; used for docs/results/m1-pair, where the runs were faster than without it)
if [ "${MPS:-0}" = 1 ]; then . scripts/gpu/mps.sh; mps_start; fi
# DATA: the teacher-data directory (default runs/results/teacher-data; arms.sh gives an arm with
# its own CLIPS its own)
r=runs/results; mkdir -p $r; data=${DATA:-$r/teacher-data}
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
threads() { local n=$(( CORES / ($1 > 0 ? $1 : 1) )); [ $n -lt 1 ] && n=1; export OMP_NUM_THREADS=$n RAYON_NUM_THREADS=$n; }
quiet() { tr '\r' '\n' | grep -v '^\s*$' | tail -3; }
guarded() { # secs steps run_dir log command...: the command with train.steps, stopped after secs
  # and then written out from its newest checkpoint (train.steps set to that step)
  local secs=$1 steps=$2 run=$3 log=$4; shift 4
  timeout --signal=INT "$secs" "$@" --set train.steps="$steps" --set train.checkpoint.every="$CKPT" > "$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] || return $rc
  # stage 1 checkpoints in run_dir/, stage 2 in run_dir/stage2/ (after the KD warm-up's run_dir/kd/)
  local last; last=$(ls -d "$run"/step-* "$run"/stage2/step-* 2>/dev/null | grep -v "\.tmp$" | sort -t- -k2 | tail -1)
  [ -n "$last" ] || { echo "stopped after $secs s before the first checkpoint" >> "$log"; return 124; }
  last=$((10#${last##*step-}))
  echo "== stopped after $secs s; written out from step $last of $steps" >> "$log"
  "$@" --set train.steps="$last" --set train.checkpoint.every="$CKPT" >> "$log" 2>&1; }

if phase data; then
stamp "teacher data: $CLIPS clips"; threads 1
dlog=$out/$(basename "$data").log
$x teacher-data --device $DEVICE --teacher $TEACHER --out $data --set clips=$CLIPS > $dlog 2>&1; quiet < $dlog
fi

if phase s1; then
s1_ms=""; for m in 2 1 3; do wants tmd-m$m && s1_ms="$s1_ms, $m"; done
stamp "stage 1 (TM-MeanFlow, $S1 steps): H = $H at M = ${s1_ms#, }$(main || echo "; H = $Ho at M = 2 and the pure TM ablation")"; threads $n1
s1() { # seed, name, args
  local d; d=$(dir_of "$1"); mkdir -p "$d"
  # shellcheck disable=SC2086
  guarded "$S1_SECS" "$S1" $d/run-$2 $out/$(name_of "$1" "$2").log $x adapt-head --device $DEVICE \
    --teacher $TEACHER --data $data --run-dir $d/run-$2 --out $d/$2 $3 $(seed_args "$1") \
    ${BATCH:+--set train.batch=$BATCH} ${extra[@]+"${extra[@]}"}
  local rc=$?; echo "$(name_of "$1" "$2"): exit $rc"; }
for sd in $seeds; do
  wants tmd-m2 && s1 $sd s1-h$H "--set head.head_blocks=$H" &
  wants tmd-m1 && s1 $sd s1-h$H-m1 "--set head.head_blocks=$H --set train.outer_steps=1" &
  wants tmd-m3 && s1 $sd s1-h$H-m3 "--set head.head_blocks=$H --set train.outer_steps=3" &
  main || { s1 $sd s1-h$Ho "--set head.head_blocks=$Ho" & s1 $sd s1-h1-tm "--set head.head_blocks=1 --set train.variant=tm" & }
done
wait
fi

if phase s2; then
stamp "stage 2 ($S2 iterations): TMD and DMD2-v, side by side"; threads $n2
s2() { # seed, name, input (a stage-1 name in the seed's directory, or the teacher), args
  local d in; d=$(dir_of "$1"); in=$3; [ "$in" = "$TEACHER" ] || in=$(dir_of "$1" "$S1_TAG")/$3
  # shellcheck disable=SC2086
  guarded "$S2_SECS" "$S2" $d/run-$2 $out/$(name_of "$1" "$2").log $x distill --device $DEVICE \
    --input $in --data $data --run-dir $d/run-$2 --out $d/$2 $4 $(seed_args "$1") \
    ${BATCH:+--set train.batch=$BATCH} ${extra[@]+"${extra[@]}"} ${extra_s2[@]+"${extra_s2[@]}"}
  local rc=$?; echo "$(name_of "$1" "$2"): exit $rc"; }
for sd in $seeds; do
  wants tmd-m2 && s2 $sd tmd-m2-h$H s1-h$H "--set train.outer_steps=2 --set train.inner_steps=2" &
  wants tmd-m1 && s2 $sd tmd-m1-h$H s1-h$H-m1 "--set train.outer_steps=1 --set train.inner_steps=4" &
  wants dmd2v-m1 && s2 $sd dmd2v-m1 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=1 --set kd.steps=$KD ${BATCH:+--set kd.batch=$BATCH}" &
  wants dmd2v-m2 && s2 $sd dmd2v-m2 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=2" &
  wants tmd-m3 && s2 $sd tmd-m3-h$H s1-h$H-m3 "--set train.outer_steps=3 --set train.inner_steps=1" &
  wants dmd2v-m3 && s2 $sd dmd2v-m3 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=3" &
  main || {
    s2 $sd tmd-m2-h$Ho s1-h$Ho "--set train.outer_steps=2 --set train.inner_steps=2" &
    s2 $sd tmd-m2-h1-nogan s1-h1 "--set train.outer_steps=2 --set train.inner_steps=2 --set train.gan_weight=0" &
    s2 $sd tmd-m2-h1-tm s1-h1-tm "--set train.outer_steps=2 --set train.inner_steps=2" &
    s2 $sd dmd2v-m4 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=4" &
  }
done
wait
fi

if phase eval; then
if [ "$STORE_DTYPE" != f32 ]; then
  stamp "re-storing the students as $STORE_DTYPE"
  for sd in $seeds; do for d in $(dir_of $sd)/tmd-* $(dir_of $sd)/dmd2v-*; do
    # (always: the manifest's dtype is the teacher's, and student/model.bpk is written as f32)
    [ -f "$d/manifest.json" ] || continue
    rm -rf "$d.recast" && $x convert-weights --src "$d" --out "$d.recast" --dtype "$STORE_DTYPE" \
      >> $out/recast.log 2>&1 && rm -rf "$d" && mv "$d.recast" "$d" || echo "recasting $d failed" >&2
  done; done
fi
stamp "eval"; threads "$nseeds"
hs=$(printf '%s\n' 1 2 "$H" | sort -un)  # the head sizes whose rows are looked for (H may be 3 or more)
row() { # model [label] [outer inner]: a student row, when that student was written
  [ -f "$1/manifest.json" ] || { echo "no student at $1: its row is left out" >&2; return; }
  printf '[[student]]\nmodel = "%s"\n' "$1"
  [ -n "${2:-}" ] && printf 'label = "%s"\n' "$2"
  [ -n "${3:-}" ] && printf 'outer_steps = %d\ninner_steps = %d\n' "$3" "$4"
  return 0; }
evaluate() { # seed, teacher row (1/0): the eval of one training run's students
  local d name; d=$(dir_of "$1"); name=bundled-world; [ "$1" = - ] || name=seed-$1
  { [ "$2" = 1 ] && printf '[[teacher]]\nsolver = "unipc"\nsteps = 50\n'
    for h in $hs; do for m in 1 2; do for n in $EVAL_INNER; do row $d/tmd-m$m-h$h "" $m $n; done; done; done
    row $d/tmd-m2-h1-nogan "tmd (no GAN)"; row $d/tmd-m2-h1-tm "tmd (TM, r = s)"
    for h in $hs; do row $d/tmd-m3-h$h "" 3 1; done
    for m in 1 2 3 4; do row $d/dmd2v-m$m; done; } > $d/rows.toml 2> $out/$(name_of "$1" rows).log
  timeout "$EVAL_SECS" $x eval --device $DEVICE --model $TEACHER --rows $d/rows.toml --limit $PROMPTS \
    --seeds $SEEDS --out $out/$name.json --markdown $out/$name.md > $out/$(name_of "$1" eval).log 2>&1
  local rc=$?; echo "$(name_of "$1" eval): exit $rc"; }
first=$TEACHER_ROW
for sd in $seeds; do evaluate $sd $first & first=0; done
wait
if [ -n "$SEEDS_TRAIN" ] && [ "$nseeds" -ge 2 ]; then
  # shellcheck disable=SC2046
  $x eval-merge --runs $(for sd in $seeds; do echo $out/seed-$sd.json; done) \
    --out $out/bundled-world.json --markdown $out/bundled-world.md > $out/eval-merge.log 2>&1
  echo "eval-merge: exit $?"
elif [ -n "$SEEDS_TRAIN" ]; then
  # one training seed: nothing to merge, its report is the table
  sd=$(echo $seeds); for e in json md; do cp $out/seed-$sd.$e $out/bundled-world.$e 2>/dev/null; done
fi
cat $out/bundled-world.md 2>/dev/null
stamp done
for sd in $seeds; do for n in $KEEP; do
  d=$(dir_of $sd); [ -d $d/$n ] && tar czf - $d/$n | split -b 15M - $out/$(name_of $sd $n).tar.gz.
done; done
fi
# (an earlier call's results.tar.gz in the same $OUT is kept in the new one: its files are
# unpacked first, without replacing this call's)
(cd "$out" && shopt -s nullglob && { [ ! -f results.tar.gz ] || tar xzf results.tar.gz --skip-old-files; } &&
 f=(./*.log ./bundled-world.* ./seed-*.json ./seed-*.md) &&
 [ ${#f[@]} -gt 0 ] && tar czf results.tar.gz "${f[@]}" && rm -f "${f[@]}")
