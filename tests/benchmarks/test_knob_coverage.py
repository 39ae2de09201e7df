"""benchmarks/knob_coverage.py over a made-up study (a real one comes from the GPU)."""

from __future__ import annotations

import optuna
from support import load_benchmark, space_for

from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace
from autotune.tuner.study import STUDY_ATTR


def test_coverage_counts_measured_and_failed_values_and_skips_unreachable_knobs():
    space = space_for(SearchSpace.from_yaml("""
knobs:
  dtype: {values: [auto, float16]}
  decoding: {values: [standard, prompt_lookup]}
  prompt_lookup_num_tokens: {values: [3, 10], when: {decoding: [prompt_lookup]}}
  cache_implementation: {values: [dynamic, static]}
"""), "cuda", random_weights=True)
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(STUDY_ATTR, {"space": space.to_dict()})
    for candidate, status, kind in [(Candidate(), "ok", None),
                                    (Candidate(dtype="float16", cache_implementation="static"), "stopped", "hopeless"),
                                    (Candidate(cache_implementation="static"), "crash", "crash"),
                                    (Candidate(dtype="float16"), "unsupported", "invalid_combination")]:
        trial = study.ask()
        trial.set_user_attr("candidate", candidate.to_json())
        trial.set_user_attr("status", status)
        trial.set_user_attr("failure_kind", kind)
        study.tell(trial, 1.0)
    script = load_benchmark("knob_coverage")
    rows, left_out = script.coverage(study)
    by = {(r["knob"], r["value"]): (r["measured"], r["failed"]) for r in rows}
    assert by[("dtype", "auto")] == ([0], [2]) and by[("dtype", "float16")] == ([1], [])  # the invalid one is not a try
    assert by[("cache_implementation", "static")] == ([1], [2])
    assert ("decoding", "prompt_lookup") not in by and not any(k == "prompt_lookup_num_tokens" for k, _ in by)
    assert ("decoding", "prompt_lookup", ) == left_out[0][:2]
    text = script.table(rows, left_out)
    assert "5 of 5 knob values measured; never measured: none" in text
    assert "decoding=prompt_lookup: random weights repeat one token" in text
