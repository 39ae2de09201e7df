# GPU 0 of session 14: the candidates for 600 tok/s (issue 7) measured by the tuner on random:gemma-2b at batch 1
# (g25's best in the graph loop; with the Triton int8 kernel; with it and stacked siblings; the same with SDPA;
# bf16 graph loop with stacked siblings), the best confirmed 3 times; then their agreement with codelm-12m's
# baseline (top-1 >= 0.99 is the bar); then the GPU-only tests (the Triton kernel on stacked siblings in captured graphs)
export PYTHONPATH=$PWD/.gpu-site:$PWD
CANDIDATES_R=benchmarks/data/s14-candidates.json CANDIDATES_X=benchmarks/data/s14-candidates.json \
  bash benchmarks/studies_gpu.sh .gpu-out r x g
