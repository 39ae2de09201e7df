# GPU 0 of session 13: the int8 float32-products form and the third Triton kernel against the default (issue 7), then the per-knob table
# from g25's best, rows of attention, SDPA backends, quantization none, coordinate descent, freezing (issue 3)
export PYTHONPATH=$PWD/.gpu-site:$PWD
int8='decode_loop=graph_loop max-autotune fullgraph, int8_weight_only$'
for v in "ref::" "triton:AUTOTUNE_INT8_KERNEL=triton" "f32:AUTOTUNE_INT8_FORM=float32" \
         "tfuse:AUTOTUNE_INT8_KERNEL=triton AUTOTUNE_FUSE=1"; do
  IFS=: read -r tag env <<< "$v"
  BATCH_C=1 TAG_C=-$tag ENV_C="$env" ONLY_C="$int8" bash benchmarks/studies_gpu.sh .gpu-out c
done
BASE_K=benchmarks/results/2026-11-30-h200-s11/g25.preset.json TAG_K=-g25a BUDGET_K=1250 \
  ONLY_K="attn_implementation=|sdpa_backend=|quantization=none|compile_tuning=|compile_freezing=" \
  bash benchmarks/studies_gpu.sh .gpu-out k
