"""`--objective e2e`: a study maximizes the end-to-end tok/s of a request (prefill included), records it, confirms
and exports by it, and `verify` judges the preset by it; `--workload long-context` refuses a model whose context
the long prompts do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

import autotune
from autotune.cli import main
from autotune.tuner.study import STUDY_ATTR


@pytest.mark.slow
def test_an_e2e_study_maximizes_and_exports_the_end_to_end_figure(tmp_path, bundled_model):
    space = tmp_path / "space.yaml"
    space.write_text("knobs:\n  dtype: {values: [auto, float32]}\n")
    result = autotune.search(model=str(bundled_model), objective="e2e", device="cpu", space=str(space), trials=2,
                             confirm=2, repeats=1, warmup=0, max_new_tokens=8, root=str(tmp_path / "studies"),
                             study_name="e2e", quiet=True)
    preset = json.loads(Path(result.preset_path).read_text())
    assert preset["study"]["objective"] == "e2e_tokens_per_s"
    assert result.objective == "e2e_tokens_per_s"
    assert result.objective_value == pytest.approx(preset["measurement"]["e2e_tokens_per_s"])
    assert preset["measurement"]["stability"]["metric"] == "e2e_tokens_per_s"
    import optuna

    study = optuna.load_study(study_name="e2e", storage=result.storage_url)
    assert study.user_attrs[STUDY_ATTR]["objective"] == "e2e_tokens_per_s"
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.value == pytest.approx(trial.user_attrs["e2e_tokens_per_s"])
        assert trial.user_attrs["prefill_tokens_per_s"] > 0 and trial.user_attrs["ttft_s"] > 0


def test_the_long_context_workload_refuses_a_model_whose_context_it_does_not_fit(tmp_path, monkeypatch,
                                                                                 bundled_model):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["search", "--model", str(bundled_model), "--workload", "long-context",
                                       "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "more than the model's context of 2048 tokens" in result.output, result.output
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").glob("*.db"))
