"""The memory budget: parsing --vram, the MemoryModel against real models and caches, `autotune estimate`,
and a search that records over-budget candidates without starting a worker."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from support import SMALL_PROMPTS, run_cli, space_for
from transformers import AutoModelForCausalLM, AutoTokenizer, StaticCache

from autotune.config.candidate import Candidate
from autotune.cli import main
from autotune.errors import InputError, NoFeasibleTrialError, StudyMismatchError
from autotune.config.measurement import Measurement
from autotune.memory import (CUDA_CONTEXT_BYTES, Estimator, GiB, MemoryEstimate, MemoryModel, MiB, Quantization,
                             load_config, parameter_inventory, parse_budget)
from autotune.memory.quantized import weight_bytes
from autotune.config.space import SearchSpace
from autotune.config.settings import SearchSettings
from autotune.tuner.loop import Tuner
from autotune.worker.budget import cap_device_memory, judge_measured
from autotune.config.workload import Workload

# ---- parse_budget --------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("24GB", 24 * 10**9), ("24GiB", 24 * 2**30), ("24000MB", 24 * 10**9), ("512MiB", 512 * 2**20),
    ("24gb", 24 * 10**9), (" 1.5GiB ", int(1.5 * 2**30)), ("100 MB", 10**8), ("2TB", 2 * 10**12),
])
def test_budget_amounts(text, expected):
    assert parse_budget(text) == expected


def test_budget_fraction_of_the_device():
    assert parse_budget("0.5", total_bytes=80 * GiB) == 40 * GiB
    assert parse_budget("1", total_bytes=1000) == 1000
    with pytest.raises(InputError, match="fraction .* not known here"):
        parse_budget("0.5")


@pytest.mark.parametrize("text", ["24", "-1GB", "1.5", "abc", "0GB", "0", "12XB", "", "GB", "1e9"])
def test_bad_budgets_say_the_accepted_forms(text):
    with pytest.raises(InputError) as info:
        parse_budget(text, total_bytes=80 * GiB)
    message = str(info.value)
    assert "24GB" in message and "GiB" in message and "0.5" in message and "\n" not in message


# ---- MemoryEstimate ------------------------------------------------------------------------------

def test_estimate_json_round_trip_and_total():
    e = MemoryEstimate(weights=10, kv_cache=20, assistant=0, activations=5, cuda_context=500, process_baseline=0,
                       kernel_cache=0, allocator_overhead=7, compile_workspace=3, device="cuda", dtype="bfloat16",
                       batch_size=2, max_cache_len=96)
    assert e.total == 545 and e.to_dict()["total"] == 545
    assert MemoryEstimate.from_json(e.to_json()) == e
    assert e.fits(545) is True and e.fits(544) is False and e.fits(None) is None
    with pytest.raises(ValueError, match="not the sum"):
        MemoryEstimate.from_dict({**e.to_dict(), "total": 1})


# ---- the model against real models ---------------------------------------------------------------

def models(fixture_models, bundled_model):
    return [bundled_model, fixture_models / "codelm-12m"]


def real_weight_bytes(path, dtype: str) -> int:
    """What the loaded model occupies: every parameter and buffer, as from_pretrained leaves them."""
    kwargs = {} if dtype == "auto" else {"dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return (sum(p.numel() * p.element_size() for p in model.parameters())
            + sum(b.numel() * b.element_size() for b in model.buffers()))


def space_candidates(device: str, assistant: str | None):
    space = space_for(SearchSpace.load("default"), device, batch_size=1, assistant=assistant,
                                                        has_flash_attn=True, has_flex_attention=True)
    yield from space.valid_candidates(assistant)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_estimate_reads_only_the_memory_fields(bundled_model, device):
    """Candidates equal in MEMORY_FIELDS share one estimate (Estimator keeps one per key): every other knob,
    varied over its values from several starting points, leaves the fresh estimate as it was."""
    from autotune.config.candidate import KNOBS
    from autotune.memory.estimate import MEMORY_FIELDS

    workload = Workload.from_file(SMALL_PROMPTS, batch_size=2, max_new_tokens=8)
    estimator = Estimator.for_model(str(bundled_model), workload)
    model = MemoryModel()
    samples = {int: (None, 3, 64), float: (None, 2.0)}
    starts = [Candidate(), Candidate(cache_implementation="static", compile="max-autotune", decode_loop="graph_loop"),
              Candidate(dtype="bfloat16", quantization="int8_weight_only", cache_implementation="static",
                        compile="default", compile_freezing=True),
              Candidate(decoding="prompt_lookup"), Candidate(quantization="bnb_4bit")]
    for start in starts:
        fresh = model.estimate(estimator.config, start, workload, device, prompt_lengths=estimator.prompt_lengths)
        for knob, domain in KNOBS.items():
            if knob in MEMORY_FIELDS:
                continue
            for value in samples.get(domain, domain):
                varied = replace(start, **{knob: value})
                assert model.estimate(estimator.config, varied, workload, device,
                                      prompt_lengths=estimator.prompt_lengths) == fresh, (knob, value)
        assert estimator(start, device) == fresh


@pytest.mark.slow  # every candidate of the default space, on two devices, for three models: minutes
def test_weights_term_is_the_real_parameter_bytes_for_every_candidate(fixture_models, bundled_model):
    workload = Workload.from_file(SMALL_PROMPTS, max_new_tokens=8)
    draft = str(fixture_models / "codelm-4m-draft")
    for path in models(fixture_models, bundled_model):
        estimator = Estimator.for_model(str(path), workload, assistant=draft)
        real = {dtype: real_weight_bytes(path, dtype) for dtype in ("auto", "float32", "float16", "bfloat16")}
        real_draft = {dtype: real_weight_bytes(draft, dtype) for dtype in ("float32", "float16", "bfloat16")}
        checked = set()
        for device in ("cpu", "cuda"):
            for candidate in space_candidates(device, draft):
                estimate = estimator(candidate, device)
                assert estimate.weights == real[candidate.dtype], (path, candidate.describe())
                if candidate.decoding == "assisted":  # the assistant runs in the target's dtype
                    assert estimate.assistant > real_draft[estimate.dtype]
                    draft_alone = estimator.memory_model.estimate(
                        load_config(draft), replace(candidate, decoding="standard", dtype=estimate.dtype), workload,
                        device, prompt_lengths=estimator.prompt_lengths)
                    assert estimate.assistant - real_draft[estimate.dtype] == draft_alone.kv_cache
                checked.add(candidate.dtype)
        assert checked == {"auto", "float32", "float16", "bfloat16"}
        assert real["auto"] == real["bfloat16"]  # both fixtures are stored in bfloat16


def real_static_cache_bytes(model, batch: int, prompt_len: int, max_cache_len: int) -> int:
    """Allocate a transformers StaticCache the way generate() does, fill it with a prefill, sum its tensors."""
    cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
    ids = torch.randint(3, model.config.vocab_size, (batch, prompt_len))
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated")  # its new name `cache` is not in 5.17
@pytest.mark.parametrize("dtype,batch,pad", [("bfloat16", 3, None), ("float32", 2, 32)])
def test_static_cache_term_is_a_real_static_cache(fixture_models, bundled_model, dtype, batch, pad):
    workload = Workload.from_file(SMALL_PROMPTS, max_new_tokens=8, batch_size=batch)
    candidate = Candidate(dtype=dtype, cache_implementation="static", pad_to_multiple_of=pad)
    for path in models(fixture_models, bundled_model):
        tokenizer = AutoTokenizer.from_pretrained(path)
        lengths = [len(tokenizer(p)["input_ids"]) for p in workload.prompts]
        longest = max(max(batch) for batch in [lengths[i:i + batch] for i in range(0, len(lengths) // batch * batch, batch)])
        if pad:
            longest = -(-longest // pad) * pad
        estimate = Estimator.for_model(str(path), workload)(candidate, "cpu")
        assert estimate.max_cache_len == longest + workload.max_new_tokens
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        assert estimate.kv_cache == real_static_cache_bytes(model, batch, longest, estimate.max_cache_len)
        # and the cache generate() itself allocates is no larger (transformers 5.24 sizes it one token shorter)
        tokenizer.padding_side = "left"
        inputs = tokenizer(list(workload.prompts[:batch]), return_tensors="pt", padding=True, pad_to_multiple_of=pad)
        out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                             cache_implementation="static", return_dict_in_generate=True, pad_token_id=0)
        cache = out.past_key_values
        used = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
        one_token = estimate.kv_cache // estimate.max_cache_len
        assert estimate.kv_cache - one_token <= used <= estimate.kv_cache or inputs["input_ids"].shape[1] < longest


def test_a_dynamic_cache_grows_to_the_static_size(fixture_models):
    workload = Workload.from_file(SMALL_PROMPTS, max_new_tokens=8)
    estimator = Estimator.for_model(str(fixture_models / "codelm-12m"), workload)
    assert estimator(Candidate(), "cpu").kv_cache == estimator(Candidate(cache_implementation="static"), "cpu").kv_cache


@pytest.mark.parametrize("quantization", [Quantization("int8"), Quantization("nf4"), Quantization("fp4"),
                                          Quantization("nf4", double_quant=True)])
def test_bitsandbytes_weights_keep_embeddings_and_norms_unquantized(fixture_models, quantization):
    bnb = pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization.scheme == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization.scheme,
                                    bnb_4bit_use_double_quant=quantization.double_quant)
    path = fixture_models / "codelm-12m"
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=config, device_map="cpu")
    real = sum(p.numel() * p.element_size() for p in model.parameters())
    real += sum(b.numel() * b.element_size() for b in model.buffers())
    for module in model.modules():  # the quantization state lives beside the parameters
        weight = getattr(module, "weight", None)
        if isinstance(weight, bnb.nn.Int8Params):
            real += weight.SCB.numel() * weight.SCB.element_size()
        state = getattr(weight, "quant_state", None)
        if state is not None:
            tensors = [state.absmax, state.code]
            if state.nested:
                tensors += [state.state2.absmax, state.state2.code, state.offset]
            real += sum(t.numel() * t.element_size() for t in tensors)
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16  # unquantized, as the model assumes
    assert weight_bytes(parameter_inventory(load_config(str(path))), "bfloat16", quantization) == real


def test_gemma_sized_logits_dominate_activations():
    """No weights needed: a config is enough (gemma-2b: 256k vocabulary, 1 KV head of 256)."""
    from transformers import GemmaConfig

    config = GemmaConfig(hidden_size=2048, num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1,
                         head_dim=256, intermediate_size=16384, vocab_size=256000, dtype="bfloat16")
    workload = Workload(prompts=("x" * 200,) * 4, batch_size=4, max_new_tokens=64)
    lengths = (200,) * 4
    e = MemoryModel().estimate(config, Candidate(cache_implementation="static"), workload, "cuda", prompt_lengths=lengths)
    assert e.dtype == "bfloat16" and e.max_cache_len == 264
    assert e.kv_cache == 18 * 2 * 4 * 1 * 256 * 264 * 2
    # 2.51B parameters (the tied 256k x 2048 embedding is 0.52B of them) x 2 bytes, counted without a load
    assert 4.9e9 < e.weights < 5.1e9
    # teacher-forced scoring keeps all 263 positions x 256000 logits, then float32 rows of the continuation
    assert e.activations >= 263 * 256000 * 2 + 64 * 256000 * 4
    assert e.cuda_context == CUDA_CONTEXT_BYTES and e.process_baseline == 0 and e.kernel_cache == 0
    compiled = MemoryModel().estimate(config, Candidate(cache_implementation="static", compile="reduce-overhead"),
                                      workload, "cuda", prompt_lengths=lengths)
    assert compiled.compile_workspace > 0 and compiled.total > e.total


def test_hub_id_that_cannot_be_had_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="cannot get the config of hub model 'no-such-org/no-such-model'.*download"):
        load_config("no-such-org/no-such-model")


# ---- the worker's side of the budget -------------------------------------------------------------

def test_worker_budget_on_cpu_is_judged_after_the_trial():
    ok = Measurement(status="ok", decode_tokens_per_s=10.0, peak_memory_bytes=400 * MiB)
    assert cap_device_memory(1 * MiB, "cpu") is None  # nothing to cap on CPU
    judged = judge_measured(ok, 1 * MiB, "cpu")  # this test process is well over 1 MiB resident
    assert (judged.status, judged.failure_kind) == ("oom", "over_budget_measured")
    assert judged.decode_tokens_per_s == 10.0 and "over the --vram budget" in judged.message
    assert judge_measured(ok, 1000 * GiB, "cpu") == ok
    assert judge_measured(ok, None, "cpu") == ok


def test_worker_cap_on_cuda_leaves_room_for_the_context(monkeypatch):
    """The fraction arithmetic, with torch.cuda's three calls replaced by a 141 GB card (no CUDA here)."""
    from types import SimpleNamespace

    from autotune.memory import CUDA_CONTEXT_BYTES
    from autotune.worker.budget import BudgetTooSmall

    card = 141 * 10**9
    calls = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace(total_memory=card))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda fraction, *a: calls.append(fraction))
    fraction = cap_device_memory(24 * 10**9, "cuda")
    assert calls == [fraction] and fraction == pytest.approx((24 * 10**9 - CUDA_CONTEXT_BYTES) / card)
    assert cap_device_memory(200 * 10**9, "cuda") is None and len(calls) == 1  # the whole card: no cap
    with pytest.raises(BudgetTooSmall, match="CUDA context"):
        cap_device_memory(100 * MiB, "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_worker_on_cuda_runs_out_of_memory_inside_a_small_budget(tmp_path, bundled_model):
    from autotune.memory import CUDA_CONTEXT_BYTES
    from autotune.worker.job import Job
    from autotune.worker.launcher import launch

    def run(budget, name):
        job = Job(model=str(bundled_model), candidate=Candidate(), workload=Workload.from_file(SMALL_PROMPTS, max_new_tokens=8),
                  device="cuda", role="baseline", reference_path=str(tmp_path / f"{name}.pt"),
                  result_path=str(tmp_path / name / "result.json"), repeats=1, warmup=0, budget_bytes=budget)
        return launch(job, tmp_path / name, timeout_s=600)

    roomy = run(CUDA_CONTEXT_BYTES + 2 * GiB, "roomy")
    assert roomy.ok, roomy.traceback
    assert max(p["reserved"] for p in roomy.memory_phases.values()) <= 2 * GiB
    tight = run(CUDA_CONTEXT_BYTES + 1 * MiB, "tight")  # 1 MiB for a 7 MB model
    assert tight.status == "oom", tight.traceback


# ---- the command line ----------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_estimate_json(bundled_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("estimate", "--model", str(bundled_model), "--vram", "420MiB", "--device", "cpu",
                    "--prompts", str(SMALL_PROMPTS), "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)  # which candidates: tests/cli/test_estimate.py
    for row in rows:
        assert {"candidate", "estimate_bytes", "terms", "fits"} <= set(row)
        assert row["estimate_bytes"] == sum(row["terms"].values())
        assert row["fits"] == (row["estimate_bytes"] <= 420 * MiB)
        Candidate.from_dict(row["candidate"])
    assert {row["fits"] for row in rows} == {True, False}  # compiled candidates do not fit, plain ones do


def test_estimate_for_cuda_on_a_machine_without_it(bundled_model, tmp_path):
    """--device cuda where there is none: the CUDA terms (context, CUDA graphs of the compile modes) are
    estimated for a card with this machine's packages. (A space of the compile knobs: the default space on
    CUDA is tests/cli/test_estimate_command.py's.)"""
    space = tmp_path / "compile.yaml"
    space.write_text("knobs:\n  cache_implementation: {values: [dynamic, static]}\n"
                     "  compile: {values: [off, default, reduce-overhead, max-autotune], "
                     "when: {cache_implementation: [static]}}\n"
                     "  decode_loop: {values: [generate, static_loop, graph_loop], "
                     "when: {compile: [default, reduce-overhead, max-autotune]}}\n")
    options = ("--model", str(bundled_model), "--vram", "24GB", "--device", "cuda", "--space", str(space),
               "--prompts", str(SMALL_PROMPTS))
    result = invoke("estimate", *options, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert all(row["fits"] and row["terms"]["cuda_context"] > 0 for row in rows)
    assert any(row["candidate"]["compile"] == "reduce-overhead" for row in rows)
    graphs = [row for row in rows if row["candidate"]["decode_loop"] == "graph_loop"]
    plain = [row for row in rows if row["candidate"]["compile"] == "default" and
             row["candidate"]["decode_loop"] == "static_loop"]
    assert graphs and plain and min(r["terms"]["compile_workspace"] for r in graphs) > \
        max(r["terms"]["compile_workspace"] for r in plain)  # a CUDA graph keeps a pool of a step's activations
    table = invoke("estimate", *options)
    assert table.exit_code == 0 and "fit in 22.35 GiB (24GB)" in table.output


def test_estimate_fraction_without_the_card_is_a_clear_error(bundled_model):
    if torch.cuda.is_available():
        pytest.skip("this machine has the card")
    result = invoke("estimate", "--model", str(bundled_model), "--vram", "0.5", "--device", "cuda")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "give an amount, like 24GB" in result.output


@pytest.mark.parametrize("command", ["search", "estimate"])
def test_bad_vram_is_one_clear_line(bundled_model, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = invoke(command, "--model", str(bundled_model), "--device", "cpu", "--vram", "abc")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "memory budget 'abc'" in lines[0] and "24GB" in lines[0]
    assert not (tmp_path / "studies").exists()


# ---- the study -----------------------------------------------------------------------------------

SPACE = """
knobs:
  cache_implementation: {values: [dynamic, static]}
  compile: {values: ["off", default], when: {cache_implementation: [static]}}
"""


@pytest.fixture
def small_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def settings_for(tmp_path, bundled_model, small_space, **kw) -> SearchSettings:
    return SearchSettings(model=str(bundled_model), study_name="m", space=str(small_space), device="cpu",
                          root=str(tmp_path / "studies"), repeats=1, warmup=0,
                          workload=Workload.from_file(SMALL_PROMPTS, max_new_tokens=8), **kw)


def test_resuming_with_another_budget_is_refused(tmp_path, bundled_model, small_space):
    Tuner(settings_for(tmp_path, bundled_model, small_space, trials=1, vram=8 * GiB)).prepare()
    with pytest.raises(StudyMismatchError, match="--vram"):
        Tuner(settings_for(tmp_path, bundled_model, small_space, trials=1, vram=4 * GiB)).prepare()


@pytest.mark.slow
def test_tiny_budget_on_cpu_measures_the_baseline_and_skips_the_rest(tmp_path, bundled_model, small_space):
    """The baseline is launched whatever its estimate (it is the reference) and judged on its measured
    RSS; the seed recipe (static cache + compile) is over the budget by estimate and never launched."""
    settings = settings_for(tmp_path, bundled_model, small_space, trials=2, vram=100 * MiB)
    tuner = Tuner(settings)
    study = tuner.run()
    baseline, recipe = study.trials
    assert (baseline.user_attrs["status"], baseline.user_attrs["failure_kind"]) == ("oom", "over_budget_measured")
    assert baseline.user_attrs["decode_tokens_per_s"] > 0  # measured, then judged
    assert (recipe.user_attrs["status"], recipe.user_attrs["failure_kind"]) == ("oom", "over_budget")
    assert recipe.user_attrs["role"] == "seed-recipe" and max(recipe.constraints.values()) > 0
    assert recipe.user_attrs["estimated_memory_bytes"] > 100 * MiB
    assert (settings.study_dir / "trials" / "00000").is_dir()
    assert not (settings.study_dir / "trials" / "00001").exists()
    record = json.loads((settings.study_dir / "results" / "trial-00001.json").read_text())
    assert record["memory_estimate"]["compile_workspace"] > 0
    assert record["estimated_memory_bytes"] == record["memory_estimate"]["total"]
    with pytest.raises(NoFeasibleTrialError):
        tuner.export()


@pytest.mark.slow
def test_search_with_vram_records_over_budget_candidates_without_a_worker(tmp_path, bundled_model, small_space):
    workload = Workload.from_file(SMALL_PROMPTS, max_new_tokens=8)
    estimator = Estimator.for_model(str(bundled_model), workload)
    recipe = estimator(Candidate(cache_implementation="static", compile="default"), "cpu").total
    baseline = estimator(Candidate(), "cpu").total
    budget = recipe - MiB  # room for the plain candidates, not for compilation
    assert baseline < budget
    run = run_cli("search", "--model", str(bundled_model), "--device", "cpu", "--trials", "3", "--study", "v",
                  "--space", str(small_space), "--prompts", str(SMALL_PROMPTS), "--max-new-tokens", "8",
                  "--repeats", "1", "--warmup", "0", "--vram", f"{budget}B", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    import optuna

    study = optuna.load_study(study_name="v", storage=f"sqlite:///{tmp_path}/studies/v.db")
    assert study.user_attrs["autotune"]["vram"] == budget
    by_status = {}
    for t in study.trials:
        assert t.user_attrs["estimated_memory_bytes"] > 0
        by_status.setdefault(t.user_attrs["failure_kind"] or t.user_attrs["status"], []).append(t)
        if t.user_attrs["failure_kind"] == "over_budget":
            assert json.loads(t.user_attrs["candidate"])["compile"] == "default"
            assert t.user_attrs["estimated_memory_bytes"] > budget
            assert not (tmp_path / "studies" / "v" / "trials" / f"{t.number:05d}").exists()
            assert "over the --vram budget" in t.user_attrs["message"]
    assert study.trials[1].user_attrs["failure_kind"] == "over_budget"  # the seed recipe
    assert study.trials[0].user_attrs["status"] == "ok"
    assert "oom (over_budget)" in run.stdout
    preset = json.loads((tmp_path / "studies" / "v.preset.json").read_text())
    assert "compile" not in preset["runtime"]


def test_quantization_of_reads_the_candidates_bitsandbytes_knobs():
    from autotune.memory import quantization_of

    assert quantization_of(Candidate()) is None
    assert quantization_of(Candidate(quantization="bnb_8bit")) == Quantization("int8", False)
    assert quantization_of(Candidate(quantization="bnb_4bit", bnb_4bit_quant_type="fp4",
                                     bnb_4bit_use_double_quant=True)) == Quantization("fp4", True)


@pytest.mark.parametrize("measured_file", ["h200_fixture_peaks.json", "h200_gemma2b_peaks.json",
                                           "h200_gemma2b_graph_peaks.json", "h200_gemma2b_8gb_peaks.json"])
def test_cuda_estimates_hold_for_the_peaks_measured_on_the_h200(fixture_models, measured_file):
    """The CUDA calibration against what the H200 measured: every estimate within 10 % of the device memory
    the trial had in use, the allocator's and outside it. h200_fixture_peaks.json: the fixture study of
    benchmarks/journal/2026-11-29-h200-s3.md (eager, quantized, prompt-lookup, assisted, float32 flex_attention and
    compiled static-loop trials); h200_gemma2b_peaks.json: the random gemma-2b study of the sixth (compiled
    static loops in three dtypes, the seed recipe); h200_gemma2b_graph_peaks.json and _8gb_peaks.json: the
    seventh's (the graph loop in bf16 and int8; a study under --vram 8GB)."""
    from pathlib import Path

    from autotune.config.models import is_random

    data = json.loads((Path(__file__).parents[1] / "data" / measured_file).read_text())
    root = Path(__file__).resolve().parents[2]
    model = data["model"] if is_random(data["model"]) else str(fixture_models / data["model"])
    workload = Workload.from_file(str(root / data["prompts"]), max_new_tokens=data["max_new_tokens"])
    estimators = {}
    for row in data["trials"]:
        assistant = row.get("assistant")
        if assistant not in estimators:
            estimators[assistant] = Estimator.for_model(
                model, workload,
                assistant=str(fixture_models / assistant) if assistant else None)
        candidate = Candidate.from_dict({**row["candidate"],
                                         "assistant": str(fixture_models / assistant) if assistant else None})
        got = estimators[assistant](candidate, "cuda")
        measured = row["device_in_use_bytes"]
        assert 0.9 <= got.total / measured <= 1.1, (row["trial"], got.total / measured, got.describe())
        outside = measured - row["peak_reserved_bytes"]  # the context and the kernels
        assert 0.85 <= (got.cuda_context + got.kernel_cache) / outside <= 1.15, (row["trial"], outside)


def test_int8_weight_only_counts_a_prefills_float_copies_of_a_chunk_of_rows(fixture_models):
    from autotune.config.candidate import Candidate
    from autotune.memory import MemoryModel, load_config
    from autotune.memory.inventory import Shapes
    from autotune.config.workload import Workload

    config = load_config(str(fixture_models / "codelm-12m"))
    workload = Workload(prompts=("def f(x):\n",), max_new_tokens=8)
    plain = Candidate(dtype="bfloat16", cache_implementation="static", compile="default")
    int8 = Candidate(**{**plain.to_dict(), "quantization": "int8_weight_only"})
    a, b = (MemoryModel().estimate(config, c, workload, "cuda", prompt_lengths=(5,)) for c in (plain, int8))
    from autotune.runtime.quant.quantize import PREFILL_CHUNK_ELEMENTS

    shapes = Shapes.of(config)
    head = shapes.vocab * shapes.hidden
    # a bf16 prefill dequantizes at most PREFILL_CHUNK_ELEMENTS weights at a time: float32, then bf16
    assert b.activations - a.activations == min(head, PREFILL_CHUNK_ELEMENTS) * (4 + 2)
    assert b.weights == a.weights  # the load peaks at the float weights; the int8 copies take their blocks


def test_freezing_counts_copies_of_the_linear_weights(fixture_models):
    from autotune.config.candidate import Candidate
    from autotune.memory import MemoryModel, load_config, parameter_inventory
    from autotune.config.workload import Workload

    config = load_config(str(fixture_models / "codelm-12m"))
    workload = Workload(prompts=("def f(x):\n",), max_new_tokens=8)
    plain = Candidate(dtype="bfloat16", cache_implementation="static", compile="default")
    frozen = Candidate(**{**plain.to_dict(), "compile_freezing": True})
    a, b = (MemoryModel().estimate(config, c, workload, "cuda", prompt_lengths=(5,)) for c in (plain, frozen))
    linears = sum(n for n, _ in parameter_inventory(config).linears)
    assert b.compile_workspace - a.compile_workspace == 2 * linears
