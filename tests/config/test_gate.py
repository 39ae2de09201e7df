"""The equivalence gate: the baseline rule, the noise-floor rule, and how a study or preset records them.

The figures are the ones measured with benchmarks/noise_floor.py (journal 2026-12-04): SmolLM2-135M-Instruct
bf16 against float32 (chat prompts, CPU) and codelm-12m."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from autotune.config.gate import KL_ALLOWANCE, Gate


def scores(top1, f32_top1=None, f32_kl=None, floor_top1=None, floor_kl=None):
    return SimpleNamespace(top1_agreement=top1, float32_top1_agreement=f32_top1, float32_mean_kl=f32_kl,
                           floor_top1_agreement=floor_top1, floor_mean_kl=floor_kl)


SMOLLM2 = dict(floor_top1=0.9875, floor_kl=0.00098)
CODELM_12M = dict(floor_top1=0.9938, floor_kl=0.00010)


def test_float32_on_a_real_model_fails_the_baseline_rule_and_passes_the_noise_floor():
    float32 = scores(0.973, 1.0, 0.0, **SMOLLM2)  # exact against float32, 0.973 against bf16's rounding
    assert not Gate("baseline", 0.99).passes(float32)
    assert Gate("noise-floor", 0.99).passes(float32)


def test_the_noise_floor_rule_rejects_what_strays_further_from_float32_than_the_baseline():
    int8 = scores(0.9656, 0.9656, 0.0043, **SMOLLM2)
    gate = Gate("noise-floor", 0.99)
    assert gate.gap(int8) == pytest.approx(max(0.9775 - 0.9656, 0.0043 - 2 * 0.00098))
    assert not gate.passes(int8)
    # a top-1 within the margin but a KL over twice the baseline's: rejected by the KL alone
    assert not gate.passes(scores(0.99, 0.985, 0.0030, **SMOLLM2))
    assert gate.passes(scores(0.99, 0.985, 0.0015, **SMOLLM2))


def test_a_tiny_noise_floor_keeps_the_kl_allowance():
    int8 = scores(0.9891, 0.9891, 0.00027, **CODELM_12M)  # 2.7x the baseline's KL, under KL_ALLOWANCE
    gate = Gate("noise-floor", 0.99)
    assert gate.kl_bar(int8) == KL_ALLOWANCE and gate.passes(int8)
    assert not Gate("baseline", 0.99).passes(int8)


def test_without_float32_figures_the_noise_floor_rule_falls_back_to_the_baseline_rule():
    gate = Gate("noise-floor", 0.99)
    assert not gate.floor_known(scores(0.98))
    assert gate.gap(scores(0.98)) == pytest.approx(0.01)
    assert gate.passes(scores(0.995)) and "with the baseline at least 0.99" in gate.describe(scores(0.995))


def test_describe_states_the_bars():
    s = scores(0.99, 0.99, 0.001, **SMOLLM2)
    assert "top-1 at least 0.9775" in Gate("noise-floor", 0.99).describe(s)
    assert "within 0.01 of the baseline's" in Gate("noise-floor", 0.99).describe()


def test_a_gate_is_validated_and_older_records_read_as_the_baseline_rule():
    with pytest.raises(ValueError, match="--gate is one of noise-floor, baseline"):
        Gate("closest")
    with pytest.raises(ValueError, match="--min-agreement"):
        Gate("baseline", 1.5)
    assert Gate.of_attrs({"min_agreement": 0.95}) == Gate("baseline", 0.95)
    assert Gate.of_attrs({"min_agreement": 0.95, "gate": "noise-floor"}) == Gate("noise-floor", 0.95)
