# GPU 1 of session 12: the fixture study with its contrasts and g25's best (issues 3, 7), the GPU tests, then
# the per-knob table's second half (issue 3)
export PYTHONPATH=$PWD/.gpu-site:$PWD
TRIALS_B=14 STUDY_A=g25 bash benchmarks/studies_gpu.sh .gpu-out b g
BASE_K=benchmarks/results/2026-11-30-h200-s11/g25.preset.json TAG_K=-g25b BUDGET_K=600 \
  ONLY_K="base: |cache_implementation=|compile|decode_loop=|pad_to|decoding=" \
  bash benchmarks/studies_gpu.sh .gpu-out k
