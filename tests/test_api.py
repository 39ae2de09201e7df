"""The Python API: `autotune.search` and `autotune.verify` take the commands' options, with their declared
defaults, and return their objects; errors are the library's, never SystemExit."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import autotune
from autotune.config.settings import OPTIONS, SEARCH_OPTIONS, VERIFY_OPTIONS
from autotune.errors import InputError, PresetError


def test_the_signatures_are_the_commands_options_with_their_declared_defaults():
    search = inspect.signature(autotune.search).parameters
    assert list(search) == list(SEARCH_OPTIONS)
    assert search["model"].default is inspect.Parameter.empty
    assert all(search[name].default == OPTIONS[name].default for name in SEARCH_OPTIONS if name != "model")
    verify = inspect.signature(autotune.verify).parameters
    assert list(verify) == ["path", *VERIFY_OPTIONS]
    assert verify["runs"].default == OPTIONS["runs"].default and verify["threshold"].default == 0.1


def test_importing_autotune_and_its_api_imports_no_torch():
    code = "import sys, autotune, autotune.api; autotune.search; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bad_input_raises_the_librarys_errors(tmp_path):
    with pytest.raises(TypeError):
        autotune.search(model="x", no_such_option=1)
    with pytest.raises(InputError, match="model path"):
        autotune.search(model=str(tmp_path / "missing"), device="cpu", root=str(tmp_path / "studies"), quiet=True)
    with pytest.raises(PresetError, match="does not exist"):
        autotune.verify(tmp_path / "missing.json")
    with pytest.raises(InputError, match="--runs"):
        autotune.verify(tmp_path / "missing.json", runs=0)


@pytest.mark.slow
def test_search_returns_the_study_its_best_trial_and_the_preset(searched):
    result, root = searched
    assert isinstance(result, autotune.SearchResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.best_trial = 0
    assert result.study_name == "v" and result.storage_url == f"sqlite:///{root / 'studies' / 'v.db'}"
    preset = json.loads(Path(result.preset_path).read_text())
    assert preset["study"]["trial"] == result.best_trial
    assert preset["measurement"]["decode_tokens_per_s"] == pytest.approx(result.decode_tokens_per_s)
    assert result.top1_agreement == 1.0 or result.role != "baseline"
    assert result.confirmed_median is not None and result.confirmed_median > 0
    assert result.outcome.startswith(("best: ", "no configuration beat the baseline"))


@pytest.mark.slow
def test_verify_returns_its_verdicts(searched):
    result, _ = searched
    # a shared 2-core machine runs several suites at once: the speed check is shown in tests/cli/test_verify.py
    verification = autotune.verify(result.preset_path, device="cpu", runs=1, repeats=1, threshold=0.9)
    assert [check.name for check in verification.checks] == ["speed", "equivalence"]
    equivalence = verification.checks[1]
    assert equivalence.passed and equivalence.figures["top1_agreement"] >= 0.99
    assert verification.runs[0]["status"] == "ok" and verification.baseline_tokens_per_s > 0
    json.dumps(verification.to_dict())
