"""examples/: the README's uses, run as a user runs them, on a short study of the bundled model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    """examples/search.sh, shortened: 2 trials of 8 new tokens, one confirmation."""
    workdir = tmp_path_factory.mktemp("examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(EXAMPLES / "search.sh"), "--trials", "2", "--max-new-tokens", "8",
                           "--repeats", "1", "--confirm", "1", "--quiet"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    path = workdir / "studies" / "demo.preset.json"
    assert "preset written to studies/demo.preset.json" in done.stdout and path.is_file()
    return path


def run_example(script: str, preset: Path) -> dict:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), str(preset), "def fibonacci(n):"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_preset_loads_with_autotune_and_with_plain_transformers_alike(preset):
    with_autotune = run_example("load_preset.py", preset)
    plain = run_example("plain_transformers.py", preset)
    assert with_autotune["text"].strip() and plain["text"].strip()
    assert plain["autotune_imported"] is False  # the preset is used without autotune
    recorded = json.loads(preset.read_text())
    if "weight_quantization" not in recorded["runtime"] and recorded["measurement"]["prefix_match"] == 1.0:
        # a configuration whose greedy text is the baseline's gives that text built either way
        assert with_autotune["text"] == plain["text"]
