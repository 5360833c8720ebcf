#!/usr/bin/env bash
# U-Net forward throughput, diffuse (burn, CPU flex backend) beside PyTorch/diffusers, in one run.
# Usage: tools/bench/unet_forward.sh [PYTHON] [CONFIG]   (PYTHON needs torch + diffusers)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
config=${2:-benches/configs/ddpm-cifar10-32.json}
cargo build --release -q
printf '%-8s %-10s %12s %12s\n' batch impl "s/forward" "images/s"
for batch in 1 64; do
  iters=$(( batch == 1 ? 10 : 3 ))
  ours=$(target/release/diffuse bench unet --model-config "$config" --batch-size "$batch" --iters "$iters" --json)
  theirs=$("$python" tools/reference/bench_unet.py --model-config "$config" --batch-size "$batch" --iters "$iters")
  for row in "diffuse:$ours" "pytorch:$theirs"; do
    name=${row%%:*}; json=${row#*:}
    "$python" -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{r['batch_size']:<8} {sys.argv[2]:<10} {r['seconds_per_batch']:12.4f} {r['images_per_second']:12.2f}\")" "$json" "$name"
  done
done
