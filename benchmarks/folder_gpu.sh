#!/usr/bin/env bash
# The exported folder against load_preset and transformers' best native configuration on the GPU machine,
# for the batch-1 or batch-8 best preset of random gemma-2b (benchmarks/folder_speed.py). One call each:
#   bash benchmarks/folder_gpu.sh b1      (or b8); results under $OUT
set -euo pipefail
export PYTHONPATH=$PWD/.gpu-site:$PWD
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache  # the three ways compile the same graphs: compile once
presets=benchmarks/results/2026-11-30-h200-s14
case "$1" in
  b1) python benchmarks/folder_speed.py --preset $presets/gfast.preset.json --folder /tmp/folder-b1 \
        --prompts benchmarks/data/one-prompt.jsonl --batch-size 1 --max-new-tokens 256 --runs "${RUNS:-1}" \
        --repeats 5 --out "$OUT/folder-b1.json" ;;
  b8) python benchmarks/folder_speed.py --preset $presets/g26b8.preset.json --folder /tmp/folder-b8 \
        --prompts benchmarks/data/eight-prompts.jsonl --batch-size 8 --max-new-tokens 256 --runs "${RUNS:-1}" \
        --repeats 5 --out "$OUT/folder-b8.json" ;;
esac
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/gpu-$1.txt"
python -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> "$OUT/gpu-$1.txt"
