#!/usr/bin/env bash
# Re-makes docs/world/bundled-examples.png, the README's picture of the bundled model: four
# held-out prompts, for each the 50-step teacher (`generate --teacher`) above the default student,
# both decoded by the full VAE, frames 0, 4, 8, 12 and 16, seed 1.
#
#   bash scripts/examples_figure.sh            # needs a Python with Pillow (PYTHON=...)
#
# The frames are generated with the release `generate` into a scratch folder; the picture is
# written to a temporary file and moved into place, so a failed run leaves the old one.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
"$py" -c "import PIL" 2>/dev/null || { echo "examples_figure.sh: $py has no Pillow (pip install pillow; or set PYTHON)" >&2; exit 2; }
prompts=(
  "A large green circle moves to the right on a black background."
  "A small magenta square bounces on a white background."
  "A large blue triangle moves up on a striped background."
  "A large yellow cross moves left on a grey background."
)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cargo build --release -q -p tmd-cli
for i in "${!prompts[@]}"; do
  for who in teacher student; do
    flag=(); [ $who = teacher ] && flag=(--teacher)
    target/release/tmd-cli generate "${flag[@]}" --prompt "${prompts[$i]}" --seed 1 --decoder full \
      --out "$tmp/p$i-$who" > /dev/null
  done
done
"$py" - "$tmp" docs/world/bundled-examples.png <<'EOF'
import os, sys
from PIL import Image, ImageDraw
src, dst = sys.argv[1], sys.argv[2]
frames, scale, gap, label_w = [0, 4, 8, 12, 16], 2, 4, 106
rows = [(i, who) for i in range(4) for who in ("teacher", "student")]
first = Image.open(os.path.join(src, "p0-teacher", "frame_0000.png"))
w, h = first.width * scale, first.height * scale
fig = Image.new("RGB", (label_w + len(frames) * (w + gap), len(rows) * (h + gap)), "white")
draw = ImageDraw.Draw(fig)
for r, (i, who) in enumerate(rows):
    y = r * (h + gap)
    name = "teacher, 50 steps" if who == "teacher" else "student, default"
    draw.text((4, y + h // 2 - 10), f"prompt {i + 1}\n{name}", fill="black")
    for c, f in enumerate(frames):
        im = Image.open(os.path.join(src, f"p{i}-{who}", f"frame_{f:04d}.png")).convert("RGB")
        fig.paste(im.resize((w, h), Image.NEAREST), (label_w + c * (w + gap), y))
tmp = dst + ".tmp.png"
fig.save(tmp)
os.replace(tmp, dst)
print(f"wrote {dst}")
EOF
