# GPU 1 of session 15: the fixture study on 8 prompts x 128 tokens (issue 3: assisted decoding in bf16 against
# bitsandbytes and static cache + compile, in the tuner's own table; the batch-1 and batch-8 bests on codelm-12m),
# then one more worker on the grid of GPU 0
export PYTHONPATH=$PWD/.gpu-site:$PWD
STUDY_B=fx8 PROMPTS_B=benchmarks/data/eight-prompts.jsonl TOKENS_B=128 TRIALS_B=2 \
  CANDIDATES_B=benchmarks/data/s15-fixture-candidates.json bash benchmarks/studies_gpu.sh .gpu-out b
GPU_W=1 bash benchmarks/studies_gpu.sh .gpu-out we
