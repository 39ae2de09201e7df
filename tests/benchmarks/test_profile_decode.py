"""benchmarks/profile_decode.py on the bundled model, on CPU (kernels by device time come from the GPU)."""

from __future__ import annotations

from support import load_benchmark

from autotune.config.candidate import Candidate


def test_profile_of_a_generation_on_cpu(bundled_model):
    script = load_benchmark("profile_decode")
    result = script.profile(str(bundled_model), Candidate(cache_implementation="static"), batch_size=2,
                            prompt_tokens=8, new_tokens=4, device="cpu", top=5)
    assert result["wall_ms_per_step"] > 0 and result["tokens"] == 8
    assert result["kernels"] == [] and result["device_ms_per_step"] == 0  # no device here
    assert "aten::" in result["cpu_table"]
