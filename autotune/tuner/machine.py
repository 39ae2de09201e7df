"""The machine a study runs on, as the orchestrator learns it without touching the device, and the space it
searches there.

`probe()` runs `autotune.runtime.environment.describe` in a short-lived child process: the orchestrator
never initialises CUDA itself (a CUDA error poisons a process; only workers touch the device).
`searched_space()` is the one place a study's space is derived from its file, the machine, the workload and
the model: `autotune search`, its workers and `autotune estimate` all call it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from autotune.config import models
from autotune.config.availability import Machine, for_machine
from autotune.config.settings import DEVICES
from autotune.config.space import SearchSpace
from autotune.config.workload import Workload
from autotune.errors import InputError
from autotune.interrupt import check as check_interrupt, interruptible


def probe(device: str = "auto", timeout: float = 300.0) -> dict:
    """Describe the machine for `device` from a child process.

    Args:
        device: "auto", "cpu" or "cuda".
        timeout: seconds before the child is given up.

    Returns:
        What `autotune.runtime.environment.describe(device, with_imports=True)` returns there.
    """
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    with interruptible():  # a wait for a child: Ctrl-C stops it at once
        proc = subprocess.run([sys.executable, "-m", "autotune.runtime.environment", device],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"could not inspect the machine for --device {device}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_for_estimate(device: str) -> dict:
    """The machine an estimate is for. `--device cuda` on a machine without CUDA still estimates (pure
    Python): a card with bfloat16 and this machine's packages (bitsandbytes, Triton, flash-attn) is assumed,
    and its total memory is unknown."""
    env = probe("auto" if device == "cuda" else device)  # one child: it falls back to the CPU where CUDA is not
    if device == "cuda" and env["device"] != "cuda":
        env = {**env, "device": "cuda", "has_bf16": True, "total_memory_bytes": None, "device_name": None}
    return env


def fingerprint(env: dict) -> str:
    """What must stay the same for measurements of one study to be comparable: the device and its name."""
    return f"{env.get('device')}:{env.get('device_name')}"


def searched_space(base: SearchSpace, env: dict, workload: Workload, assistant: str | None,
                   model: str) -> SearchSpace:
    """The space a study of `model` searches on the machine `env` describes.

    Args:
        base: the space as loaded from its file, or recorded in the study.
        env: the probe's description of the machine.
        workload: the study's workload (its batch size decides what can run).
        assistant: the resolved assistant model, or None.
        model: the resolved model id (a `random:` model leaves speculative decoding out).

    Returns:
        The space with what cannot run here left out (with reasons) and the machine's invalid combinations.
    """
    check_interrupt()  # a Ctrl-C noted during the probe stops start-up here, where no storage call is open
    return for_machine(base, Machine.from_environment(env), batch_size=workload.batch_size, assistant=assistant,
                       random_weights=models.is_random(model))
