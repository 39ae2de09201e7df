# GPU 1 of session 14: the per-knob table's padding rows from g25's best (issue 3), then a batch-8 study of
# random:gemma-2b (issue 7: the best at batch 8), cut by the session's end if it must (its journal file comes back)
export PYTHONPATH=$PWD/.gpu-site:$PWD
cp benchmarks/results/2026-11-30-h200-s13/k-knobs-g25b.json .gpu-out/k-knobs-g25b.json
BASE_K=benchmarks/results/2026-11-30-h200-s11/g25.preset.json TAG_K=-g25b BUDGET_K=700 ONLY_K="pad_to" \
  bash benchmarks/studies_gpu.sh .gpu-out k
STUDY_A=g26b8 BATCH_A=8 TRIALS_A=14 bash benchmarks/studies_gpu.sh .gpu-out a
