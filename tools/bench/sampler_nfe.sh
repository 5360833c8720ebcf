#!/usr/bin/env bash
# Sampler x NFE on a trained pipeline (default: the `diffuse demo` run folder out/demo, a
# class-conditional Fashion-MNIST U-Net): every deterministic sampler from the same x_T (seeded,
# one sample per class 0-9, trailing spacing), scored by the RMS pixel distance ([-1, 1] scale)
# to a 1000-step DPM-Solver++ 3M solution. Every sampler clips x̂0 to [-1, 1] the same way
# (`--dynamic-threshold 1.0`, whose threshold is then always 1) except PNDM, which has no x̂0
# to clip; the folder's own clip_sample would otherwise reach only the samplers whose diffusers
# class honours it. Prints a markdown table.
#   tools/bench/sampler_nfe.sh [PIPELINE_DIR] [PYTHON]
# PYTHON needs numpy + safetensors (e.g. /opt/refenv/bin/python).
set -euo pipefail
PIPE=${1:-out/demo}
PY=${2:-python3}
BIN=target/release/diffuse
cargo build --release -q
TMP=$(mktemp -d)
run() { # name sampler steps extra...
  local name=$1 sampler=$2 steps=$3; shift 3
  "$BIN" sample --pipeline "$PIPE" --scheduler "$sampler" --steps "$steps" --n 10 \
    --class-labels 0,1,2,3,4,5,6,7,8,9 --seed 11 --timestep-spacing trailing \
    --out-tensor "$TMP/$name-$steps.safetensors" "$@" 2>/dev/null
}
clip() { [ "$1" = pndm ] || echo "--dynamic-threshold 1.0"; }
run ref dpmsolver++ 1000 --solver-order 3 $(clip ref)
ROWS="ddim:ddim dpm2:dpmsolver++ dpm3:dpmsolver++:--solver-order:3 unipc2:unipc unipc3:unipc:--solver-order:3 euler:euler heun:heun pndm:pndm"
for row in $ROWS; do
  IFS=: read -r name sampler flag value <<<"$row"
  for nfe in 5 10 20 50 100; do
    steps=$nfe
    [ "$sampler" = heun ] && steps=$(( (nfe + 1) / 2 ))
    # shellcheck disable=SC2046
    if [ -n "${flag:-}" ]; then run "$name" "$sampler" "$steps" "$flag" "$value" $(clip "$sampler");
    else run "$name" "$sampler" "$steps" $(clip "$sampler"); fi
  done
done
"$PY" - "$TMP" "$ROWS" <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file
tmp, rows = sys.argv[1], sys.argv[2].split()
ref = load_file(f"{tmp}/ref-1000.safetensors")["samples"]
print("| sampler | " + " | ".join(f"NFE {n}" for n in (5, 10, 20, 50, 100)) + " |")
print("|---|" + "---|" * 5)
for row in rows:
    name = row.split(":")[0]
    cells = []
    for nfe in (5, 10, 20, 50, 100):
        steps = (nfe + 1) // 2 if name == "heun" else nfe
        try:
            x = load_file(f"{tmp}/{name}-{steps}.safetensors")["samples"]
            cells.append(f"{np.sqrt(np.mean((x - ref) ** 2)):.4f}")
        except FileNotFoundError:
            cells.append("n/a")
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
rm -rf "$TMP"
