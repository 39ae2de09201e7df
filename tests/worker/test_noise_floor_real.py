"""The noise floor on a real trained model, SmolLM2-135M-Instruct on chat prompts: float32, the more exact
computation, disagrees with the bf16 baseline's rounding often enough to fail the baseline rule, and matches the
float32 reference exactly, so the noise-floor gate passes it; int8 strays from float32 further than the
baseline does and stays infeasible under both rules."""

from __future__ import annotations

from support import build_candidate

import pytest

from autotune.config.candidate import Candidate
from autotune.config.gate import Gate
from autotune.config.measurement import Measurement
from autotune.config.workload import Workload
from autotune.worker import equivalence
from autotune.worker.measure import run_pass

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judged(real_model):
    """The baseline's reference with its float32 scoring, and a scorer of candidates against it."""
    workload = Workload.from_file("chat", model=str(real_model), max_new_tokens=32)
    base = build_candidate(str(real_model), Candidate(), workload, "cpu")
    continuations, _ = run_pass(base, workload)
    reference = equivalence.build_reference(base.model, base.tokenizer, workload.prompts, continuations, "cpu")
    equivalence.add_float32(reference, build_candidate(str(real_model), Candidate(dtype="float32"), workload,
                                                       "cpu").model)
    floor = equivalence.set_noise_floor(reference, equivalence.compare(reference, base.model, None, "cpu"))

    def score(candidate: Candidate) -> Measurement:
        built = build_candidate(str(real_model), candidate, workload, "cpu")
        return Measurement(status="ok", **equivalence.compare(reference, built.model, run_pass(built, workload)[0],
                                                              "cpu"))
    return floor, score


def test_float32_changes_verdict_under_the_noise_floor(judged):
    floor, score = judged
    assert floor["floor_top1_agreement"] < 1.0 and floor["floor_mean_kl"] > 0  # rounding alone moves the model
    float32 = score(Candidate(dtype="float32"))
    print("float32:", float32.top1_agreement, float32.mean_kl, float32.float32_top1_agreement)
    assert float32.float32_top1_agreement == 1.0 and float32.top1_agreement == floor["floor_top1_agreement"]
    assert not Gate("baseline", 0.99).passes(float32)
    assert Gate("noise-floor", 0.99).passes(float32)


def test_int8_stays_infeasible_under_both_rules(judged):
    pytest.importorskip("torchao")
    _, score = judged
    int8 = score(Candidate(quantization="torchao_int8_weight_only"))
    print("int8:", int8.top1_agreement, int8.mean_kl, int8.float32_top1_agreement, int8.float32_mean_kl)
    assert not Gate("baseline", 0.99).passes(int8)
    assert not Gate("noise-floor", 0.99).passes(int8)
