"""`autotune estimate` lists exactly the candidates `autotune search` would run on the same machine and
options (one machine filter for both: bitsandbytes included where it imports), with plausible estimates."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from click.testing import CliRunner
from support import SMALL_PROMPTS

from autotune.cli import main
from autotune.config.space import SearchSpace

needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                        reason="bitsandbytes is not installed")


def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def estimated(*args) -> list[dict]:
    return json.loads(invoke("estimate", *args, "--json").output)


def test_estimate_lists_the_candidates_the_search_runs(bundled_model, tmp_path, monkeypatch):
    """`study create` prepares a study as `search` does (probe, the machine's space) and records its space;
    the valid candidates of that space are the rows of `estimate` with the same options, one for one."""
    monkeypatch.chdir(tmp_path)
    options = ("--model", str(bundled_model), "--device", "cpu", "--prompts", str(SMALL_PROMPTS),
               "--max-new-tokens", "8")
    invoke("study", "create", *options, "--study", "s", "--root", str(tmp_path / "studies"))
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'studies' / 's.db'}")
    space = SearchSpace.from_dict(study.user_attrs["autotune"]["space"])
    searched = sorted(c.key() for c in space.valid_candidates())
    listed = [row["candidate"] for row in estimated(*options)]
    assert sorted(_key(c) for c in listed) == searched
    bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    quantizations = {c["quantization"] for c in listed}
    assert ({"bnb_8bit", "bnb_4bit"} <= quantizations) == bitsandbytes  # the machine's filter, in both


def _key(candidate: dict) -> str:
    from autotune.config.candidate import Candidate

    return Candidate.from_dict(candidate).key()


@needs_bitsandbytes
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_bitsandbytes_candidates_of_a_large_model_are_estimated_well_under_bf16(device, tmp_path):
    """random:gemma-2b (2.5B parameters) with --vram 24GB: bnb 8-bit and 4-bit candidates are listed (on CUDA
    too, on a machine without it), 4-bit weights at about a quarter of bf16's and 8-bit at about half."""
    space = tmp_path / "quantized.yaml"
    space.write_text("knobs:\n  dtype: {values: [bfloat16]}\n  quantization: {values: [none, bnb_8bit, bnb_4bit]}\n")
    rows = estimated("--model", "random:gemma-2b", "--vram", "24GB", "--device", device, "--space", str(space))
    by_quantization = {row["candidate"]["quantization"]: row for row in rows
                       if row["candidate"]["dtype"] == "bfloat16" and row["candidate"]["bnb_4bit_quant_type"] == "nf4"}
    assert {"none", "bnb_8bit", "bnb_4bit"} <= set(by_quantization)
    weights = {q: row["terms"]["weights"] for q, row in by_quantization.items()}
    assert 4.5e9 < weights["none"] < 5.5e9  # 2.51B parameters in bf16
    assert weights["bnb_4bit"] < 0.45 * weights["none"] and weights["bnb_8bit"] < 0.7 * weights["none"]
    assert by_quantization["bnb_4bit"]["estimate_bytes"] < by_quantization["none"]["estimate_bytes"]
    assert all(row["fits"] for row in by_quantization.values())


def test_the_summary_groups_what_drives_memory_and_all_lists_every_candidate(tmp_path):
    """The default output is about a screenful for the default space of a real-size model on CUDA (the question
    before a search: a line per dtype, quantization and cache, twelve of them torchao's where it is installed);
    its groups add up to the candidates of --json; --all lists each of them."""
    options = ("--model", "random:gemma-2b", "--vram", "6GB", "--device", "cuda", "--max-new-tokens", "64")
    summary = invoke("estimate", *options).output
    assert len(summary.splitlines()) < 70 and "quantization" in summary and "every candidate: --all" in summary
    assert "calibrated on an H200" in summary
    rows = estimated(*options)
    counts = re.findall(r"│\s+(\d+)\s+│[^│]+│[^│]+│[^│]+│\s+(\d+) of (\d+)\s+│", summary)
    assert sum(int(n) for n, _, _ in counts) == len(rows)
    assert sum(int(fit) for _, fit, _ in counts) == sum(row["fits"] for row in rows)
    assert 0 < sum(row["fits"] for row in rows) < len(rows)  # 6GB: bfloat16 without quantization does not fit

    space = tmp_path / "small.yaml"
    space.write_text("knobs:\n  dtype: {values: [bfloat16]}\n  cache_implementation: {values: [dynamic, static]}\n")
    every = invoke("estimate", *options, "--space", str(space), "--all").output
    assert every.count("bfloat16") >= 4 and "cache=static" in every and "KV cache" in every
