"""benchmarks/knobs.py on the bundled model: a run interrupted midway keeps what it measured, and --resume
measures only the rest (a GPU session ends at its time limit wherever the table is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
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


def h200_space():
    """The default space as the H200 sees it for random gemma-2b (bitsandbytes not compileable)."""
    from support import space_for

    from autotune.config.space import SearchSpace

    return space_for(
        SearchSpace.load("default"), "cuda", batch_size=1, assistant=None, has_bf16=True, has_flash_attn=False, has_flex_attention=True,
        has_triton=True, has_bitsandbytes=True, bnb_compileable=False, random_weights=True)


def test_per_knob_rows_change_one_knob_with_what_it_needs():
    """--per-knob: a row for every knob value of the space the base does not hold; a knob's condition is
    met (an SDPA backend with sdpa attention, a bitsandbytes option with its quantization); a combination
    invalid with the base is made with compile off and its reason kept; one that builds the base again is
    left out; a value left out on this machine keeps its row, to be skipped with the reason."""
    from dataclasses import asdict

    from support import load_benchmark

    from autotune.config.candidate import Candidate

    knobs_module, space = load_benchmark("knobs"), h200_space()
    base = knobs_module.project(space, asdict(Candidate(
        dtype="bfloat16", cache_implementation="static", compile="default", compile_fullgraph=True,
        decode_loop="graph_loop", compile_api="generate")))
    rows, notes = knobs_module.per_knob(base, space)
    changes = dict(rows)
    assert rows[0] == ("base: " + base.describe(), {})
    # a row names the other knobs it changes: what the knob's condition needs, what a repair changed
    assert changes["sdpa_backend=math (attn_implementation=sdpa)"] == {"attn_implementation": "sdpa",
                                                                       "sdpa_backend": "math"}
    # bitsandbytes is not compileable here: its rows are made with compile off, the reason kept
    assert changes["llm_int8_threshold=4.0 (quantization=bnb_8bit, compile=off)"]["quantization"] == "bnb_8bit"
    assert "not compileable" in notes["quantization=bnb_4bit (compile=off)"]
    # the offloaded cache cannot be captured by the graph loop: through generate() instead
    assert changes["cache_implementation=offloaded_static (decode_loop=generate)"]["decode_loop"] == "generate"
    assert "side streams" in notes["cache_implementation=offloaded_static (decode_loop=generate)"]
    # compile_api plays no part beside a decode loop, and graph_loop's reduce-overhead is its default
    assert not any(label.startswith(("compile_api=", "compile=reduce-overhead")) for label in changes)
    # the bitsandbytes 8-bit row takes the first threshold: a threshold=6.0 row would repeat it
    assert not any(label.startswith("llm_int8_threshold=6.0") for label in changes)
    assert changes["decode_loop=static_loop"] == {"decode_loop": "static_loop"}
    # prompt lookup's own options are not reachable on random weights; the knob value keeps a row
    assert not any(label.startswith("prompt_lookup_num_tokens") for label in changes)
    skipped = knobs_module.skip_reason(space, Candidate(**{**asdict(base), **changes["decoding=prompt_lookup"]}))
    assert skipped and "random weights" in skipped
    # every configuration once, and each valid on this machine unless its value is left out
    built = [Candidate(**{**asdict(base), **c}) for _, c in rows]
    assert len({c.key() for c in built}) == len(built)
    left_out = {f"{k}={v}" for k, v, _ in space.left_out}
    assert all(space.invalid_reason(c) is None for (label, _), c in zip(rows, built) if label not in left_out)


def test_per_knob_repairs_a_change_through_every_rule_it_meets():
    """From the eighth session's best (the graph loop with freezing): generate() is invalid with freezing, so
    its row turns freezing off; the flash SDPA kernel meets three rules (padding, the decode loops, freezing)."""
    from dataclasses import asdict

    from support import load_benchmark

    from autotune.config.candidate import Candidate

    knobs_module, space = load_benchmark("knobs"), h200_space()
    base = knobs_module.project(space, asdict(Candidate(
        attn_implementation="eager", cache_implementation="static", compile="default", compile_fullgraph=True,
        compile_freezing=True, decode_loop="graph_loop", pad_to_multiple_of=16)))
    changes = dict(knobs_module.per_knob(base, space)[0])
    assert changes["decode_loop=generate (compile_freezing=False)"] == {"decode_loop": "generate",
                                                                       "compile_freezing": False}
    flash = changes["sdpa_backend=flash (attn_implementation=sdpa, compile_freezing=False, decode_loop=generate, "
                    "pad_to_multiple_of=None)"]
    assert space.invalid_reason(Candidate(**{**asdict(base), **flash})) is None


@pytest.mark.slow
def test_per_knob_early_stop_takes_the_bases_speed(tmp_path, bundled_model):
    """--per-knob --early-stop: the base is measured first; a row under that fraction of its speed stops after
    one pass and says so in the table."""
    run = knobs(tmp_path, bundled_model, "--per-knob", "--early-stop", "100", "--repeats", "2",
                only=("base: ", "pad_to_multiple_of=8"))
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads((tmp_path / "knobs.json").read_text())["results"]
    assert [r["label"].split(":")[0] for r in rows] == ["base", "pad_to_multiple_of=8"]
    assert rows[0]["runs"]["1"]["status"] == "ok"
    assert rows[1]["runs"]["1"]["status"] == "stopped"  # 100x the base's speed: no configuration reaches it
    assert "(stopped)" in run.stdout and "stopped after one pass" in run.stdout


def test_table_merges_parts_measured_side_by_side(tmp_path):
    """--table A B: one table of the rows of two --out files, the base first, each configuration once."""
    def part(name, labels):
        rows = [{"label": label, "candidate": {"dtype": dtype}, "runs": {"1": {
            "status": "ok", "decode_tokens_per_s": speed, "peak_memory_bytes": 1e9, "warmup_s": 1.0, "recompiles": 0}}}
            for label, dtype, speed in labels]
        (tmp_path / name).write_text(json.dumps({"args": {"batch_sizes": [1]}, "results": rows}))
        return str(tmp_path / name)

    first = part("k.json", [("dtype=float16", "float16", 12.5)])
    second = part("k-2.json", [("base: dtype=float32", "float32", 10.0), ("dtype=float16", "float16", 99.0)])
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "knobs.py"), "--table", first, second],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith(("base", "dtype"))]
    assert [line.split(" | ")[0].strip() for line in lines] == ["base: dtype=float32", "dtype=float16"]
    assert "12.5" in lines[1] and "99.0" not in run.stdout


def test_only_takes_prefixes_or_one_label_exactly():
    from support import load_benchmark

    knobs_module = load_benchmark("knobs")
    label = "decode_loop=graph_loop max-autotune fullgraph"
    assert knobs_module.selects(label, label + ", int8_weight_only")  # a prefix
    assert not knobs_module.selects(label + "$", label + ", int8_weight_only")
    assert knobs_module.selects(label + "$", label)


def test_a_per_knob_row_names_the_compile_mode_its_condition_needs():
    """From a max-autotune base (which tunes by coordinate descent already), the coordinate-descent row
    compiles with mode default: its label says so (the thirteenth GPU session's table read it as the base's
    own build, and its 167 tok/s at batch 1 as an anomaly, when it was the default compile's)."""
    from dataclasses import asdict

    from support import load_benchmark

    from autotune.config.candidate import Candidate

    knobs_module, space = load_benchmark("knobs"), h200_space()
    base = knobs_module.project(space, asdict(Candidate(
        dtype="bfloat16", attn_implementation="eager", quantization="int8_weight_only", cache_implementation="static",
        compile="max-autotune", compile_fullgraph=True, decode_loop="static_loop")))
    changes = dict(knobs_module.per_knob(base, space)[0])
    assert changes["compile_tuning=coordinate_descent (compile=default)"] == {
        "compile": "default", "compile_tuning": "coordinate_descent"}
    assert "quantization=bnb_8bit (compile=off)" in changes  # its threshold comes with it, unnamed
