# Sourced by the GPU scripts on a machine that runs binaries built elsewhere by
# `scripts/gpu/build.sh --pack`: those binaries look for libtorch at the build machine's path
# (gpu-bin/torch-lib-path, their run path). Where nothing is at that path, this links the local
# PyTorch's site-packages there (libtorch finds its CUDA libraries relative to itself), so the
# binaries start with no LD_LIBRARY_PATH; an existing path is never replaced. A binary built on
# this machine needs none of this. Sets NOENV to a command prefix that clears LD_LIBRARY_PATH when
# the binaries start without it (checked), else to one that adds the local libtorch.
want=$(cat gpu-bin/torch-lib-path 2>/dev/null || true)
have=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
if [ -n "$want" ] && [ ! -e "$want/libtorch_cpu.so" ]; then
  site_want=$(dirname "$(dirname "$want")")
  if [ -e "$site_want" ]; then
    echo "link_torch.sh: $site_want exists without libtorch; not replacing it" >&2
  else
    mkdir -p "$(dirname "$site_want")" && ln -s "$(dirname "$(dirname "$have")")" "$site_want" \
      && echo "link_torch.sh: linked the local PyTorch at $site_want (the binaries' run path)" >&2
  fi
fi
NOENV="env -u LD_LIBRARY_PATH"
for b in /tmp/tmd-cli-tch /tmp/xtask-tch; do
  [ -x "$b" ] || continue
  if ! $NOENV "$b" --help > /dev/null 2>&1; then
    echo "link_torch.sh: $b does not start without LD_LIBRARY_PATH:" >&2
    $NOENV ldd "$b" | grep "not found" >&2
    NOENV="env LD_LIBRARY_PATH=$have${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
echo "link_torch.sh: binaries run as: ${NOENV}" >&2
