"""benchmarks/equivalence_table.py: a study's result files as a Markdown table with each gate rule's verdict."""

from __future__ import annotations

import json

from support import load_benchmark

from autotune.config.candidate import Candidate
from autotune.config.measurement import Measurement

FLOOR = dict(floor_top1_agreement=0.9875, floor_mean_kl=0.00098)


def write(results, number, candidate, m):
    record = {"trial": number, "candidate": candidate.to_dict(), **m.to_dict()}
    (results / f"trial-{number:05d}.json").write_text(json.dumps(record))


def test_the_table_gives_each_trials_scores_and_both_verdicts(tmp_path, capsys):
    results = tmp_path / "s" / "results"
    results.mkdir(parents=True)
    write(results, 0, Candidate(), Measurement(status="ok", top1_agreement=1.0, mean_kl=0.0, prefix_match=1.0,
                                               float32_top1_agreement=0.9875, float32_mean_kl=0.00098, **FLOOR))
    write(results, 1, Candidate(dtype="float32"), Measurement(
        status="ok", top1_agreement=0.9875, mean_kl=0.001, prefix_match=0.9, divergence_margin=0.25,
        float32_top1_agreement=1.0, float32_mean_kl=0.0, **FLOOR))
    write(results, 2, Candidate(cache_implementation="static"), Measurement.failed("oom", "oom", "out of memory"))
    table = load_benchmark("equivalence_table")
    assert table.main(["--study", "s", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| configuration | top-1 | KL | top-1 f32")
    assert lines[2] == "| baseline | 1.000 | 0 | 0.988 | 0.00098 | 1.000 | - | yes | yes |"
    assert lines[3] == "| dtype=float32 | 0.988 | 0.001 | 1.000 | 0 | 0.900 | 0.250 | no | yes |"
    assert lines[4].endswith("| oom (oom) | oom (oom) |")
    assert table.main(["--study", "missing", "--root", str(tmp_path)]) == 2


def test_the_table_reads_what_a_study_recorded(tmp_path, capsys):
    """--storage: the study's own file (what comes back from a GPU machine) instead of its result files; a trial
    that repeats an earlier configuration is left out."""
    import optuna

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for candidate, m, duplicate in (
            (Candidate(), Measurement(status="ok", top1_agreement=1.0, mean_kl=0.0, prefix_match=1.0,
                                      float32_top1_agreement=0.9875, float32_mean_kl=0.00098, **FLOOR), None),
            (Candidate(dtype="float32"), Measurement(status="ok", top1_agreement=0.9875, mean_kl=0.001,
                                                     prefix_match=0.9, divergence_margin=0.25,
                                                     float32_top1_agreement=1.0, float32_mean_kl=0.0, **FLOOR), None),
            (Candidate(dtype="float32"), Measurement(status="ok", top1_agreement=0.5), 1)):
        attrs = {k: v for k, v in m.to_dict().items() if v is not None}
        study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={
            "candidate": candidate.to_json(), "duplicate_of": duplicate, **attrs}))
    table = load_benchmark("equivalence_table")
    assert table.main(["--study", "s", "--storage", storage]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:] == ["| baseline | 1.000 | 0 | 0.988 | 0.00098 | 1.000 | - | yes | yes |",
                         "| dtype=float32 | 0.988 | 0.001 | 1.000 | 0 | 0.900 | 0.250 | no | yes |"]
