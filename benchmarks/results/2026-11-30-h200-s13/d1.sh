# GPU 1 of session 13: assisted decoding against greedy on codelm-12m (issue 3's contrast), 4 and 8 prompts,
# then the per-knob table's other rows: bitsandbytes, the decode loops, padding (issue 3)
export PYTHONPATH=$PWD/.gpu-site:$PWD
stamp() { echo "== $(date +%H:%M:%S) $*" >&2; }
for p in four:64 eight:128; do
  IFS=: read -r prompts tokens <<< "$p"
  stamp "d: assisted divergence, $prompts prompts, $tokens tokens"
  timeout 300 python benchmarks/assisted_divergence.py --model .fixtures/codelm-12m --assistant .fixtures/codelm-4m-draft \
    --device cuda --prompts benchmarks/data/$prompts-prompts.jsonl --new-tokens $tokens \
    --out .gpu-out/d-divergence-$prompts.json > .gpu-out/d-$prompts.log 2>&1
  stamp "d: exit $?"
done
# the int8 product alone: groups of 128 (the model's), 256, and one scale per row; the float32 form (issue 7)
ROWS_I=1 GROUPS_I="128 256 16384" TAG_I=-groups bash benchmarks/studies_gpu.sh .gpu-out i
BASE_K=benchmarks/results/2026-11-30-h200-s11/g25.preset.json TAG_K=-g25b BUDGET_K=1250 \
  ONLY_K="quantization=bnb|llm_int8|bnb_4bit|decode_loop=|pad_to|decoding=" \
  bash benchmarks/studies_gpu.sh .gpu-out k
