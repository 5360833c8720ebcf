#!/usr/bin/env bash
# Sampler x NFE -> FD on a trained pipeline (default: the `diffuse demo` run folder out/demo, a
# class-conditional Fashion-MNIST U-Net), like DDIM's Table 1: for every sampler and number of
# network evaluations, `diffuse eval` draws N samples (classes 0..9 in turn, seed 0, trailing
# spacing) and scores them against the 10000 test images with the built-in Fashion-MNIST
# classifier's features. Every sampler clips x̂0 to [-1, 1] (`--dynamic-threshold 1.0`) except
# PNDM, which has no x̂0 to clip. Heun takes two evaluations per step. Prints a markdown table of
# "FD (class accuracy)"; set FULL=1 to add NFE 1000 for ddpm and ddim, NFES="..." or ROWS="..."
# to run a part of the table.
#   tools/bench/sampler_fd.sh [PIPELINE_DIR] [N]
set -euo pipefail
PIPE=${1:-out/demo}
N=${2:-300}
BIN=target/release/diffuse
cargo build --release -q
OUT=${RESULTS:-$(mktemp)}  # RESULTS=FILE keeps the raw JSON lines (appended)
ROWS=${ROWS:-"ddpm:ddpm ddim:ddim dpm2:dpmsolver++ dpm3:dpmsolver++:--solver-order:3 unipc2:unipc euler:euler euler-a:euler-ancestral heun:heun pndm:pndm"}
NFES=${NFES:-"5 10 20 50 100"}
[ "${FULL:-0}" = 1 ] && NFES="$NFES 1000"
for row in $ROWS; do
  IFS=: read -r name sampler flag value <<<"$row"
  for nfe in $NFES; do
    [ "$nfe" = 1000 ] && [ "$sampler" != ddim ] && [ "$sampler" != ddpm ] && continue
    steps=$nfe
    [ "$sampler" = heun ] && steps=$(( (nfe + 1) / 2 ))
    extra=()
    [ -n "${flag:-}" ] && extra+=("$flag" "$value")
    [ "$sampler" = pndm ] || [ "$sampler" = euler-ancestral ] || extra+=(--dynamic-threshold 1.0)
    json=$("$BIN" eval --pipeline "$PIPE" --dataset fashion-mnist --n "$N" --seed 0 --json \
      --scheduler "$sampler" --steps "$steps" --timestep-spacing trailing "${extra[@]}" 2>/dev/null || echo '{}')
    echo "$name $nfe $json" >> "$OUT"
  done
done
python3 - "$OUT" "$ROWS" "$NFES" <<'PY'
import json, sys
lines = [l.split(" ", 2) for l in open(sys.argv[1]).read().splitlines()]
cells = {(name, nfe): json.loads(j) for name, nfe, j in lines}
nfes = sys.argv[3].split()
print("| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
print("|---|" + "---|" * len(nfes))
for row in sys.argv[2].split():
    name = row.split(":")[0]
    out = []
    for n in nfes:
        r = cells.get((name, n), {})
        out.append(f"{r['fd']:.2f} ({100 * r['class_accuracy']:.0f}%)" if "fd" in r else "—")
    print(f"| {name} | " + " | ".join(out) + " |")
PY
