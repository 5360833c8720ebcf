#!/usr/bin/env bash
# Training-step throughput, diffuse (burn, CPU flex backend) beside PyTorch/diffusers, alternating
# in one run.
# Usage: tools/bench/train_step.sh [PYTHON] [CONFIG:BATCH...]   (PYTHON needs torch + diffusers)
# Default cases: the issue-14 set (unet-28 at batch 32 and 64, a U-Net with attention at 14x14 at
# batch 32, ddpm-cifar10-32 at batch 16). STEPS (default 5) sets the timed steps, ROUNDS (default
# 1) how often each pair is run. `cores` is CPU time over wall time while timed. DIFFUSE=path
# times another diffuse binary (e.g. an older build) instead of building this checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
shift || true
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(benches/configs/unet-28.json:32 benches/configs/unet-28.json:64
  benches/configs/unet-attn14.json:32 benches/configs/ddpm-cifar10-32.json:16)
steps=${STEPS:-5}
diffuse=${DIFFUSE:-target/release/diffuse}
[ -n "${DIFFUSE:-}" ] || cargo build --release -q
printf '%-18s %6s %-8s %9s %9s %8s %6s %8s\n' config batch impl "s/step" "images/s" "RSS MiB" cores "pt/ours"
for round in $(seq "${ROUNDS:-1}"); do
  for case in "${cases[@]}"; do
    config=${case%:*}; batch=${case##*:}
    ours=$("$diffuse" bench train --model-config "$config" --batch-size "$batch" --steps "$steps" --json)
    theirs=$("$python" tools/reference/bench_train.py --model-config "$config" --batch-size "$batch" --steps "$steps")
    "$python" - "$(basename "$config" .json)" "$batch" "$ours" "$theirs" <<'PY'
import json, sys
name, batch, *texts = sys.argv[1:]
ours, theirs = (json.loads(t[t.index("{"):t.rindex("}") + 1]) for t in texts)
for impl, r, ratio in (("diffuse", ours, ""), ("pytorch", theirs, f"{theirs['images_per_second'] / ours['images_per_second']:8.2f}")):
    print(f"{name:<18} {batch:>6} {impl:<8} {r['seconds_per_step']:9.3f} {r['images_per_second']:9.1f} "
          f"{r['peak_rss_bytes'] / 2**20:8.0f} {r.get('cores_busy') or float('nan'):6.2f} {ratio:>8}")
PY
  done
done
