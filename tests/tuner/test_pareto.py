"""The Pareto front of decode tok/s and time to first token: which feasible trials are on it, and `show --pareto`
and `export --pareto` on a real study."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from autotune.cli import main
from autotune.tuner.pareto import pareto_front


def trial(number, decode, ttft, feasible=True, **attrs):
    t = optuna.trial.create_trial(value=decode, user_attrs={"decode_tokens_per_s": decode, "ttft_s": ttft, **attrs},
                                  system_attrs={"constraints": [0.0 if feasible else 1.0]})
    t.number = number
    return t


def test_the_front_holds_the_trials_no_feasible_trial_beats_on_both():
    trials = [trial(0, 100.0, 0.050), trial(1, 300.0, 0.080), trial(2, 200.0, 0.030), trial(3, 150.0, 0.060),
              trial(4, 500.0, 0.010, feasible=False), trial(5, 300.0, 0.080), trial(6, 250.0, 0.020, duplicate_of=2),
              trial(7, 120.0, None)]
    # 0 is beaten by 2 (faster and sooner), 3 by 2; 4 is infeasible; 5 repeats 1's figures; 6 is a duplicate;
    # 7 has no TTFT
    assert [t.number for t in pareto_front(trials)] == [1, 2]


@pytest.mark.slow
def test_show_and_export_the_front_of_a_real_study(searched, tmp_path):
    result, root = searched
    runner = CliRunner()
    shown = runner.invoke(main, ["show", "--study", "v", "--root", str(root / "studies"), "--pareto", "--json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    study = optuna.load_study(study_name="v", storage=result.storage_url)
    assert [r["number"] for r in rows] == [t.number for t in pareto_front(study.trials)] and rows
    out = tmp_path / "front"
    exported = runner.invoke(main, ["export", "--study", "v", "--root", str(root / "studies"), "--out",
                                    str(tmp_path / "best.json"), "--pareto", str(out)])
    assert exported.exit_code == 0, exported.output
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"trial-{r['number']:05d}.preset.json" for r in sorted(rows, key=lambda r: r["number"])]
    for row in rows:
        preset = json.loads((out / f"trial-{row['number']:05d}.preset.json").read_text())
        assert preset["study"]["trial"] == row["number"]
    assert f"{len(rows)} preset(s) of the Pareto front written" in exported.output
    table = runner.invoke(main, ["show", "--study", "v", "--root", str(root / "studies")])
    assert table.exit_code == 0 and "the device measuring" in table.output  # where the study's time went
