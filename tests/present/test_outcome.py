"""The one line a search ends with: what was found against the baseline, or that nothing beat it."""

from __future__ import annotations

import optuna

from autotune.present.outcome import outcome_line


def add(study, role: str, value: float, top1: float = 1.0, config: str = "", feasible: bool = True, **attrs):
    trial = study.ask()
    for key, v in {"role": role, "config": config, "top1_agreement": top1, "decode_tokens_per_s": value,
                   "equivalence_meaningful": True, **attrs}.items():
        trial.set_user_attr(key, v)
    trial.set_constraint("top1_agreement", 0.0 if feasible else 0.5)
    study.tell(trial, value)


def test_a_faster_feasible_configuration_is_named_with_its_ratio_and_agreement():
    study = optuna.create_study(direction="maximize")
    add(study, "baseline", 100.0)
    add(study, "search", 300.0, top1=0.5, config="dtype=float16", feasible=False)  # faster, but disagrees
    add(study, "cover", 150.0, top1=0.995, config="decoding=prompt_lookup")
    study.set_user_attr("stability", {"trial": 2, "runs": [140.0, 150.0], "median": 145.0, "cv": 0.034,
                                      "stable": True})
    line = outcome_line(study)
    assert line.startswith("best: decoding=prompt_lookup, 1.50x the baseline's decode tok/s (150.0 against 100.0) "
                           "at top-1 agreement 0.995")
    assert "re-measured 2 times: median 145.0 tok/s, CV 3.4% (stable)" in line


def test_when_nothing_beat_the_baseline_the_line_says_so():
    study = optuna.create_study(direction="maximize")
    add(study, "baseline", 100.0)
    add(study, "search", 90.0, config="cache=static")
    add(study, "search", 100.0, duplicate_of=0)
    assert outcome_line(study) == "no configuration beat the baseline on this machine; the preset is the baseline"
    add(study, "search", 120.0, config="attn=eager", equivalence_meaningful=False)
    assert "agreement not judged (random weights)" in outcome_line(study)
