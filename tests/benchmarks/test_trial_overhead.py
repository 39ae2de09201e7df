"""benchmarks/trial_overhead.py over a study folder of made-up results (a real one comes from the GPU)."""

from __future__ import annotations

import json
from pathlib import Path

from support import load_benchmark

from autotune.config.candidate import Candidate


def result(tmp_path: Path, name: str, **figures) -> None:
    path = tmp_path / "s" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "ok", "duplicate_of": None, **figures}))


def test_overhead_of_trials_and_of_the_confirmation_runs(tmp_path, capsys):
    compiled = Candidate(cache_implementation="static", compile="max-autotune").to_dict()
    result(tmp_path, "results/trial-00000.json", trial=0, candidate=Candidate().to_dict(), process_s=20.0,
           wall_s=16.0, load_s=5.0, warmup_s=3.0)
    result(tmp_path, "results/trial-00001.json", trial=1, candidate=compiled, process_s=100.0, wall_s=96.0,
           load_s=5.0, warmup_s=80.0)
    result(tmp_path, "results/trial-00002.json", trial=2, candidate=compiled, process_s=1.0, wall_s=1.0,
           load_s=None, duplicate_of=1)  # reused: no process of its own
    for i, warmup in enumerate((20.0, 22.0, 18.0)):
        result(tmp_path, f"trials/confirm-00001-{i}/result.json", process_s=40.0 + warmup, wall_s=36.0 + warmup,
               load_s=5.0, warmup_s=warmup)
    assert load_benchmark("trial_overhead").main(["--study", "s", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("run ") and sum(line.startswith(("trial ", "confirm ")) for line in lines) == 5
    trial1 = next(line for line in lines if line.startswith("trial 1 "))
    assert [cell.strip() for cell in trial1.split("|")][3:] == ["4.0", "5.0", "80.0", "89.0", "11.0", "100.0"]
    assert "trials that compile nothing: median 12.0 s (1)" in out
    assert "compiled trials: median 89.0 s (1)" in out
    # cold: 4 + 5 + 80 = 89 s; warm: 4 + 5 + 20 = 29 s (median of the three)
    assert "overhead 89.0 s" in out and "median 29.0 s (warm-up 20.0 s), 0.33x" in out
