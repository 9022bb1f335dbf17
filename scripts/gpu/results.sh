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
# Env: TEACHER (model directory, default assets/world-teacher), DEVICE (torch-cuda), CLIPS
# (teacher-data clips, 1024), S1 / S2 / KD (stage-1 / stage-2 / KD warm-up steps: 1000 / 1000 /
# 300), PROMPTS (held-out prompts evaluated, 0 = all), SEEDS (2). Everything else is the configs'
# (configs/teacher-data.toml, adapt-head.toml, distill.toml, distill-dmd2v.toml). Writes
# $OUT/bundled-world.json (+ .md) and each stage's log; the students stay under runs/results/.
# Smoke-tested on the CPU machine (2026-11-27, TEACHER = the 12,500-step world teacher, CLIPS=4,
# S1=S2=KD=2, PROMPTS=1: every stage exits 0 and the table has its 12 rows, in 75 s); not yet run
# on the GPU. The tiny-random model cannot be evaluated (its 9-frame clips are not the world's).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
TEACHER=${TEACHER:-assets/world-teacher}; DEVICE=${DEVICE:-torch-cuda}
CLIPS=${CLIPS:-1024}; S1=${S1:-1000}; S2=${S2:-1000}; KD=${KD:-300}; PROMPTS=${PROMPTS:-0}; SEEDS=${SEEDS:-2}
x=/tmp/xtask-tch; [ -x $x ] || { xz -dc gpu-bin/xtask-tch.xz > $x && chmod +x $x; }
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64:${torch_lib:-}
r=runs/results; mkdir -p $r
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
threads() { local n=$(( $(nproc) / $1 )); [ $n -lt 1 ] && n=1; export OMP_NUM_THREADS=$n RAYON_NUM_THREADS=$n; }
quiet() { tr '\r' '\n' | grep -v '^\s*$' | tail -3; }

stamp "teacher data: $CLIPS clips"; threads 1
$x teacher-data --device $DEVICE --teacher $TEACHER --out $r/teacher-data --set clips=$CLIPS \
  > $out/teacher-data.log 2>&1; quiet < $out/teacher-data.log

stamp "stage 1 (TM-MeanFlow, $S1 steps): H = 1, 2 at M = 2, H = 1 at M = 1, the pure TM ablation"; threads 4
s1() { # name, args
  $x adapt-head --device $DEVICE --teacher $TEACHER --data $r/teacher-data --run-dir $r/run-$1 \
    --out $r/$1 --set train.steps=$S1 --set train.checkpoint_every=$S1 $2 > $out/$1.log 2>&1
  echo "$1: exit $?"; }
s1 s1-h1 "--set head.head_blocks=1" & s1 s1-h2 "--set head.head_blocks=2" &
s1 s1-h1-m1 "--set head.head_blocks=1 --set train.outer_steps=1" &
s1 s1-h1-tm "--set head.head_blocks=1 --set train.variant=tm" & wait

stamp "stage 2 ($S2 iterations): TMD and DMD2-v, side by side"; threads 8
s2() { # name, input, args
  $x distill --device $DEVICE --input $2 --data $r/teacher-data --run-dir $r/run-$1 --out $r/$1 \
    --set train.steps=$S2 --set train.checkpoint_every=$S2 $3 > $out/$1.log 2>&1
  echo "$1: exit $?"; }
s2 tmd-m2-h1 $r/s1-h1 "--set train.outer_steps=2 --set train.inner_steps=2" &
s2 tmd-m1-h1 $r/s1-h1-m1 "--set train.outer_steps=1 --set train.inner_steps=4" &
s2 tmd-m2-h2 $r/s1-h2 "--set train.outer_steps=2 --set train.inner_steps=2" &
s2 tmd-m2-h1-nogan $r/s1-h1 "--set train.outer_steps=2 --set train.inner_steps=2 --set train.gan_weight=0" &
s2 tmd-m2-h1-tm $r/s1-h1-tm "--set train.outer_steps=2 --set train.inner_steps=2" &
s2 dmd2v-m1 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=1 --set kd.steps=$KD" &
s2 dmd2v-m2 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=2" &
s2 dmd2v-m4 $TEACHER "--config configs/distill-dmd2v.toml --set train.outer_steps=4" &
wait

stamp "eval"; threads 1
cat > $r/rows.toml <<ROWS
[[teacher]]
solver = "unipc"
steps = 50
$(for m in 1 2; do for n in 2 4; do printf '[[student]]\nmodel = "%s"\nouter_steps = %d\ninner_steps = %d\n' $r/tmd-m$m-h1 $m $n; done; done)
$(for n in 2 4; do printf '[[student]]\nmodel = "%s"\nouter_steps = 2\ninner_steps = %d\n' $r/tmd-m2-h2 $n; done)
$(printf '[[student]]\nmodel = "%s"\nlabel = "tmd (no GAN)"\n' $r/tmd-m2-h1-nogan)
$(printf '[[student]]\nmodel = "%s"\nlabel = "tmd (TM, r = s)"\n' $r/tmd-m2-h1-tm)
$(for m in 1 2 4; do printf '[[student]]\nmodel = "%s"\n' $r/dmd2v-m$m; done)
ROWS
$x eval --device $DEVICE --model $TEACHER --rows $r/rows.toml --limit $PROMPTS --seeds $SEEDS \
  --out $out/bundled-world.json --markdown $out/bundled-world.md > $out/eval.log 2>&1
echo "eval: exit $?"; cat $out/bundled-world.md 2>/dev/null
stamp done
