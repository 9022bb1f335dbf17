#!/usr/bin/env bash
# Issue 19, section 2 on one GPU: distil the bundled world's light decoder longer than the CPU can
# (docs/results/light-decoder.md), for two presets side by side, store each as f16 like the bundled
# weights, and score the bundled student's clips decoded by each and by the full VAE (all 160
# held-out prompts x 2 seeds) in one eval.
#
# Build here (bash scripts/gpu/build.sh --pack), then in ONE device call carrying gpu-bin:
#   bash scripts/gpu/light_decoder.sh
# Writes $OUT/light-decoder.json (eval rows + each run's quality.json and timings) and
# $OUT/light-decoder.md, and the decoders themselves as $OUT/decoder-light-<preset>.tar
# (f16 weights, tens of KB), for assets/.
#
# Budget (whole call under the device tool's 600 s): CLIPS training clips (1024) and 48 held-out
# ones are encoded by the world VAE; each preset's run is timed for CALIB steps, then extended to
# the steps that fit TRAIN_SECS (default 300) with a cosine decay over its last 40%.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
# WORK: where latents, runs and models go. Default: a fresh folder per call, so that a second call
# on a warm machine trains from scratch; pass the same WORK again to resume its runs instead
# (steps and decay_start are not in the resume hash, so a resumed run can be extended).
work=${WORK:-$(mktemp -d /tmp/ld.XXXXXX)}; mkdir -p "$work"
X=${XTASK:-/tmp/xtask-tch}
[ -x "$X" ] || { xz -dc gpu-bin/xtask-tch.xz > "$X" && chmod +x "$X"; }
export TMD_CONV=native   # cuDNN convolutions while training (the unfold path is for NdArray)
device=${DEVICE:-torch-cuda}
presets=${PRESETS:-"world world-wide"}
clips=${CLIPS:-1024}; calib=${CALIB:-100}; train_secs=${TRAIN_SECS:-300}; batch=${BATCH:-16}
t_start=$(date +%s)
log() { echo "[$(( $(date +%s) - t_start )) s] $*" >&2; }

"$X" encode-world --split train --clips "$clips" --out "$work/train" --device "$device" >&2 || exit 1
"$X" encode-world --split held-out --clips 48 --out "$work/heldout" --device "$device" >&2 || exit 1
log "encoded"

# distil PRESET STEPS DECAY_START
distil() {
  "$X" distill-decoder --model assets/world --data "$work/train" --eval-data "$work/heldout" \
    --run-dir "$work/run-$1" --out "$work/model-$1" --device "$device" \
    --set preset="$1" --set batch="$batch" --set steps="$2" --set decay_start="$3" \
    --set checkpoint.every=500 --set progress=false >> "$work/log-$1.txt" 2>&1
}
declare -A per_step
for p in $presets; do
  ( t0=$(date +%s%N); distil "$p" 10 0 && t1=$(date +%s%N) && distil "$p" $((10 + calib)) 0 \
      && t2=$(date +%s%N) && echo "$(( (t1 - t0) / 1000000 )) $(( (t2 - t1) / 1000000 ))" > "$work/calib-$p" ) &
done
wait
for p in $presets; do
  read -r first ms < "$work/calib-$p" || { log "$p: calibration failed"; tail -5 "$work/log-$p.txt" >&2; continue; }
  # The training loop's own time for the calibration steps (its last checkpoint line: "..., X s,
  # checkpoint ..."), without the process start and the held-out quality pass; else the wall time.
  secs=$(grep -E "step $((10 + calib))/$((10 + calib)): .* s, checkpoint" "$work/log-$p.txt" | tail -1 \
    | sed -E 's/.*, ([0-9.]+) s, checkpoint.*/\1/')
  [ -n "$secs" ] && ms=$(python3 -c "print(int($secs * 1000))")
  # Both presets train side by side from here: the per-step time measured alone is halved by the
  # sharing only roughly, so budget each as if alone x the number of presets.
  n=$(echo $presets | wc -w)
  steps=$(python3 -c "print(max(200, int($train_secs * 1000 / ($ms / $calib) / $n)))")
  per_step[$p]=$steps
  log "$p: first 10 steps (targets included) ${first} ms, then $(( ms / calib )) ms/step alone; training to $steps steps"
done
for p in $presets; do
  [ -n "${per_step[$p]:-}" ] || continue
  s=${per_step[$p]}
  ( distil "$p" "$s" $(( s * 6 / 10 )) && log "$p: done" ) &
done
wait
rows=$work/rows.toml
{ echo 'teacher = []'
  echo '[[student]]'; echo "model = \"$PWD/assets/world\""; echo 'label = "bundled student, full VAE decoder"'; echo 'decoder = "full"'
} > "$rows"
for p in $presets; do
  [ -d "$work/model-$p/decoder-light" ] || continue
  "$X" convert-weights --src "$work/model-$p" --out "$work/f16-$p" --dtype f16 >&2 || continue
  tar -C "$work/f16-$p" -cf "$out/decoder-light-$p.tar" decoder-light
  { echo '[[student]]'; echo "model = \"$work/f16-$p\""; echo "label = \"bundled student, light decoder $p (f16)\""; echo 'decoder = "light"'; } >> "$rows"
done
log "eval"
"$X" eval --rows "$rows" --seeds 2 --limit "${EVAL_LIMIT:-0}" --device "$device" --out "$work/eval.json" --markdown "$out/light-decoder.md" >&2
python3 - "$work" "$out" "$presets" <<'PY'
import json, os, sys
work, out, presets = sys.argv[1], sys.argv[2], sys.argv[3].split()
rec = {"eval": None, "runs": {}}
try:
    rec["eval"] = json.load(open(f"{work}/eval.json"))
except Exception as e:
    rec["eval_error"] = str(e)
for p in presets:
    r = {}
    for name in ("quality.json",):
        try:
            r["quality"] = json.load(open(f"{work}/run-{p}/{name}"))
        except Exception as e:
            r["quality_error"] = str(e)
    try:
        r["calibration_ms"] = open(f"{work}/calib-{p}").read().split()
        r["log_tail"] = open(f"{work}/log-{p}.txt").read().splitlines()[-8:]
    except Exception:
        pass
    rec["runs"][p] = r
json.dump(rec, open(f"{out}/light-decoder.json", "w"), indent=1)
PY
log "total"
