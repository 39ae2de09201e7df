"""benchmarks/knobs.py on the bundled model: a run interrupted midway keeps what it measured, and --resume
measures only the rest (a GPU session ends at its time limit wherever the table is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def knobs(tmp_path: Path, bundled_model, *extra: str, only=("dtype=bfloat16", "dynamic cache"),
          new_tokens: int = 4) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "knobs.py"), "--model", str(bundled_model), "--device", "cpu",
         "--batch-sizes", "1", "--max-new-tokens", str(new_tokens), "--prompt-tokens", "8", "--repeats", "1",
         "--warmup", "0", "--only", *only, "--workdir", str(tmp_path / "work"),
         "--out", str(tmp_path / "knobs.json"), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT)


def labels(tmp_path: Path) -> list[str]:
    return [r["label"] for r in json.loads((tmp_path / "knobs.json").read_text())["results"]]


def test_resume_keeps_the_measured_rows_and_measures_the_others(tmp_path, bundled_model):
    first = knobs(tmp_path, bundled_model)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = json.loads((tmp_path / "knobs.json").read_text())["results"]
    assert labels(tmp_path) == ["dtype=bfloat16", "dynamic cache, no compile (plain generate)"]
    assert all(r["runs"]["1"]["status"] == "ok" for r in rows)
    # as if the session had ended before the second row: drop it, then resume
    data = json.loads((tmp_path / "knobs.json").read_text())
    kept = data["results"][0]["runs"]["1"]["decode_tokens_per_s"]
    data["results"][1]["runs"] = {}
    (tmp_path / "knobs.json").write_text(json.dumps(data))
    second = knobs(tmp_path, bundled_model, "--resume", "--budget-s", "0")
    assert second.returncode == 0, second.stdout + second.stderr
    # the measured row is taken even with no budget left; the other is not started
    assert "- dtype=bfloat16 [batch 1]: " in second.stdout and second.stdout.count("from the earlier run") == 1
    assert "not started: --budget-s 0 s spent" in second.stdout
    third = knobs(tmp_path, bundled_model, "--resume")
    assert third.returncode == 0, third.stdout + third.stderr
    rows = json.loads((tmp_path / "knobs.json").read_text())["results"]
    assert rows[0]["runs"]["1"]["decode_tokens_per_s"] == kept and rows[1]["runs"]["1"]["status"] == "ok"
    # a call that selects one row keeps the other in the file
    fourth = knobs(tmp_path, bundled_model, "--resume", only=("dtype=bfloat16",))
    assert fourth.returncode == 0 and "from the earlier run" in fourth.stdout
    assert sorted(labels(tmp_path)) == ["dtype=bfloat16", "dynamic cache, no compile (plain generate)"]
    # another workload: the earlier figures would not compare, so nothing is taken from them
    fifth = knobs(tmp_path, bundled_model, "--resume", only=("dtype=bfloat16",), new_tokens=5)
    assert fifth.returncode == 0 and "starts over" in fifth.stdout and "from the earlier run" not in fifth.stdout
