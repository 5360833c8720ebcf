#!/usr/bin/env bash
# U-Net forward throughput, diffuse (burn, CPU flex backend) beside PyTorch/diffusers, alternating
# in one run. `cores` is CPU time over wall time while timed.
# Usage: tools/bench/unet_forward.sh [PYTHON] [CONFIG]   (PYTHON needs torch + diffusers)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:-python3}
config=${2:-benches/configs/ddpm-cifar10-32.json}
diffuse=${DIFFUSE:-target/release/diffuse}
[ -n "${DIFFUSE:-}" ] || cargo build --release -q
printf '%-8s %-10s %12s %12s %6s %8s\n' batch impl "s/forward" "images/s" cores "pt/ours"
for batch in 1 64; do
  iters=$(( batch == 1 ? 10 : 3 ))
  ours=$("$diffuse" bench unet --model-config "$config" --batch-size "$batch" --iters "$iters" --json)
  theirs=$("$python" tools/reference/bench_unet.py --model-config "$config" --batch-size "$batch" --iters "$iters")
  "$python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = (json.loads(t) for t in sys.argv[1:])
for impl, r, ratio in (("diffuse", ours, ""), ("pytorch", theirs, f"{theirs['images_per_second'] / ours['images_per_second']:8.2f}")):
    print(f"{r['batch_size']:<8} {impl:<10} {r['seconds_per_batch']:12.4f} {r['images_per_second']:12.2f} "
          f"{r.get('cores_busy') or float('nan'):6.2f} {ratio:>8}")
PY
done
