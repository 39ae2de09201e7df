"""Equivalence metrics on real models: they say "same" for the same model and tell different models apart."""

from __future__ import annotations

from support import build_candidate

import pytest
import torch

from autotune.config.candidate import Candidate
from autotune.config.gate import Gate
from autotune.config.measurement import Measurement
from autotune.worker import equivalence
from autotune.worker.measure import run_pass
from autotune.config.workload import Workload

WORKLOAD = Workload.default(max_new_tokens=24)


def reference_of(model_path) -> tuple[dict, object]:
    built = build_candidate(str(model_path), Candidate(), WORKLOAD, "cpu")
    continuations, _ = run_pass(built, WORKLOAD)
    return equivalence.build_reference(built.model, built.tokenizer, WORKLOAD.prompts, continuations, "cpu"), built


def test_baseline_against_itself_agrees_fully(bundled_model):
    reference, built = reference_of(bundled_model)
    again, _ = run_pass(built, WORKLOAD)
    scores = equivalence.compare(reference, built.model, again, "cpu")
    assert scores["top1_agreement"] == 1.0
    assert scores["prefix_match"] == 1.0
    assert scores["mean_kl"] == pytest.approx(0.0, abs=1e-6)
    assert scores["divergence_margin"] is None


def test_another_model_agrees_clearly_less(bundled_model, fixture_models):
    reference, _ = reference_of(fixture_models / "codelm-12m")
    small = build_candidate(str(bundled_model), Candidate(), WORKLOAD, "cpu")
    continuations, _ = run_pass(small, WORKLOAD)
    scores = equivalence.compare(reference, small.model, continuations, "cpu")
    assert scores["top1_agreement"] < 0.9
    assert scores["prefix_match"] < 0.8
    assert scores["mean_kl"] > 0.05
    assert scores["divergence_margin"] is not None and scores["divergence_margin"] > 0


def test_a_dtype_change_is_measured_not_assumed(bundled_model):
    reference, _ = reference_of(bundled_model)  # the model's own dtype: bfloat16
    fp32 = build_candidate(str(bundled_model), Candidate(dtype="float32"), WORKLOAD, "cpu")
    continuations, _ = run_pass(fp32, WORKLOAD)
    scores = equivalence.compare(reference, fp32.model, continuations, "cpu")
    assert scores["top1_agreement"] > 0.95
    assert 0 < scores["mean_kl"] < 0.01


def test_float32_is_scored_against_its_own_reference_beside_the_noise_floor(bundled_model):
    reference, built = reference_of(bundled_model)  # bfloat16, as stored
    fp32 = build_candidate(str(bundled_model), Candidate(dtype="float32"), WORKLOAD, "cpu")
    equivalence.add_float32(reference, fp32.model)
    baseline = equivalence.set_noise_floor(reference, equivalence.compare(reference, built.model, None, "cpu"))
    assert baseline["top1_agreement"] == 1.0 and baseline["float32_top1_agreement"] > 0.9
    assert (baseline["floor_top1_agreement"], baseline["floor_mean_kl"]) == (
        baseline["float32_top1_agreement"], baseline["float32_mean_kl"]) and baseline["floor_mean_kl"] > 0
    scores = equivalence.compare(reference, fp32.model, run_pass(fp32, WORKLOAD)[0], "cpu")
    assert scores["float32_top1_agreement"] == 1.0
    assert scores["float32_mean_kl"] == pytest.approx(0.0, abs=1e-6)
    assert scores["floor_top1_agreement"] == baseline["floor_top1_agreement"]
    assert Gate("noise-floor", 0.99).passes(Measurement(status="ok", **scores))


def test_a_float32_baseline_is_its_own_float32_reference(bundled_model):
    built = build_candidate(str(bundled_model), Candidate(dtype="float32"), WORKLOAD, "cpu")
    continuations, _ = run_pass(built, WORKLOAD)
    reference = equivalence.build_reference(built.model, built.tokenizer, WORKLOAD.prompts, continuations, "cpu")
    equivalence.add_float32(reference, None)
    scores = equivalence.set_noise_floor(reference, equivalence.compare(reference, built.model, continuations, "cpu"))
    assert (scores["floor_top1_agreement"], scores["float32_top1_agreement"]) == (1.0, 1.0)


def test_coarse_kl_is_zero_for_equal_and_positive_for_different_distributions():
    logprobs = torch.log_softmax(torch.randn(5, 100), dim=-1)
    values, ids = logprobs.topk(8, dim=-1)
    assert equivalence.coarse_kl(values, ids, logprobs).max() < 1e-5
    other = torch.log_softmax(torch.randn(5, 100), dim=-1)
    assert (equivalence.coarse_kl(values, ids, other) > 0).all()


def test_prefix_length():
    assert equivalence.prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert equivalence.prefix_length([1, 2], [1, 2]) == 2


@pytest.mark.slow
def test_torchao_int8_weight_only_keeps_the_trained_models_predictions(fixture_models):
    """The equivalence gate as a trial applies it: torchao's int8 against the baseline of codelm-12m, over 64
    new tokens a prompt (over 24 one flipped prediction moves the score by 1.7 points; 0.994 measured, as
    autotune's own int8 scores there)."""
    pytest.importorskip("torchao")
    path = fixture_models / "codelm-12m"
    workload = Workload.default(max_new_tokens=64)
    base = build_candidate(str(path), Candidate(), workload, "cpu")
    reference = equivalence.build_reference(base.model, base.tokenizer, workload.prompts,
                                            run_pass(base, workload)[0], "cpu")
    int8 = build_candidate(str(path), Candidate(quantization="torchao_int8_weight_only"), workload, "cpu")
    assert type(int8.model.model.layers[0].self_attn.q_proj.weight).__name__ == "Int8Tensor"
    continuations, _ = run_pass(int8, workload)
    scores = equivalence.compare(reference, int8.model, continuations, "cpu")
    assert scores["top1_agreement"] >= 0.99, scores
