"""The machine as the orchestrator learns it: from a child process, without touching the device itself."""

from __future__ import annotations

import pytest

from autotune.config.space import SearchSpace
from autotune.config.workload import Workload
from autotune.errors import InputError
from autotune.tuner import machine


def test_the_probe_describes_the_machine_from_a_child_process():
    env = machine.probe("cpu")
    assert env["device"] == "cpu" and {"has_bitsandbytes", "bnb_compileable", "has_triton"} <= set(env)
    assert machine.fingerprint(env) == f"cpu:{env['device_name']}"
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        machine.probe("tpu")


def test_an_estimate_for_cuda_without_a_card_assumes_one_with_this_machines_packages():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a card")
    here, cuda = machine.probe("cpu"), machine.probe_for_estimate("cuda")
    assert cuda["device"] == "cuda" and cuda["total_memory_bytes"] is None and cuda["has_bf16"] is True
    assert cuda["has_bitsandbytes"] == here["has_bitsandbytes"] and cuda["has_triton"] == here["has_triton"]


def test_the_searched_space_leaves_out_what_the_machine_and_model_cannot_run():
    env = {"device": "cpu", "has_bf16": True, "has_bitsandbytes": False}
    workload = Workload(prompts=("a", "b"), batch_size=2)
    space = machine.searched_space(SearchSpace.load("default"), env, workload, None, "random:gemma-2b")
    left_out = {(knob, value): why for knob, value, why in space.left_out}
    assert "pip install bitsandbytes" in left_out[("quantization", "bnb_4bit")]
    assert "every draft is accepted" in left_out[("decoding", "prompt_lookup")]  # random weights
    assert space.knob("decoding").values == ("standard",)
