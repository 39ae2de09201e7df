# GPU 0 of session 12: int8 variants and bf16 with stacked siblings in the graph loop (issue 7), then the
# per-knob table from g25's best, first half (issue 3)
export PYTHONPATH=$PWD/.gpu-site:$PWD
int8='decode_loop=graph_loop max-autotune fullgraph, int8_weight_only$'
bf16='decode_loop=graph_loop max-autotune fullgraph$'
for v in "ref:$int8:" "scaled:$int8:AUTOTUNE_INT8_FORM=scaled" "fuse:$int8:AUTOTUNE_FUSE=1" \
         "sf:$int8:AUTOTUNE_INT8_FORM=scaled AUTOTUNE_FUSE=1" \
         "sfc:$int8:AUTOTUNE_INT8_FORM=scaled AUTOTUNE_FUSE=1 AUTOTUNE_COMBO_KERNELS=1" \
         "bf16ref:$bf16:" "bf16fuse:$bf16:AUTOTUNE_FUSE=1"; do
  IFS=: read -r tag row env <<< "$v"
  BATCH_C=1 TAG_C=-$tag ENV_C="$env" ONLY_C="$row" bash benchmarks/studies_gpu.sh .gpu-out c
done
BASE_K=benchmarks/results/2026-11-30-h200-s11/g25.preset.json TAG_K=-g25a BUDGET_K=1000 \
  ONLY_K="base: |dtype=|attn_implementation=|sdpa_backend=|quantization=|llm_int8|bnb_4bit" \
  bash benchmarks/studies_gpu.sh .gpu-out k
