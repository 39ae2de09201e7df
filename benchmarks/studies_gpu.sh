#!/usr/bin/env bash
# The GPU studies of issues 3, 4, 5 and 7, one after the other, through the CLI as a user runs them:
#   a  random:gemma-2b, batch 1, 256 new tokens, --vram 24GB, 30 trials of the default space; the best
#      configuration re-measured 3 times in fresh processes (R23); estimate vs peak of every trial (issue 4);
#      start-up, load and warm-up of every trial, and of the confirmations with the compile cache warm (issue 7)
#   b  the trained fixtures: codelm-12m with --assistant codelm-4m-draft, 20 trials, then study a's best
#      configuration added to it where study a has exported one (its agreement with the codelm-12m baseline)
#   k  the per-knob table: every knob value of the space varied alone from study a's best (BASE_K: another preset),
#      batch 1 and 8, stopped after one pass under half the base's speed (benchmarks/knobs.py --per-knob; BUDGET_K
#      seconds, 900 unless given; resumes into OUTDIR/k-knobs.json; ONLY_K="prefix|prefix" and TAG_K as for c)
#   c  the decode loops at batch 1 and 8, 256 new tokens (benchmarks/knobs.py --loops; BATCH_C=1 for batch 1 only,
#      BUDGET_C seconds, 420 unless given; ONLY_C="label prefix|label prefix" for some rows only; TAG_C=-2 writes
#      c-2.log and c-loops-2.json, so a second run keeps the first one's files; ENV_C="KEY=VALUE ..." for every
#      worker, e.g. ENV_C=TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1)
#   e  search efficiency: a grid of 40 configurations (benchmarks/data/grid-space.yaml) measured once, then the
#      sampler replayed over it (GPUS_E="0,1": one worker per GPU measures the grid); run again, it goes on where
#      it stopped (OUTDIR/grid brought back); `search_efficiency.py table --root OUTDIR/grid` writes its table
#   we GPU_W joins the grid of part e (made with GPUS_E) as one more worker
#   OVERLAP_A: --overlap of study a (0 unless given: as many trials side by side as the GPU's memory and cores allow;
#      1: one trial at a time, the sequential run)
#   STUDY_A: the name of study a (g24 unless given; its files a-STUDY_A.log ...), BATCH_A its batch size (1 unless
#      given; above 1, the prompts of benchmarks/data/eight-prompts.jsonl); part b enqueues the best of STUDY_A
#   w  GPU_W (a physical index) joins study a as one more worker (autotune worker), for a GPU that first ran
#      another part while part a ran with GPUS_A on the others
#   GPUS_A / GPUS_B="0,1": study a / b run one worker per GPU of this host on one study (search --gpus; the
#      study is then a journal file, OUTDIR/studies/<study>.log, instead of SQLite)
#   v  the memory budget: random:gemma-2b with --vram 8GB, 12 trials (float32 over budget before launch,
#      bf16 and quantized candidates measured under the 8 GB cap, a preset that fits)
#   g  the GPU-only tests (pytest -m gpu: the graph loop's captured CUDA graphs against generate(), the memory
#      model against a real peak); needs pytest in .gpu-site: bash ../shared/gpu/prepare.sh pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0
#   f  whether flex attention runs random:gemma-2b (head_dim 256) with some Inductor kernel options
#      (benchmarks/flex_probe.py; TIMEOUT_F seconds a try, 300 unless given)
#   d  how far assisted decoding follows greedy decoding of codelm-12m, bf16 and float32 (prefix match;
#      benchmarks/assisted_divergence.py)
#   p  a profile of a decode loop's step (LOOPS_P, graph_loop unless given), bf16 and weight-only int8 (QUANT_P)
#      (benchmarks/profile_decode.py)
#   i  the int8 decode product alone: autotune's Triton kernel, Inductor's forms, bf16 cuBLAS (benchmarks/int8_gemv.py;
#      ROWS_I="1" for batch 1 only, GROUPS_I="128 256 2048" for other groups of input features per scale,
#      MODE_I=max-autotune-no-cudagraphs, TAG_I as for c)
#   r  R23 on a GPU-bound configuration: random:gemma-2b, batch 1 (BATCH_R), 256 new tokens, the baseline, the seed
#      recipe and the configurations of CANDIDATES_R (benchmarks/data/fast-candidates.json unless given), the best of
#      them re-measured 3 times (CONFIRM_R) in fresh processes; STUDY_R names the study (gfast unless given);
#      TRIAL_TIMEOUT_R seconds a trial (240 unless given: max-autotune compiles of torchao's float8 take longer);
#      PROMPTS_R and TOKENS_R another prompt file and number of new tokens (BATCH_R=8
#      PROMPTS_R=benchmarks/data/mixed-lengths.jsonl: 8 prompts of 14 to 1888 tokens in one batch)
#   x  the agreement with the trained codelm-12m's baseline of the configurations in CANDIDATES_X (a JSON list;
#      benchmarks/data/fast-candidates.json unless given: the graph loop in int8 and bf16): a study of the
#      baseline and the seed recipe, then those configurations enqueued; STUDY_X names the study (fxc unless given);
#      TRIAL_TIMEOUT_X seconds a trial (200 unless given)
#   l  long prompts: random:gemma-2b, --workload long-context (the built-in long prompts, 1.3-3.2k tokens, 64 new
#      tokens, --objective e2e), TRIALS_L trials (10 unless given), STUDY_L names the study (lc unless given)
#   s  a chat study: MODEL_S (a model folder, e.g. SmolLM2-135M-Instruct converted by tools/smollm2.py),
#      --workload short-chat, --vram VRAM_S (24GB unless given), TRIALS_S trials (20), --confirm CONFIRM_S (3);
#      STUDY_S names the study (smolchat unless given)
#   q  the per-knob equivalence table: every knob value of the default space (as this machine filters it) varied
#      alone from the baseline (benchmarks/knobs.py --per-knob --candidates-out), each a trial of one study of MODEL_Q
#      (the trained codelm-12m unless given) on PROMPTS_Q (benchmarks/data/four-chats.jsonl unless given), TOKENS_Q
#      new tokens (32 unless given): top-1 and KL against the baseline and float32, prefix, margin; STUDY_Q names
#      the study (knobeq unless given); TRIAL_TIMEOUT_Q seconds a trial (300 unless given); VRAM_Q a --vram, so that
#      trials run side by side (--overlap's default needs one); CANDIDATES_Q a JSON list of configurations instead of
#      every knob value, BATCH_Q the batch size (1 unless given; 8 with PROMPTS_Q=benchmarks/data/mixed-lengths.jsonl:
#      the prompts of 14 to 1888 tokens in one batch); WARMUP_Q and REPEATS_Q the passes before and in the measurement
#      (0 and 1 unless given: an equivalence table, the compile inside the one measured pass); OVERLAP_Q an --overlap
# On the GPU machine, from the checkout, after ../shared/gpu/prepare.sh:
#   export PYTHONPATH=$PWD/.gpu-site:$PWD
#   bash benchmarks/studies_gpu.sh OUTDIR [a] [w] [k] [b] [c] [d] [e] [we] [f] [v] [p] [g] [i] [l] [s] [q] [r] [x]
# Each part writes OUTDIR/<part>.log and a table (OUTDIR/<part>-show.txt); studies are under OUTDIR/studies.
# A study that does not finish within one GPU session resumes when its part runs again with the same
# OUTDIR (autotune search continues to the same total; TRIALS_A / TRIALS_B raise it). Where the default
# space has changed since, SPACE_A / SPACE_B name the YAML file of the space it was made with. Keep OUTDIR
# in the checkout, git-ignored (for instance .gpu-out, named in `carry`), and bring it back without the
# compile caches:
#   tar czf $OUT/gpu-out.tgz --exclude=inductor-cache --exclude=knobs --exclude=knobs-k -C .gpu-out .
# To try the plumbing on a CPU (small models, few trials):
#   DEVICE=cpu MODEL_A=examples/models/codelm-4m TRIALS_A=3 TRIALS_B=3 FIXTURES=../shared/fixtures \
#     bash benchmarks/studies_gpu.sh /tmp/try a b
set -u
out=${1:?usage: studies_gpu.sh OUTDIR [a] [w] [k] [b] [c] [d] [e] [we] [f] [v] [p] [g] [i] [l] [s] [q] [r] [x]}
shift
parts=${*:-a b c}
mkdir -p "$out/studies"
out=$(cd "$out" && pwd)
device=${DEVICE:-cuda}
fixtures=${FIXTURES:-.fixtures}
trials_a=${TRIALS_A:-30}
trials_b=${TRIALS_B:-20}
model_a=${MODEL_A:-random:gemma-2b}
study_a=${STUDY_A:-g24}
tag_a=${STUDY_A:+-$STUDY_A}  # a-<study>.log etc. when STUDY_A is given, so two studies keep their own files
prompts_a=benchmarks/data/one-prompt.jsonl
[ "${BATCH_A:-1}" != 1 ] && prompts_a=benchmarks/data/eight-prompts.jsonl
at() { python -m autotune.cli "$@"; }
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
storage_of() {  # STUDY: its storage under $out/studies: the journal file of search --gpus where there is one, else SQLite
  if [ -f "$out/studies/$1.log" ]; then echo "$out/studies/$1.log"; else echo "sqlite:///$out/studies/$1.db"; fi
}
where() {  # STUDY GPUS: the search options that open STUDY: one worker per GPU of GPUS on its journal file, or
  # one process on the storage it has (the paths hold no spaces)
  if [ -n "$2" ]; then echo "--gpus $2"; else echo "--storage $(storage_of "$1")"; fi
}

join_study() {  # PART STUDY ROOT LOG MAKER: GPU_W (a physical index: the worker sets CUDA_VISIBLE_DEVICES to it) joins
  # STUDY, a journal file ROOT/STUDY.log that MAKER makes, as one more worker (autotune worker); LOG.log
  local part=$1 study=$2 root=$3 log=$4 maker=$5
  stamp "$part: GPU ${GPU_W:?GPU_W: the physical index of the GPU that joins} joins study $study"
  if [ -f "$root/$study.log" ]; then
    at worker --study "$study" --storage "$root/$study.log" --root "$root" --gpu "$GPU_W" >> "$out/$log.log" 2>&1
    stamp "$part: exit $?"
  else
    stamp "$part: no journal file $root/$study.log yet ($maker makes it)"
  fi
}

study_and_show() {  # PART STUDY SEARCH-OPTION...: `autotune search` into STUDY (PART.log), then its table (PART-show.txt)
  local part=$1 study=$2
  shift 2
  at search --study "$study" --root "$out/studies" "$@" >> "$out/$part.log" 2>&1
  stamp "$part: exit $?"
  at show --study "$study" --storage "$(storage_of "$study")" > "$out/$part-show.txt" 2>&1
}

enqueue() {  # STUDY [FILE] [--best-of SOURCE]: enqueue into STUDY (under $out/studies) the Candidates of the JSON
  # file FILE and/or the best feasible configuration of study SOURCE, each unless the study has it already
  # (a part run again does not measure it twice); the last line printed is the total of trials that
  # `autotune search --trials` must reach to measure them
  python - "$out/studies" "$@" <<'EOF'
import json
import sys
from dataclasses import replace

import os

import optuna

from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace
from autotune.tuner.storage import storage_for
from autotune.tuner.trials import best_feasible_trial, budget_used, untold_candidate


def storage_of(name):
    """The study's journal file (search --gpus) where there is one, else its SQLite database."""
    journal = f"{root}/{name}.log"
    return storage_for(journal) if os.path.exists(journal) else f"sqlite:///{root}/{name}.db"


root, target, *rest = sys.argv[1:]
study = optuna.load_study(study_name=target, storage=storage_of(target))
space = SearchSpace.from_dict(study.user_attrs["autotune"]["space"])
assistant = study.user_attrs["autotune"].get("assistant")


def as_run(candidate):
    """The configuration as the study runs it: assisted decoding with the study's assistant model."""
    return candidate.with_assistant(assistant)


wanted = []  # (candidate, where it comes from)
if rest and rest[0] != "--best-of":
    path = rest.pop(0)
    wanted += [(as_run(Candidate.from_json(json.dumps(fields))), path) for fields in json.load(open(path))]
if rest[:1] == ["--best-of"]:
    source = rest[1]
    best = best_feasible_trial(optuna.load_study(study_name=source, storage=storage_of(source)).trials)
    wanted.append((Candidate.from_json(best.user_attrs["candidate"]), f"{source} trial {best.number}"))
trials = study.get_trials(deepcopy=False)
have = {Candidate.from_json(t.user_attrs["candidate"]).key() for t in trials if t.user_attrs.get("candidate")}
waiting = (untold_candidate(space, t) for t in trials if t.state == optuna.trial.TrialState.WAITING)
have |= {as_run(candidate).key() for candidate in waiting if candidate is not None}  # enqueued, not started
added = 0
for candidate, origin in wanted:
    if candidate.key() in have:
        print(f"already in {target}: {candidate.describe()} ({origin})")
        continue
    if not space.contains(replace(candidate, assistant=None)) or space.invalid_reason(candidate):
        print(f"not in {target}'s space on this machine, or invalid: {candidate.describe()} ({origin})")
        continue
    study.enqueue_trial(space.params_of(candidate), user_attrs={"enqueued_from": origin})
    have.add(candidate.key())
    added += 1
    print(f"enqueued {candidate.describe()} ({origin})")
print(budget_used(trials) + added)  # a trial cut off and retried counts once, as search counts it
EOF
}

study_of_candidates() {  # PART STUDY CANDIDATES SEARCH-OPTION...: the baseline and the seed recipe, then the
  # configurations of the JSON file CANDIDATES enqueued and measured (no covering trials, no early stop); the
  # search options' --confirm applies at the end. PART.log, PART-show.txt
  local part=$1 study=$2 candidates=$3
  shift 3
  local common=("$@" --early-stop 0 --no-cover --study "$study" --root "$out/studies")
  at search "${common[@]}" --trials 2 --confirm 0 >> "$out/$part.log" 2>&1
  stamp "$part: the baseline and the seed recipe, exit $?"
  local total
  total=$(enqueue "$study" "$candidates" 2>&1 | tee -a "$out/$part.log" | tail -n 1)
  if [[ $total =~ ^[0-9]+$ ]]; then
    at search "${common[@]}" --trials "$total" >> "$out/$part.log" 2>&1
    stamp "$part: the configurations of $candidates, exit $?"
  else
    stamp "$part: enqueueing $candidates failed ($part.log): $total"
  fi
  at show --study "$study" --storage "$(storage_of "$study")" > "$out/$part-show.txt" 2>&1
}

for part in $parts; do
  case $part in
    a)
      stamp "a: random:gemma-2b study $study_a, batch ${BATCH_A:-1}"
      study_and_show "a$tag_a" "$study_a" --model "$model_a" --space "${SPACE_A:-default}" --device "$device" --vram 24GB --trials "$trials_a" \
        --batch-size "${BATCH_A:-1}" --max-new-tokens 256 --prompts "$prompts_a" --trial-timeout 240 --confirm 3 \
        --overlap "${OVERLAP_A:-0}" $(where "$study_a" "${GPUS_A:-}")
      python benchmarks/trial_overhead.py --study "$study_a" --root "$out/studies" > "$out/a$tag_a-overhead.txt" 2>&1
      python benchmarks/knob_coverage.py --study "$study_a" --storage "$(storage_of "$study_a")" > "$out/a$tag_a-coverage.txt" 2>&1
      ;;
    w)
      # another GPU joins study a (made by part a on a journal file, GPUS_A given) as one more worker, e.g. after
      # a short part of its own: GPU_W is its physical index (the worker sets CUDA_VISIBLE_DEVICES to it)
      join_study w "$study_a" "$out/studies" "w$tag_a" "part a with GPUS_A"
      ;;
    b)
      # STUDY_B (fx unless given), PROMPTS_B (four-prompts.jsonl) and TOKENS_B (64): another fixture study beside it,
      # e.g. on eight-prompts.jsonl with 128 tokens (its files b-STUDY_B.log ...)
      study_b=${STUDY_B:-fx}
      tag_b=${STUDY_B:+-$STUDY_B}
      stamp "b: fixture study $study_b"
      common=(--model "$fixtures/codelm-12m" --space "${SPACE_B:-default}" --assistant "$fixtures/codelm-4m-draft" --device "$device"
              --max-new-tokens "${TOKENS_B:-64}" --prompts "${PROMPTS_B:-benchmarks/data/four-prompts.jsonl}" --repeats 2
              --trial-timeout 150 --confirm 0 --early-stop 0 --study "$study_b" --root "$out/studies" $(where "$study_b" "${GPUS_B:-}"))
      at search "${common[@]}" --trials "$trials_b" >> "$out/b$tag_b.log" 2>&1
      stamp "b: exit $?"
      # the contrasts of issue 3 (bf16 alone and with assisted decoding, bitsandbytes alone), and study a's best
      best=()
      [ -f "$out/studies/$study_a.preset.json" ] && best=(--best-of "$study_a")
      total=$(enqueue "$study_b" "${CANDIDATES_B:-benchmarks/data/fixture-contrasts.json}" "${best[@]}" 2>&1 | tee -a "$out/b$tag_b.log" | tail -n 1)
      if [[ $total =~ ^[0-9]+$ ]]; then
        at search "${common[@]}" --trials "$total" >> "$out/b$tag_b.log" 2>&1
        stamp "b: the contrasts${best[*]:+ and the best of $study_a}, exit $?"
      else
        stamp "b: enqueueing the contrasts failed (b$tag_b.log): $total"
      fi
      at show --study "$study_b" --storage "$(storage_of "$study_b")" > "$out/b$tag_b-show.txt" 2>&1
      python benchmarks/knob_coverage.py --study "$study_b" --storage "$(storage_of "$study_b")" > "$out/b$tag_b-coverage.txt" 2>&1
      ;;
    we)
      # another GPU joins the grid of part e (GPUS_E given: its study is a journal file) as one more worker, e.g.
      # after a short part of its own; GPU_W is its physical index
      join_study we grid "$out/grid" we "part e with GPUS_E"
      ;;
    k)
      stamp "k: every knob varied alone from ${BASE_K:-the best of study a}, batch 1 and 8"
      only_k=()
      [ -n "${ONLY_K:-}" ] && IFS='|' read -ra only_k <<< "$ONLY_K"
      python benchmarks/knobs.py --device "$device" --model "$model_a" --per-knob --early-stop 0.5 \
        --base "${BASE_K:-$out/studies/g24.preset.json}" --batch-sizes 1 8 --max-new-tokens 256 --budget-s "${BUDGET_K:-900}" \
        --timeout 200 --resume --workdir "$out/knobs-k" --out "$out/k-knobs${TAG_K:-}.json" \
        ${only_k[@]:+--only "${only_k[@]}"} >> "$out/k${TAG_K:-}.log" 2>&1
      stamp "k: exit $?"
      ;;
    e)
      stamp "e: search efficiency, the grid (benchmarks/data/grid-space.yaml, 40 configurations)"
      python benchmarks/search_efficiency.py grid --model "$model_a" --device "$device" ${GPUS_E:+--gpus "$GPUS_E"} \
        --max-new-tokens 128 --prompts benchmarks/data/one-prompt.jsonl --repeats 2 --trial-timeout 240 \
        --root "$out/grid" --out "$out/e-grid.json" --seeds 20 > "$out/e.log" 2>&1
      stamp "e: exit $?"
      ;;
    c)
      stamp "c: decode loops"
      only=()
      [ -n "${ONLY_C:-}" ] && IFS='|' read -ra only <<< "$ONLY_C"
      python benchmarks/knobs.py --device "$device" --model "$model_a" --loops --batch-sizes ${BATCH_C:-1 8} --max-new-tokens 256 --budget-s "${BUDGET_C:-420}" --timeout 200 \
        ${only[@]:+--only "${only[@]}"} ${ENV_C:+--env $ENV_C} --workdir "$out/knobs" --out "$out/c-loops${TAG_C:-}.json" \
        > "$out/c${TAG_C:-}.log" 2>&1
      stamp "c: exit $?"
      ;;
    v)
      stamp "v: random:gemma-2b under --vram 8GB"
      study_and_show v g8 --model "$model_a" --device "$device" --vram 8GB --trials "${TRIALS_V:-12}" --batch-size 1 \
        --max-new-tokens 128 --prompts benchmarks/data/one-prompt.jsonl --trial-timeout 200 --confirm 0
      ;;
    p)
      # LOOPS_P: the loops to profile (graph_loop unless given; static_loop was profiled in the sixth session)
      stamp "p: where a decode step goes (${LOOPS_P:-graph_loop}; ${QUANT_P:-none int8_weight_only})"
      for loop in ${LOOPS_P:-graph_loop}; do
        for quant in ${QUANT_P:-none int8_weight_only}; do
          python benchmarks/profile_decode.py --device "$device" --model "$model_a" --candidate \
            "{\"cache_implementation\": \"static\", \"compile\": \"reduce-overhead\", \"compile_fullgraph\": true, \"decode_loop\": \"$loop\", \"quantization\": \"$quant\"}" \
            --out "$out/p-$loop-$quant.json" >> "$out/p.log" 2>&1
          stamp "p: $loop $quant exit $?"
        done
      done
      ;;
    f)
      stamp "f: flex attention on $model_a with kernel options (benchmarks/flex_probe.py)"
      python benchmarks/flex_probe.py --model "$model_a" --device "$device" --timeout "${TIMEOUT_F:-300}" --out "$out/f-flex.json" > "$out/f.log" 2>&1
      stamp "f: exit $?"
      ;;
    d)
      stamp "d: assisted decoding against greedy decoding of codelm-12m (benchmarks/assisted_divergence.py)"
      python benchmarks/assisted_divergence.py --model "$fixtures/codelm-12m" --assistant "$fixtures/codelm-4m-draft" \
        --device "$device" --out "$out/d-divergence.json" > "$out/d.log" 2>&1
      stamp "d: exit $?"
      ;;
    i)
      stamp "i: the int8 decode product alone (benchmarks/int8_gemv.py)"
      python benchmarks/int8_gemv.py --rows ${ROWS_I:-1 8} --groups ${GROUPS_I:-128} ${MODE_I:+--mode "$MODE_I"} \
        --out "$out/i-int8-gemv${TAG_I:-}.json" \
        > "$out/i${TAG_I:-}.log" 2>&1
      stamp "i: exit $?"
      ;;
    x)
      stamp "x: agreement of the configurations of ${CANDIDATES_X:-benchmarks/data/fast-candidates.json} with the codelm-12m baseline"
      study_of_candidates "x${STUDY_X:-fxc}" "${STUDY_X:-fxc}" "${CANDIDATES_X:-benchmarks/data/fast-candidates.json}" --model "$fixtures/codelm-12m" \
        --device "$device" --max-new-tokens 64 --prompts benchmarks/data/four-prompts.jsonl --repeats 2 --trial-timeout "${TRIAL_TIMEOUT_X:-200}" \
        --confirm 0
      ;;
    q)
      study_q=${STUDY_Q:-knobeq} model_q=${MODEL_Q:-$fixtures/codelm-12m}
      candidates_q=${CANDIDATES_Q:-$out/q-$study_q-candidates.json}
      if [ -z "${CANDIDATES_Q:-}" ]; then
        stamp "q: every knob value alone against the baseline of $model_q"
        python benchmarks/knobs.py --per-knob --base '{}' --model "$model_q" --device "$device" --batch-sizes 1 \
          --candidates-out "$candidates_q" >> "$out/q$study_q.log" 2>&1
      fi
      study_of_candidates "q$study_q" "$study_q" "$candidates_q" --model "$model_q" --device "$device" \
        --prompts "${PROMPTS_Q:-benchmarks/data/four-chats.jsonl}" --max-new-tokens "${TOKENS_Q:-32}" --repeats "${REPEATS_Q:-1}" \
        --warmup "${WARMUP_Q:-0}" --trial-timeout "${TRIAL_TIMEOUT_Q:-300}" --confirm 0 --batch-size "${BATCH_Q:-1}" \
        ${VRAM_Q:+--vram $VRAM_Q} ${OVERLAP_Q:+--overlap $OVERLAP_Q}
      ;;
    l)
      study_l=${STUDY_L:-lc}
      stamp "l: random:gemma-2b, --workload long-context, study $study_l"
      study_and_show "l$study_l" "$study_l" --model "$model_a" --device "$device" --vram 24GB --workload long-context \
        --trials "${TRIALS_L:-10}" --trial-timeout "${TRIAL_TIMEOUT_L:-240}" --confirm "${CONFIRM_L:-0}" \
        $(where "$study_l" "")
      ;;
    s)
      study_s=${STUDY_S:-smolchat}
      stamp "s: ${MODEL_S:?MODEL_S: a model folder}, --workload short-chat, study $study_s"
      study_and_show "s$study_s" "$study_s" --model "$MODEL_S" --device "$device" --vram "${VRAM_S:-24GB}" \
        --workload short-chat --trials "${TRIALS_S:-20}" --trial-timeout "${TRIAL_TIMEOUT_S:-240}" \
        --confirm "${CONFIRM_S:-3}" $(where "$study_s" "")
      ;;
    r)
      study_r=${STUDY_R:-gfast} batch_r=${BATCH_R:-1}
      prompts_r=benchmarks/data/one-prompt.jsonl
      (( batch_r > 1 )) && prompts_r=benchmarks/data/eight-prompts.jsonl
      prompts_r=${PROMPTS_R:-$prompts_r}
      stamp "r: R23 on the best of ${CANDIDATES_R:-benchmarks/data/fast-candidates.json}, random:gemma-2b, batch $batch_r"
      study_of_candidates "r$study_r" "$study_r" "${CANDIDATES_R:-benchmarks/data/fast-candidates.json}" --model "$model_a" \
        --device "$device" --vram 24GB --batch-size "$batch_r" --max-new-tokens "${TOKENS_R:-256}" --prompts "$prompts_r" \
        --trial-timeout "${TRIAL_TIMEOUT_R:-240}" --confirm "${CONFIRM_R:-3}"
      python benchmarks/trial_overhead.py --study "$study_r" --root "$out/studies" > "$out/r$study_r-overhead.txt" 2>&1
      ;;
    g)
      stamp "g: GPU-only tests"
      # the orchestrator's test first, in a process of its own (the others make CUDA contexts in pytest's)
      AUTOTUNE_FIXTURES=$fixtures python -m pytest -q -p no:cacheprovider -m gpu tests/test_architecture.py \
        > "$out/g.log" 2>&1
      AUTOTUNE_FIXTURES=$fixtures python -m pytest -q -p no:cacheprovider -m gpu tests >> "$out/g.log" 2>&1
      stamp "g: exit $?"
      ;;
    *) echo "unknown part $part (a, w, k, b, c, e, we, f, v, p, g, i, l, s, q, r or x)"; exit 2 ;;
  esac
done
stamp "done"
