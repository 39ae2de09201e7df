#!/usr/bin/env bash
# Beside a background run of studies_gpu.sh on the GPU machine: wait until SECONDS have passed since this
# call started (or until every driver*.log has its "== .. done" line: one driver per GPU may run), and
# every 45 s copy OUTDIR (without the compile caches, its bulk) to $OUT/gpu-out.tgz, atomically, so what a
# call returns is never a half-written archive.
#   bash benchmarks/gpu_poll.sh OUTDIR SECONDS
# Only the call that starts the run may carry OUTDIR: a carried path replaces the one on the GPU machine, so a
# later call that carries it again deletes everything the run wrote there since (the tenth session lost its
# logs and a worker's result that way). Later calls carry nothing: ignored folders stay there between calls.
out=${1:?usage: gpu_poll.sh OUTDIR SECONDS}
limit=${2:?usage: gpu_poll.sh OUTDIR SECONDS}
save() {
  tar czf "$OUT/.gpu-out.tgz" --exclude=inductor-cache -C "$out" . 2>/dev/null \
    && mv "$OUT/.gpu-out.tgz" "$OUT/gpu-out.tgz"
}
finished() {  # the last "== " line of every driver*.log (one per GPU where drivers run side by side) says done,
  # and no studies_gpu.sh runs (a driver may call it several times in a row, each call ending in "done")
  local f
  for f in "$out"/driver*.log; do grep '^== ' "$f" 2>/dev/null | tail -n 1 | grep -q ' done$' || return 1; done
  ! pgrep -f '^bash benchmarks/studies_gpu.sh' > /dev/null
}
start=$SECONDS
while [ $((SECONDS - start)) -lt "$limit" ]; do
  sleep 15
  [ $(((SECONDS - start) % 45)) -lt 15 ] && save
  finished && break
done
save
for f in "$out"/driver*.log; do echo "--- $f"; tail -n 5 "$f"; done
for f in "$out"/*.log; do case $f in "$out"/driver*) ;; *) echo "--- $f"; grep -E '^(- |trial|\[|best|stopped|confirm)' "$f" | tail -n 25 ;; esac; done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
