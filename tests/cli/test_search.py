"""End to end: `autotune search` on the bundled model, in worker processes, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from support import SMALL_PROMPTS, run_cli, run_plain, tokens_as_built

from autotune.tuner.trials import counts_toward_trials

pytestmark = pytest.mark.slow


def search_args(model, trials: int) -> list[str]:
    return ["search", "--model", str(model), "--device", "cpu", "--trials", str(trials), "--study", "demo",
            "--prompts", str(SMALL_PROMPTS), "--max-new-tokens", "16", "--seed", "0"]


def counted(study) -> list:
    """The trials that count toward --trials: all but the sampler's invalid combinations."""
    return [t for t in study.trials if counts_toward_trials(t)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, bundled_model):
    """A study run to 4 trials, then resumed by the same command asking for 6, then once more."""
    workdir = tmp_path_factory.mktemp("demo")
    runs = [run_cli(*search_args(bundled_model, 4), cwd=workdir)]
    counts = [len(counted(optuna.load_study(study_name="demo", storage=f"sqlite:///{workdir}/studies/demo.db")))]
    runs.append(run_cli(*search_args(bundled_model, 6), cwd=workdir))
    runs.append(run_cli(*search_args(bundled_model, 6), cwd=workdir))
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{workdir}/studies/demo.db")
    return {"dir": workdir, "runs": runs, "first_count": counts[0], "study": study}


def test_search_measures_baseline_first_then_static_cache_and_prompt_lookup(demo):
    trials = demo["study"].trials
    baseline = trials[0]
    assert baseline.user_attrs["role"] == "baseline"
    assert json.loads(baseline.user_attrs["candidate"])["cache_implementation"] == "dynamic"
    assert baseline.user_attrs["top1_agreement"] == 1.0 and baseline.user_attrs["prefix_match"] == 1.0
    assert trials[1].user_attrs["role"] == "seed-recipe"
    # measured to the end, or stopped early after a timed pass as clearly slower than the best (--early-stop)
    measured = [json.loads(t.user_attrs["candidate"]) for t in trials
                if t.user_attrs.get("status") in ("ok", "stopped") and t.user_attrs.get("duplicate_of") is None]
    assert any(c["cache_implementation"] == "static" for c in measured)
    assert any(c["decoding"] == "prompt_lookup" for c in measured)
    for t in trials:
        if t.user_attrs.get("status") == "ok":
            for name in ("decode_tokens_per_s", "e2e_tokens_per_s", "ttft_s", "itl_p50_s", "itl_p95_s",
                         "peak_memory_bytes", "load_s", "warmup_s", "prefix_match", "top1_agreement", "mean_kl"):
                assert t.user_attrs[name] is not None, name
            assert t.user_attrs["decode_tokens_per_s"] > 0 and t.value == t.user_attrs["decode_tokens_per_s"]
    assert demo["study"].metric_names == ["decode_tokens_per_s"]


def test_search_prints_progress_table_and_preset_path(demo):
    out = demo["runs"][0].stdout
    assert "trial 0 (baseline)" in out and "decode tok/s" in out
    assert "preset written to studies/demo.preset.json" in out
    assert (demo["dir"] / "studies" / "demo.preset.json").is_file()


def test_rerunning_resumes_to_the_total_not_more(demo):
    assert demo["first_count"] == 4
    assert len(counted(demo["study"])) == 6
    assert "6 of 6 trials done" in demo["runs"][2].stdout
    extra = [t for t in demo["study"].trials if not counts_toward_trials(t)]
    for trial in extra:  # invalid combinations: recorded, no worker started for them
        assert not (demo["dir"] / "studies" / "demo" / "trials" / f"{trial.number:05d}").exists()


def test_preset_loads_with_plain_transformers_and_generates(demo):
    script = f"""
import json
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
p = json.load(open({str(demo["dir"] / "studies" / "demo.preset.json")!r}))
model = AutoModelForCausalLM.from_pretrained(p["model"], **p["load_kwargs"])
gen = GenerationConfig(**p["generation_config"])
tok = AutoTokenizer.from_pretrained(p["model"])
out = model.generate(**tok("def add(a, b):\\n", return_tensors="pt"), generation_config=gen)
print(repr(tok.decode(out[0])))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("'") and len(run.stdout.strip()) > len("'def add(a, b):\\n'")


def test_load_preset_applies_runtime_hints(demo):
    script = f"""
import autotune, json
from transformers import AutoTokenizer
model, gen = autotune.load_preset({str(demo["dir"] / "studies" / "demo.preset.json")!r}, device="cpu")
p = json.load(open({str(demo["dir"] / "studies" / "demo.preset.json")!r}))
tok = AutoTokenizer.from_pretrained(p["model"])
out = model.generate(**tok("class Point:\\n", return_tensors="pt"), generation_config=gen)
print(out.shape[1] - tok("class Point:\\n", return_tensors="pt")["input_ids"].shape[1])
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.strip().splitlines()[-1]) > 0


def test_two_exports_are_byte_identical(demo):
    first = run_cli("export", "--study", "demo", "-o", "a.json", cwd=demo["dir"])
    second = run_cli("export", "--study", "demo", "-o", "b.json", cwd=demo["dir"])
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = (demo["dir"] / "a.json").read_bytes(), (demo["dir"] / "b.json").read_bytes()
    assert a == b
    preset = json.loads(a)
    assert set(preset) >= {"model", "load_kwargs", "generation_config", "runtime", "measurement", "environment"}
    assert preset["environment"]["torch"] and preset["environment"]["device"] == "cpu"
    best = max((t for t in demo["study"].trials if t.state.name == "COMPLETE"
                and all(v <= 0 for v in t.constraints.values())), key=lambda t: (t.value, -t.number))
    assert preset["study"]["trial"] == best.number
    assert preset["measurement"]["decode_tokens_per_s"] == pytest.approx(best.value)


def test_exported_folder_generates_the_trials_tokens_without_autotune(demo):
    """`export --folder`: the best trial as a model folder, run by plain transformers in a process where
    autotune cannot be imported, generates what the trial's configuration generates (built as the worker
    built it)."""
    from autotune.config.preset import Preset

    done = run_cli("export", "--study", "demo", "-o", "best.json", "--folder", "best", cwd=demo["dir"])
    assert done.returncode == 0, done.stderr
    assert "model folder written to best/" in done.stdout and "trust_remote_code=True" in done.stdout
    preset = Preset.read(demo["dir"] / "best" / "autotune_preset.json")
    assert preset == Preset.read(demo["dir"] / "best.json")
    assert run_plain(demo["dir"] / "best")["tokens"] == tokens_as_built(preset)
