#!/usr/bin/env bash
# Training-step throughput, diffuse (burn, CPU flex backend) beside PyTorch/diffusers, in one run.
# Usage: tools/bench/train_step.sh [PYTHON] [CONFIG...]   (PYTHON needs torch + diffusers)
# Default configs: benches/configs/unet-28.json (batch 64) and benches/configs/ddpm-cifar10-32.json
# (batch 16). BATCH="16 64" sets the batch sizes for every config; STEPS (default 5) the timed steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(benches/configs/unet-28.json benches/configs/ddpm-cifar10-32.json)
steps=${STEPS:-5}
cargo build --release -q
printf '%-22s %6s %-8s %10s %10s %10s %8s\n' config batch impl "s/step" "images/s" "RSS MiB" "pt/ours"
for config in "${configs[@]}"; do
  default_batch=16
  [ "$(basename "$config")" = unet-28.json ] && default_batch=64
  for batch in ${BATCH:-$default_batch}; do
    ours=$(target/release/diffuse bench train --model-config "$config" --batch-size "$batch" --steps "$steps" --json)
    theirs=$("$python" tools/reference/bench_train.py --model-config "$config" --batch-size "$batch" --steps "$steps")
    "$python" - "$(basename "$config" .json)" "$batch" "$ours" "$theirs" <<'PY'
import json, sys
name, batch, *texts = sys.argv[1:]
ours, theirs = (json.loads(t[t.index("{"):t.rindex("}") + 1]) for t in texts)
for impl, r, ratio in (("diffuse", ours, ""), ("pytorch", theirs, f"{theirs['images_per_second'] / ours['images_per_second']:8.2f}")):
    print(f"{name:<22} {batch:>6} {impl:<8} {r['seconds_per_step']:10.3f} {r['images_per_second']:10.2f} "
          f"{r['peak_rss_bytes'] / 2**20:10.0f} {ratio:>8}")
PY
  done
done
