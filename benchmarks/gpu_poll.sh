#!/usr/bin/env bash
# Beside a background run of studies_gpu.sh on the GPU machine: wait until SECONDS have passed since this
# call started (or the driver's "== .. done" line), and every 45 s copy OUTDIR (without the compile caches,
# its bulk) to $OUT/gpu-out.tgz, atomically, so what a call returns is never a half-written archive.
#   bash benchmarks/gpu_poll.sh OUTDIR SECONDS
out=${1:?usage: gpu_poll.sh OUTDIR SECONDS}
limit=${2:?usage: gpu_poll.sh OUTDIR SECONDS}
save() {
  tar czf "$OUT/.gpu-out.tgz" --exclude=inductor-cache -C "$out" . 2>/dev/null \
    && mv "$OUT/.gpu-out.tgz" "$OUT/gpu-out.tgz"
}
start=$SECONDS
while [ $((SECONDS - start)) -lt "$limit" ]; do
  sleep 15
  [ $(((SECONDS - start) % 45)) -lt 15 ] && save
  grep -q '^== .* done$' "$out/driver.log" 2>/dev/null && break
done
save
echo "--- driver.log"; tail -n 5 "$out/driver.log"
for f in "$out"/*.log; do [ "$f" = "$out/driver.log" ] || { echo "--- $f"; grep -E '^(- |trial|\[|best|stopped|confirm)' "$f" | tail -n 25; }; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
