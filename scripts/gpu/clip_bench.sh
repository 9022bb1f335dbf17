#!/usr/bin/env bash
# The whole clip, as a user waits for it: `tmd-cli generate --timings` on a Wan2.1-1.3B-shaped
# model directory with random weights (teacher + TMD-N2H5 student, bf16), beside diffusers'
# WanPipeline with the same pieces (umT5 on 512 tokens, 2 DiT passes, no CFG, VAE decode), on the
# same card in one call. Also the VAE decode and umT5 items of `xtask bench` beside torch_bench.py.
#
# On the CPU machine (LibTorch build against the pip PyTorch of $TCHVENV, default ~/tchvenv:
# `python3 -m venv ~/tchvenv && ~/tchvenv/bin/pip install torch==2.11.0`):
#   bash scripts/gpu/clip_bench.sh --build
# then through the device tool, carrying gpu-bin:
#   bash scripts/gpu/clip_bench.sh [ITEMS]
# ITEMS (comma-separated, default all): pieces (VAE decode, umT5, bf16 errors, both sides),
# clips (generate vs WanPipeline). Writes ONE file, $OUT/clip.json (a JSON list of records:
# `item: "clip"` records with decoder, outer_steps, rust_s, torch_s, ratio, and the piece
# records with rust_ms, torch_ms, ratio); logs go to stderr only. Copy it to
# benches/results/<date>-<card>-clip.json.
#
# Timing: each `generate` is its own process, as a user runs it. `process_s` is the process's wall
# time; `load_s` the model load it reports; `rust_s` the clip (text encoder + DiT + decoder) after
# one warm-up clip in the same process (`--warmup 1`: cuDNN's algorithm choice and the caching
# allocator's growth happen in a process's first clip); `cold_s` the same clip without warm-up,
# for the configurations named in COLD (default: teacher-2step). CONFIGS limits the run to the
# configurations it names, in its order (teacher-2step tmd-m2 tmd-m1 tmd-m2-light tmd-m1-light;
# default all, in that order).
# GEN_FLAGS are added to every `generate` (e.g. --no-verify: skips the 17 GB SHA-256 check, which
# only changes the reported model load).
# The PyTorch side is timed the same way (first clip after building the pipeline, then the
# median of 3).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
if [ "${1:-}" = --build ]; then
  bash scripts/gpu/build.sh --pack || exit 1
  mkdir -p gpu-bin/wheels
  # diffusers 0.42.1 for the reference side (the GPU machine has no network): from WHEELS or PyPI.
  if [ -n "${WHEELS:-}" ]; then
    cp "$WHEELS"/*.whl gpu-bin/wheels/ || exit 1
  else
    python3 -m pip download -q --no-deps -d gpu-bin/wheels diffusers==0.42.1 importlib_metadata \
      || echo "could not download diffusers==0.42.1 from PyPI: set WHEELS=<dir with the diffusers wheel>"
  fi
  ls -la gpu-bin gpu-bin/wheels
  exit 0
fi
items=${1:-pieces,clips}
out=${OUT:-/tmp/out}; mkdir -p "$out"
work=${WORK:-/tmp/clip-bench}; mkdir -p "$work"
log() { echo "$@" >&2; }
# clip.json is rewritten after every record, so a call stopped at its time limit keeps what ran.
flush() { python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1]) if l.strip()], indent=1))' "$records" > "$out/clip.json"; }
for b in xtask tmd-cli; do
  [ -x /tmp/$b-tch ] || { xz -dc gpu-bin/$b-tch.xz > /tmp/$b-tch && chmod +x /tmp/$b-tch; }
done
# The binaries find libtorch through the run path build.sh embedded (no LD_LIBRARY_PATH). On a
# machine other than the build machine, its PyTorch is linked at the build machine's path.
source scripts/gpu/link_torch.sh
if [ -d gpu-bin/wheels ] && ! python3 -c 'import diffusers' 2>/dev/null; then
  pip install -q --no-index --no-deps --target /tmp/site gpu-bin/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader >&2
records=$work/records.jsonl; : > "$records"
peak_file=$work/peak
peak() { # command...: runs it; writes the peak device memory (MiB, nvidia-smi) to $peak_file
  : > "$peak_file.samples"
  ( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$peak_file.samples"; done ) &
  local s=$!; "$@"; local rc=$?; kill $s 2>/dev/null; wait $s 2>/dev/null
  sort -n "$peak_file.samples" | tail -1 > "$peak_file"; return $rc
}

if [[ ",$items," == *",pieces,"* ]]; then
  for item in vae-decode t5 vae-bf16-error t5-bf16-error; do
    python3 scripts/gpu/torch_bench.py "$item" --warm 1 --rep 3 > "$work/torch-$item.json" 2> "$work/torch-$item.err" || tail -3 "$work/torch-$item.err" >&2
    peak timeout 300 $NOENV /tmp/xtask-tch bench --device torch-cuda --items "$item" --warm 1 --rep 3 > "$work/rust-$item.json" 2> "$work/rust-$item.err" || tail -3 "$work/rust-$item.err" >&2
    python3 - "$item" "$work/rust-$item.json" "$work/torch-$item.json" "$(cat "$peak_file")" >> "$records" <<'EOF'
import json, sys
item, rf, tf, peak = sys.argv[1:]
def last(path):
    try:
        lines = [l for l in open(path) if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None
r, t = last(rf), last(tf)
rec = {"item": item, "rust": r, "torch": t}
if r and "ms" in r:
    rec["rust_ms"] = r["ms"]
    rec["rust_peak_mib_nvidia_smi"] = int(peak) if peak.isdigit() else None
if t and "ms" in t:
    rec["torch_ms"] = t["ms"]
if rec.get("rust_ms") and rec.get("torch_ms"):
    rec["ratio"] = rec["rust_ms"] / rec["torch_ms"]
print(json.dumps(rec))
EOF
    flush; log "== $item: $(tail -1 "$records")"
  done
fi

if [[ ",$items," == *",clips,"* ]]; then
  model=$work/wan-1.3b-random
  if [ ! -f "$model/student/config.json" ]; then
    t0=$(date +%s%N)
    $NOENV /tmp/xtask-tch make-random-model --device torch-cuda --preset wan2.1-t2v-1.3b --student tmd \
      --head-blocks 5 --outer-steps 2 --inner-steps 2 --light-decoder wan2.1 --out "$model" >&2 || { log "make-random-model failed"; exit 1; }
    log "== random model written in $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(du -sh "$model" | cut -f1)"
  fi
  python3 scripts/gpu/torch_clip_bench.py --rep 3 > "$work/torch-clip.json" 2> "$work/torch-clip.err" || tail -5 "$work/torch-clip.err" >&2
  log "== torch clip: $(cat "$work/torch-clip.json")"
  prompt="A large red circle moves left on a black background."
  # name | generate flags | decoder | outer steps | PyTorch has the same configuration
  runs=(
    "teacher-2step|--teacher --steps 2 --guidance 1 --solver euler --decoder full|full|2|yes"
    "tmd-m2|--outer-steps 2 --decoder full|full|2|no"
    "tmd-m1|--outer-steps 1 --decoder full|full|1|no"
  )
  if [ -d "$model/decoder-light" ]; then
    runs+=("tmd-m2-light|--outer-steps 2 --decoder light|light|2|no" "tmd-m1-light|--outer-steps 1 --decoder light|light|1|no")
  fi
  # CONFIGS (space-separated names) runs only those configurations, in its order; default: all.
  if [ -n "${CONFIGS:-}" ]; then
    ordered=()
    for want in $CONFIGS; do
      for spec in "${runs[@]}"; do [ "${spec%%|*}" = "$want" ] && ordered+=("$spec"); done
    done
    runs=("${ordered[@]}")
  fi
  for spec in "${runs[@]}"; do
    IFS='|' read -r name flags decoder steps same <<< "$spec"
    # The cold clip (no warm-up) only for the configurations in COLD (each process loads 17 GB).
    warms="1"; [[ " ${COLD-teacher-2step} " == *" $name "* ]] && warms="0 1"
    for warm in $warms; do
      t0=$(date +%s%N)
      # shellcheck disable=SC2086
      peak $NOENV /tmp/tmd-cli-tch generate --device torch-cuda --model "$model" --prompt "$prompt" $flags ${GEN_FLAGS:-} \
        --warmup $warm --timings --out "$work/$name.gif" > "$work/$name-$warm.txt" 2> "$work/$name-$warm.err"
      rc=$?
      process_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      echo "$process_ms" > "$work/$name-$warm.process"
      log "== $name warmup $warm: exit $rc, $process_ms ms: $(tail -1 "$work/$name-$warm.txt")"
      [ $rc -eq 0 ] || tail -3 "$work/$name-$warm.err" >&2
    done
    python3 - "$name" "$decoder" "$steps" "$same" "$work/$name-0.txt" "$work/$name-1.txt" "$work/torch-clip.json" "$(cat "$peak_file")" >> "$records" <<'EOF'
import json, re, sys
name, decoder, steps, same, cold_f, warm_f, torch_f, peak = sys.argv[1:]
def parse(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    nums = {k: float(v) for k, v in re.findall(r"(text encoder|DiT|decode|frames|total|model load) ([0-9.]+) s", text)}
    return nums or None
cold, warm = parse(cold_f), parse(warm_f)
def process_s(path):
    try:
        return float(open(path.replace(".txt", ".process")).read()) / 1000
    except (OSError, ValueError):
        return None
rec = {"item": "clip", "config": name, "decoder": decoder, "outer_steps": int(steps),
       "rust_peak_mib_nvidia_smi": int(peak) if peak.isdigit() else None,
       "rust_warm": warm, "rust_cold": cold,
       "process_s_cold": process_s(cold_f), "process_s_warm": process_s(warm_f)}
if warm and "total" in warm:
    rec["rust_s"] = warm["total"]
    rec["load_s"] = warm.get("model load")
if cold and "total" in cold:
    rec["cold_s"] = cold["total"]
if same == "yes":
    try:
        t = {r["run"]: r for r in map(json.loads, open(torch_f))}
        rec["torch_s"] = t["warm"]["torch_s"]
        rec["torch_cold_s"] = t["cold"]["torch_s"]
        rec["torch"] = t["warm"]
        if "rust_s" in rec:
            rec["ratio"] = rec["rust_s"] / rec["torch_s"]
    except (OSError, KeyError, ValueError):
        pass
print(json.dumps(rec))
EOF
    flush; log "== $name: $(tail -1 "$records")"
  done
fi
flush
log "wrote $out/clip.json"
