# GPU 0 of session 15: the search-efficiency grid (issue 7; 40 configurations of benchmarks/data/grid-space.yaml,
# random:gemma-2b, batch 1, 128 new tokens), its study a journal file that GPU 1 joins after its fixture study;
# cut by the session's end if it must: run again with .gpu-out/grid brought back, it goes on where it stopped
export PYTHONPATH=$PWD/.gpu-site:$PWD
GPUS_E=0 bash benchmarks/studies_gpu.sh .gpu-out e
