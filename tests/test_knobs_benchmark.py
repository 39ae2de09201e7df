"""benchmarks/knobs.py on the bundled model: a run interrupted midway keeps what it measured, and --resume
measures only the rest (a GPU session ends at its time limit wherever the table is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def knobs(tmp_path: Path, bundled_model, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "knobs.py"), "--model", str(bundled_model), "--device", "cpu",
         "--batch-sizes", "1", "--max-new-tokens", "4", "--prompt-tokens", "8", "--repeats", "1", "--warmup", "0",
         "--only", "dynamic cache", "dtype=bfloat16", "--workdir", str(tmp_path / "work"),
         "--out", str(tmp_path / "knobs.json"), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_resume_keeps_the_measured_rows_and_measures_the_others(tmp_path, bundled_model):
    first = knobs(tmp_path, bundled_model)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = json.loads((tmp_path / "knobs.json").read_text())["results"]
    assert [r["label"] for r in rows] == ["dtype=bfloat16", "dynamic cache, no compile (plain generate)"]
    assert all(r["runs"]["1"]["status"] == "ok" for r in rows)
    # as if the session had ended before the second row: drop it, then resume
    data = json.loads((tmp_path / "knobs.json").read_text())
    kept = data["results"][0]["runs"]["1"]["decode_tokens_per_s"]
    data["results"][1]["runs"] = {}
    (tmp_path / "knobs.json").write_text(json.dumps(data))
    second = knobs(tmp_path, bundled_model, "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "- dtype=bfloat16 [batch 1]: " in second.stdout and "from the earlier run" in second.stdout
    assert second.stdout.count("from the earlier run") == 1
    rows = json.loads((tmp_path / "knobs.json").read_text())["results"]
    assert rows[0]["runs"]["1"]["decode_tokens_per_s"] == kept
    assert rows[1]["runs"]["1"]["status"] == "ok"
