#!/usr/bin/env bash
# Runs several VAE recipes of the world teacher side by side on one GPU through LibTorch
# (gpu-bin/xtask-tch.xz, see pretrain_world.sh), each for SECS seconds, then checks each on whole
# held-out clips (`pretrain --stage vae-check`: reconstruction MSE, evaluator accuracy on the
# reconstructions, a contact sheet). A small VAE leaves the GPU mostly idle (its steps are bound
# by kernel launches), so the variants cost about what one does.
#
#   bash scripts/gpu/vae_sweep.sh SECS 'NAME:--set k=v --set k=v' 'NAME2:...' ...
#
# Results: $OUT/sweep-NAME.{log,json,png} and the newest checkpoint of each run as
# $OUT/sweep-NAME-ckpt.tar.* (unpack in the repository root: runs/sweep/NAME).
set -uo pipefail
secs=$1; shift
out=${OUT:-/tmp/out}; mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$torch_lib
[ -x /tmp/xtask-tch ] || { xz -dc gpu-bin/xtask-tch.xz > /tmp/xtask-tch && chmod +x /tmp/xtask-tch; }
for spec in "$@"; do
  name=${spec%%:*}; args=${spec#*:}
  ( timeout --signal=INT "$secs" /tmp/xtask-tch pretrain --device torch-cuda --stage vae \
      --run-dir runs/sweep/$name --set vae_train.progress=false $args > "$out/sweep-$name.log" 2>&1
    /tmp/xtask-tch pretrain --device torch-cuda --stage vae-check --run-dir runs/sweep/$name $args \
      >> "$out/sweep-$name.log" 2>&1 ) &
done
wait
for spec in "$@"; do
  name=${spec%%:*}
  echo "== $name: ${spec#*:}"
  awk -F, '{s+=$2; n++; if (n==100){printf "  loss to %d: %.4f\n", $1, s/n; s=0; n=0}}' runs/sweep/$name/vae/loss.csv | tail -8
  check=$(ls runs/sweep/$name/vae/check-step-*.json 2>/dev/null | tail -1)
  [ -n "$check" ] && { cp "$check" "$out/sweep-$name.json"; cp "${check%.json}.png" "$out/sweep-$name.png";
    python3 -c "import json,sys; c=json.load(open('$check')); print('  step', c['step'], 'mse %.4f' % c['mse'], 'judged', {k: round(v,3) for k,v in c['judged']['per_attribute'].items()}, 'mean %.3f' % c['judged']['mean'])"; }
  last=$(ls -d runs/sweep/$name/vae/step-* 2>/dev/null | tail -1)
  [ -n "$last" ] && tar cf - "$last" runs/sweep/$name/vae/loss.csv runs/sweep/$name/recipe.json | split -b 15M - "$out/sweep-$name-ckpt.tar."
done
