#!/usr/bin/env bash
# Sampling throughput: one DDIM draw of a batch from a randomly initialised U-Net, diffuse (burn,
# CPU flex backend) beside a diffusers DDIMScheduler loop, alternating in one run.
# Usage: tools/bench/sampling.sh [PYTHON] [CONFIG:BATCH...]   (PYTHON needs torch + diffusers)
# Default cases: unet-28 at batch 16 and 1, ddpm-cifar10-32 at batch 1. STEPS (default 20) sets
# the DDIM steps. `cores` is CPU time over wall time while timed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
shift || true
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(benches/configs/unet-28.json:16 benches/configs/unet-28.json:1
  benches/configs/ddpm-cifar10-32.json:1)
steps=${STEPS:-20}
diffuse=${DIFFUSE:-target/release/diffuse}
[ -n "${DIFFUSE:-}" ] || cargo build --release -q
printf '%-18s %6s %6s %-8s %9s %9s %6s %8s\n' config batch steps impl "s/draw" "images/s" cores "pt/ours"
for case in "${cases[@]}"; do
  config=${case%:*}; batch=${case##*:}
  ours=$("$diffuse" bench sample --model-config "$config" --batch-size "$batch" --steps "$steps" --json)
  theirs=$("$python" tools/reference/bench_sample.py --model-config "$config" --batch-size "$batch" --steps "$steps")
  "$python" - "$(basename "$config" .json)" "$ours" "$theirs" <<'PY'
import json, sys
name, *texts = sys.argv[1:]
ours, theirs = (json.loads(t) for t in texts)
for impl, r, ratio in (("diffuse", ours, ""), ("pytorch", theirs, f"{theirs['images_per_second'] / ours['images_per_second']:8.2f}")):
    print(f"{name:<18} {r['batch_size']:>6} {r['steps']:>6} {impl:<8} {r['seconds']:9.3f} "
          f"{r['images_per_second']:9.2f} {r.get('cores_busy') or float('nan'):6.2f} {ratio:>8}")
PY
done
