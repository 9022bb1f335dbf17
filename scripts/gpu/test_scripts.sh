#!/usr/bin/env bash
# Tests of the device scripts' orchestration (results.sh, arms.sh) on any machine, in seconds: a
# stand-in xtask records every command it is given and writes what the real one would (student
# directories, checkpoints, reports), so the checks read which commands ran with which arguments.
# It runs in a temporary copy of scripts/gpu; nothing under the checkout's runs/ is touched.
#
#   bash scripts/gpu/test_scripts.sh        # CI runs it (.ci/run)
set -uo pipefail
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/scripts" && cp -r "$src" "$tmp/scripts/gpu"
cd "$tmp" || exit 1
fails=0
check() { # description, command...: the command must succeed
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1" >&2; fails=$((fails + 1)); fi; }
has() { grep -qE -- "$2" "$1"; }
hasnt() { ! grep -qE -- "$2" "$1"; }

# The stand-in xtask: one line per command in $STUB_LOG. A training command given
# train.steps=40000 leaves a finished step-000100 and an unfinished step-000200.tmp checkpoint
# and waits to be stopped, as a long run does when the time guard stops it. A command given
# stub.fail=1, or an eval given --limit 99, fails with status 3.
cat > xtask-stub <<'EOF'
#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
cmd=$1; shift
[[ " $* " == *" stub.fail=1 "* || ( $cmd = eval && " $* " == *" --limit 99 "* ) ]] && { echo "stub: failing" >&2; exit 3; }
arg() { local k=$1; shift; while [ $# -gt 1 ]; do [ "$1" = "$k" ] && { echo "$2"; return; }; shift; done; }
case $cmd in
  teacher-data) mkdir -p "$(arg --out "$@")";;
  adapt-head|distill|convert-weights)
    o=$(arg --out "$@"); run=$(arg --run-dir "$@")
    if [[ " $* " == *" train.steps=40000 "* ]]; then
      [ "$cmd" = distill ] && run=$run/stage2
      mkdir -p "$run/step-000100" "$run/step-000200.tmp"; sleep 30; exit 130
    fi
    mkdir -p "$o" && echo '{}' > "$o/manifest.json";;
  eval|eval-merge) echo '{}' > "$(arg --out "$@")"; echo '| stub |' > "$(arg --markdown "$@")";;
esac
EOF
chmod +x xtask-stub
export XTASK=$tmp/xtask-stub DEVICE=torch-cpu

# 1. Two arms, one with its own teacher data and its own batch, the whole pipeline.
export STUB_LOG=$tmp/arms.log; : > "$STUB_LOG"
ARMS="a=--set train.outer_shift=2 --s2 --set train.backward_simulation=true;b=CLIPS=64 BATCH=8 --set train.outer_shift=5" SEEDS_TRAIN="0 1" \
  STUDENTS="tmd-m2 dmd2v-m2" CLIPS=32 OUT=$tmp/out1 bash scripts/gpu/arms.sh > arms.out 2>&1
check "arms.sh exits 0" test $? -eq 0
check "the shared teacher data, 32 clips" has arms.log "^teacher-data .*--out runs/results/teacher-data --set clips=32$"
check "arm b's own teacher data, 64 clips" has arms.log "^teacher-data .*--out runs/results/teacher-data-64 --set clips=64$"
check "teacher data made twice, no more" test "$(grep -c '^teacher-data' arms.log)" -eq 2
check "arm a trains on the shared data with its arguments" \
  has arms.log "^distill .*--data runs/results/teacher-data --run-dir runs/results/a/seed-1/run-tmd-m2-h1 .*--set train.seed=1 --set train.outer_shift=2 "
check "arm b trains on its own data with its batch and arguments" \
  has arms.log "^distill .*--data runs/results/teacher-data-64 --run-dir runs/results/b/seed-0/run-dmd2v-m2 .*--set train.batch=8 --set train.outer_shift=5 "
check "arm b's stage 1 too" has arms.log "^adapt-head .*--data runs/results/teacher-data-64 .*--set train.batch=8 --set train.outer_shift=5 "
check "no VAR=VALUE word reaches xtask" hasnt arms.log "CLIPS=|BATCH="
check "arm a's words after --s2 reach its stage 2" \
  has arms.log "^distill .*--run-dir runs/results/a/seed-0/run-dmd2v-m2 .*--set train.outer_shift=2 --set train.backward_simulation=true "
check "and not its stage 1, nor arm b, nor the word --s2 itself" \
  test "$(grep -c 'backward_simulation' arms.log)" -eq 4 -a "$(grep -c -- '--s2' arms.log)" -eq 0
check "arm a keeps the shared batch" hasnt arms.log "run-dir runs/results/a/.*train.batch"
check "each arm evaluates each seed and merges" test "$(grep -c '^eval ' arms.log)" -eq 4 -a "$(grep -c '^eval-merge ' arms.log)" -eq 2
check "each arm's report comes back" test -f out1/a/results.tar.gz -a -f out1/b/results.tar.gz
check "both teacher-data logs in one results.tar.gz" \
  test "$(tar tzf out1/results.tar.gz | grep -c 'teacher-data')" -eq 2

# 1b. An arm's own students (comma-separated); the other arm keeps the shared STUDENTS.
: > "$STUB_LOG"
ARMS="t=STUDENTS=tmd-m1,dmd2v-m1;u=" SEEDS_TRAIN="0" STUDENTS="tmd-m2" CLIPS=32 PHASES="data s1 s2" \
  OUT=$tmp/out1b bash scripts/gpu/arms.sh > arms.out 2>&1
check "arms.sh with an arm's STUDENTS exits 0" test $? -eq 0
check "arm t trains its two students" test "$(grep -c '^distill .*runs/results/t/' arms.log)" -eq 2
check "arm t's TMD is at M = 1" has arms.log "^distill .*--run-dir runs/results/t/seed-0/run-tmd-m1-h1 "
check "arm t's DMD2-v is the 1-step one" has arms.log "^distill .*--run-dir runs/results/t/seed-0/run-dmd2v-m1 "
check "arm u trains the shared students only" \
  test "$(grep -c '^distill .*runs/results/u/' arms.log)" -eq 1 -a "$(grep -c '^distill .*runs/results/u/seed-0/run-tmd-m2-h1 ' arms.log)" -eq 1
check "no STUDENTS word reaches xtask" hasnt arms.log "STUDENTS"
# the three-step pair, named only: TMD M = 3 N = 1 from a stage 1 at M = 3, DMD2-v 3-step
: > "$STUB_LOG"
SEEDS_TRAIN="0" STUDENTS="tmd-m3 dmd2v-m3" H=2 CLIPS=8 OUT=$tmp/out1m3 bash scripts/gpu/results.sh > arms.out 2>&1
check "three steps: results.sh exits 0" test $? -eq 0
check "three steps: stage 1 at M = 3" has arms.log "^adapt-head .*--out runs/results/seed-0/s1-h2-m3 .*train.outer_steps=3"
check "three steps: TMD M = 3 N = 1 from it" \
  has arms.log "^distill .*--input runs/results/seed-0/s1-h2-m3 .*--out runs/results/seed-0/tmd-m3-h2 .*train.outer_steps=3 --set train.inner_steps=1"
check "three steps: DMD2-v 3-step" has arms.log "^distill .*--out runs/results/seed-0/dmd2v-m3 .*distill-dmd2v.toml --set train.outer_steps=3"
check "three steps: only those two" test "$(grep -c '^distill' arms.log)" -eq 2 -a "$(grep -c '^adapt-head' arms.log)" -eq 1
check "three steps: scored at M = 3, N = 1" \
  test "$(tr '\n' ' ' < runs/results/seed-0/rows.toml | grep -cE 'tmd-m3-h2" outer_steps = 3 inner_steps = 1 .*dmd2v-m3"')" -eq 1
# a flow head of three blocks: trained, and scored
: > "$STUB_LOG"
SEEDS_TRAIN="0" STUDENTS="tmd-m2" H=3 CLIPS=8 OUT=$tmp/out1h3 bash scripts/gpu/results.sh > arms.out 2>&1
check "H = 3: results.sh exits 0" test $? -eq 0
check "H = 3: stage 1 with three head blocks" has arms.log "^adapt-head .*--out runs/results/seed-0/s1-h3 .*head.head_blocks=3"
check "H = 3: its student is scored" has runs/results/seed-0/rows.toml 'model = "runs/results/seed-0/tmd-m2-h3"'
H=3 OUT=$tmp/out1h3 bash scripts/gpu/results.sh > bad.out 2>&1
check "H = 3 beside the other-H runs exits 2, naming H" test $? -eq 2 -a -n "$(grep "H=3 needs SEEDS_TRAIN" bad.out)"
H=x SEEDS_TRAIN="0" OUT=$tmp/out1h3 bash scripts/gpu/results.sh > bad.out 2>&1
check "a bad H exits 2, naming it" test $? -eq 2 -a -n "$(grep "H: 'x'" bad.out)"
SEEDS_TRAIN="0" STUDENTS="tmd-m4" OUT=$tmp/out1m3 bash scripts/gpu/results.sh > bad.out 2>&1
check "an unknown student exits 2, naming it" test $? -eq 2 -a -n "$(grep "unknown student 'tmd-m4'" bad.out)"
# one training seed: its eval is the table, with no merge
: > "$STUB_LOG"
SEEDS_TRAIN="3" STUDENTS="tmd-m2" CLIPS=8 OUT=$tmp/out1d bash scripts/gpu/results.sh > arms.out 2>&1
check "one seed: results.sh exits 0" test $? -eq 0
check "one seed: no eval-merge" hasnt arms.log "^eval-merge"
check "one seed: its report is the table" test "$(tar tzf out1d/results.tar.gz | grep -cE '^\./(bundled-world|seed-3)\.json$')" -eq 2

# 1d. Each run's report line carries that run's own exit status.
: > "$STUB_LOG"
ARMS="f=--s2 --set stub.fail=1" SEEDS_TRAIN="0" STUDENTS="tmd-m2" CLIPS=8 PROMPTS=99 \
  OUT=$tmp/out1f bash scripts/gpu/arms.sh > arms.out 2>&1
check "a failed stage-2 run reports its status" has arms.out "^seed-0-tmd-m2-h1: exit 3$"
check "a failed eval reports its status" has arms.out "^seed-0-eval: exit 3$"
check "a stage-1 run that finished reports 0" has arms.out "^seed-0-s1-h1: exit 0$"
# A list value reaches xtask as written, even where a file matches it as a pattern.
: > "$STUB_LOG"; touch "x=1"
ARMS="l=--set y=[0,1] --s2 --set x=[1,2,3]" SEEDS_TRAIN="0" STUDENTS="tmd-m2" CLIPS=8 PHASES="data s1 s2" \
  OUT=$tmp/out1l bash scripts/gpu/arms.sh > arms.out 2>&1
check "a bracketed list reaches stage 1 and stage 2 as written" \
  test "$(grep -c -- '--set y=\[0,1\]' arms.log)" -eq 2 -a "$(grep -c -- '--set x=\[1,2,3\]' arms.log)" -eq 1
rm -f "x=1"

# 1c. An arm sharing another's stage 1: no stage 1 of its own, its TMD starts from the other's,
# and the stage 1 it reads ends before its stage 2 starts (one call, both phases).
: > "$STUB_LOG"
ARMS="a=--set train.outer_shift=2;b=S1_FROM=a --set train.outer_shift=2 --s2 --set train.t_shift=1" \
  SEEDS_TRAIN="0 1" STUDENTS="tmd-m2 dmd2v-m2" CLIPS=32 PHASES="data s1 s2" OUT=$tmp/out1c \
  bash scripts/gpu/arms.sh > arms.out 2>&1
check "arms.sh with S1_FROM exits 0" test $? -eq 0
check "stage 1 for arm a only, once per seed" \
  test "$(grep -c '^adapt-head' arms.log)" -eq 2 -a "$(grep -c '^adapt-head .*runs/results/a/' arms.log)" -eq 2
check "arm b's TMD starts from arm a's stage 1" \
  has arms.log "^distill .*--input runs/results/a/seed-1/s1-h1 .*--run-dir runs/results/b/seed-1/run-tmd-m2-h1 .*train.t_shift=1"
check "arm a's TMD from its own" has arms.log "^distill .*--input runs/results/a/seed-0/s1-h1 .*--run-dir runs/results/a/seed-0/"
check "arm b's DMD2-v from the teacher" has arms.log "^distill .*--input assets/world .*--run-dir runs/results/b/seed-0/run-dmd2v-m2 "
check "every stage 1 before any stage 2" \
  test "$(grep -n '^adapt-head' arms.log | tail -1 | cut -d: -f1)" -lt "$(grep -n '^distill' arms.log | head -1 | cut -d: -f1)"
check "no S1_FROM or S1_TAG word reaches xtask" hasnt arms.log "S1_FROM|S1_TAG"
check "arm b's log keeps its stage-2 part" has out1c/b.log "stage 2"

# 2. A bad arm is refused before anything runs, naming the arm and the word.
: > "$STUB_LOG"
ARMS="a=;b=FOO=1" OUT=$tmp/out2 bash scripts/gpu/arms.sh > bad.out 2>&1
check "an unknown arm variable exits 2" test $? -eq 2
check "the refusal names the arm and the word" has bad.out "arm 'b' sets 'FOO=1'"
check "nothing ran" test ! -s arms.log
# a bad word that a file matches as a pattern is named as written, not as the file
touch "FOO=1x"
ARMS="a=;b=FOO=1*" OUT=$tmp/out2 bash scripts/gpu/arms.sh > bad.out 2>&1
check "a bad word with a pattern exits 2" test $? -eq 2
check "and is named as written" has bad.out "arm 'b' sets 'FOO=1\\*'"
rm -f "FOO=1x"
ARMS="a=;b c=" OUT=$tmp/out2 bash scripts/gpu/arms.sh > bad.out 2>&1
check "an arm name with a space exits 2" test $? -eq 2
for bad in "a=S1_FROM=c;b=" "a=S1_FROM=a;b=" "a=S1_FROM=b;b=S1_FROM=a"; do
  ARMS="$bad" OUT=$tmp/out2 bash scripts/gpu/arms.sh > bad.out 2>&1
  check "S1_FROM naming no arm, itself or a sharing arm exits 2 ($bad)" test $? -eq 2
  check "and names the arm" has bad.out "arm 'a' sets S1_FROM"
done
for bad in "a=--set train.outer_shift=2;b=S1_FROM=a --set train.outer_shift=3" \
           "a=H=1;b=S1_FROM=a H=2" "a=--s2 --set x=1;b=S1_FROM=a CLIPS=64"; do
  ARMS="$bad" OUT=$tmp/out2 bash scripts/gpu/arms.sh > bad.out 2>&1
  check "S1_FROM with other stage-1 arguments exits 2 ($bad)" test $? -eq 2
  check "and names both arms" has bad.out "arm 'b' sets S1_FROM=a, but its stage-1 arguments .* differ from arm 'a'"
done
check "still nothing ran" test ! -s arms.log

# 3. The time guard: a stopped run is written out from its newest finished checkpoint, never
# from an unfinished step-N.tmp.
export STUB_LOG=$tmp/guard.log; : > "$STUB_LOG"
STUDENTS="tmd-m2" SEEDS_TRAIN="0" CLIPS=8 S1=40000 S1_SECS=1 PHASES="data s1" OUT=$tmp/out3 \
  bash scripts/gpu/results.sh > guard.out 2>&1
check "results.sh exits 0 after the guard" test $? -eq 0
check "stopped, then written out from step 100" \
  has guard.log "^adapt-head .*--set train.steps=100 --set train.checkpoint.every=50$"
check "never from the unfinished step 200" hasnt guard.log "train.steps=200 "

if [ $fails -gt 0 ]; then
  echo "$fails check(s) failed; the scripts' output:" >&2
  for f in arms.out bad.out guard.out; do echo "== $f" >&2; cat "$f" >&2; done
  exit 1
fi
echo "all checks passed"
