"""R25: names, paths and files are checked at the door. A study name that is not a plain name, a file that is
not UTF-8, a prompt longer than the model's context and a search space too large to handle are each refused
with one line and exit code 2, before any trial and before anything is written or moved."""

from __future__ import annotations

import json
import time

import pytest
from faultkit import DATA, MODEL, run_search

from autotune.config.settings import SearchSettings, check_study_name
from autotune.config.space import MAX_VALUES, SearchSpace
from autotune.config.workload import Workload
from autotune.errors import InputError, SpaceError, WorkloadError
from autotune.tuner.prescreen import Prescreen
from support import run_cli, space_for

NOT_PLAIN = [".", "..", "../x", "a/b", "/tmp/x", "a?b", "a#b", "a%2Fb", "a b", "a:b", "a@b", "a;b", "", ".hidden",
             "-x", "x" * 101, "é"]


def one_line(stderr: str) -> bool:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "Traceback" not in stderr and len(lines) <= 3  # click may frame its one message with a usage line


@pytest.mark.parametrize("name", NOT_PLAIN)
def test_r25_study_names_are_plain_names(name):
    with pytest.raises(InputError, match="not a plain name"):
        SearchSettings(model="m", workload=Workload(prompts=("p",)), study_name=name)
    assert check_study_name("my-study_2.v1") == "my-study_2.v1"


@pytest.mark.parametrize("name", ["..", ".", "a?b", "../outside"])
def test_r25_cli_refuses_a_name_and_moves_nothing(tmp_path, name):
    """`--new-study` with `..` once moved the whole studies root aside; now nothing is touched."""
    root = tmp_path / "work" / "studies"
    root.mkdir(parents=True)
    (root / "keep.db").write_text("x")
    result = run_cli("search", "--model", str(MODEL), "--device", "cpu", "--study", name, "--new-study",
                     "--root", str(root), cwd=tmp_path / "work", timeout=120)
    assert result.returncode == 2 and "not a plain name" in result.stderr and one_line(result.stderr)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["studies"]
    assert sorted(p.name for p in root.iterdir()) == ["keep.db"]
    export = run_cli("export", "--study", name, "--root", str(root), cwd=tmp_path / "work", timeout=120)
    assert export.returncode == 2 and "not a plain name" in export.stderr


def test_r25_files_that_are_not_utf8_are_one_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    space = tmp_path / "space.yaml"
    space.write_bytes("knobs:\n  dtype: {values: [auto, float32]}  # d\u00e9faut\n".encode("latin-1"))
    with pytest.raises(WorkloadError, match="not UTF-8"):
        Workload.from_file(prompts)
    with pytest.raises(SpaceError, match="not UTF-8"):
        SearchSpace.load(str(space))
    for args in (["--prompts", str(prompts)], ["--space", str(space)]):
        result = run_cli("estimate", "--model", str(MODEL), "--device", "cpu", *args, cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and "not UTF-8" in result.stderr and one_line(result.stderr), result.stderr


def test_r25_a_prompt_longer_than_the_context_is_refused_before_any_trial(tmp_path):
    """The bundled model has 2048 positions: a prompt of about 3000 tokens cannot run."""
    long = Workload(prompts=("def f():\n    return 1\n" * 300,), max_new_tokens=4)
    space = SearchSpace.load(str(DATA / "small_space.yaml"))
    with pytest.raises(WorkloadError, match="more than the model's context of 2048 tokens"):
        Prescreen.for_study(space, str(MODEL), long, None, "cpu", None)
    # at the edge: a prompt that fits alone, but not with its new tokens
    fits = Workload(prompts=("x " * 1000,), max_new_tokens=4)
    Prescreen.for_study(space, str(MODEL), fits, None, "cpu", None)
    with pytest.raises(WorkloadError, match="--max-new-tokens"):
        Prescreen.for_study(space, str(MODEL), Workload(prompts=("x " * 1000,), max_new_tokens=1500), None, "cpu",
                            None)

    prompts = tmp_path / "long.jsonl"
    prompts.write_text(json.dumps({"prompt": long.prompts[0]}) + "\n")
    started = time.monotonic()
    result = run_search(tmp_path, 3, "--prompts", str(prompts), timeout=300)
    assert result.returncode == 2 and "context of 2048 tokens" in result.stderr and one_line(result.stderr)
    assert not (tmp_path / "studies" / "r" / "trials").exists()  # no trial ran
    assert time.monotonic() - started < 120


def test_r25_a_search_space_is_bounded_and_handled_in_linear_time(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("knobs:\n  pad_to_multiple_of: {values: [" + ", ".join(map(str, range(1, 100_001))) + "]}\n")
    started = time.monotonic()
    with pytest.raises(SpaceError, match=f"more than the {MAX_VALUES}"):
        SearchSpace.load(str(huge))
    assert time.monotonic() - started < 5
    big = tmp_path / "big.yaml"
    big.write_text("knobs:\n  pad_to_multiple_of: {values: [" + ", ".join(map(str, range(1, MAX_VALUES))) + "]}\n")
    started = time.monotonic()
    searched = space_for(SearchSpace.load(str(big)), "cpu")
    assert len(searched.knob("pad_to_multiple_of").values) == MAX_VALUES
    assert time.monotonic() - started < 1
    oversized = tmp_path / "oversized.yaml"
    oversized.write_text("knobs:\n  dtype: {values: [auto]}\n" + "#" * (2 << 20) + "\n")
    with pytest.raises(SpaceError, match="bytes, more than"):
        SearchSpace.load(str(oversized))
