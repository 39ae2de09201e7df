"""What machine a study runs on: device, its capabilities and the library versions.

`probe()` asks a short-lived child process, so that the orchestrator never initialises CUDA itself
(a CUDA error poisons a process; only workers touch the device). `describe()` is what that child runs,
and what every worker records in its Measurement.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys

from autotune.errors import InputError
from autotune.interrupt import interruptible

DEVICES = ("auto", "cpu", "cuda")
# Process settings that change what a trial builds, to measure variants (`setting`; no preset records them):
# a Measurement's environment names those set, so a figure says what it was measured with.
SETTINGS = ("AUTOTUNE_INT8_BARRIER", "AUTOTUNE_INT8_FORM", "AUTOTUNE_COMBO_KERNELS")


# Settings that became knobs: a process that sets one is refused, so that no figure is measured without what
# its command asked for.
RETIRED_SETTINGS = {"AUTOTUNE_INT8_KERNEL": "the int8_kernel knob (int8_kernel=triton)",
                    "AUTOTUNE_FUSE": "the fuse_projections knob (fuse_projections=true)"}


def refuse_retired_settings() -> None:
    """InputError naming the knob that replaced each retired setting set in this process's environment."""
    retired = [f"{name} is {knob} now" for name, knob in RETIRED_SETTINGS.items() if name in os.environ]
    if retired:
        raise InputError("; ".join(retired) + ": unset it and search or enqueue the knob's value")


def triton_imports() -> bool:
    """Whether Triton imports here (autotune's int8 kernel needs it; an install that fails to import is none)."""
    from autotune import int8_gemv

    return int8_gemv.triton is not None


def setting(variable: str, choices, default: str, usage: str):
    """A setting of the process from the environment variable `variable` (`default` where unset): its value
    if `choices` is a collection of values, or what `choices` maps it to; ValueError "VARIABLE='x': usage"
    for any other value."""
    value = os.environ.get(variable, default)
    if value not in choices:
        raise ValueError(f"{variable}={value!r}: {usage}")
    return choices[value] if isinstance(choices, dict) else value


def describe(device: str = "auto", with_imports: bool = False) -> dict:
    """Describe this process's view of the machine (imports torch; initialises CUDA if it is there).
    `with_imports` also imports bitsandbytes (seconds) and Triton to say whether they work here: the probe
    before a study does; a worker, which only records its environment, does not."""
    import torch
    import transformers

    refuse_retired_settings()
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    env = {
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cuda_available": cuda,
        "has_flash_attn": importlib.util.find_spec("flash_attn") is not None,
        "has_flex_attention": importlib.util.find_spec("torch.nn.attention.flex_attention") is not None,
        "settings": {name: os.environ[name] for name in SETTINGS if name in os.environ},
    }
    if with_imports:
        env.update(bitsandbytes_support(), has_triton=triton_imports())
    if device == "cuda":
        if not cuda:
            raise InputError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu")
        props = torch.cuda.get_device_properties(0)
        env.update(device_name=props.name, total_memory_bytes=props.total_memory,
                   has_bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda)
    else:
        import psutil

        env.update(device_name=platform.processor() or platform.machine(),
                   total_memory_bytes=psutil.virtual_memory().total, has_bf16=True)
    if os.environ.get("AUTOTUNE_ALLOW_FAULTS") == "1" and os.environ.get("AUTOTUNE_FAKE_DEVICE_NAME"):
        env["device_name"] = os.environ["AUTOTUNE_FAKE_DEVICE_NAME"]  # tests of the machine check (R17)
    return env


def bitsandbytes_support() -> dict:
    """Whether bitsandbytes imports here, and whether this transformers lets generate() compile a model it
    quantized (`hf_quantizer.is_compileable` of its bitsandbytes quantizers: False in 5.17 through 5.24)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # not installed, or its native library does not load on this machine
        return {"has_bitsandbytes": False, "bnb_compileable": False}
    try:
        from transformers import BitsAndBytesConfig
        from transformers.quantizers.auto import AutoHfQuantizer

        compileable = all(AutoHfQuantizer.from_config(BitsAndBytesConfig(**{flag: True})).is_compileable
                          for flag in ("load_in_8bit", "load_in_4bit"))
    except Exception:
        compileable = False
    return {"has_bitsandbytes": True, "bnb_compileable": bool(compileable)}


def fingerprint(env: dict) -> str:
    """What must stay the same for measurements of one study to be comparable."""
    return f"{env.get('device')}:{env.get('device_name')}"


def probe(device: str = "auto", timeout: float = 300.0) -> dict:
    """Run `describe(device)` in a child process and return its result."""
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    refuse_retired_settings()
    with interruptible():  # a wait for a child: Ctrl-C stops it at once (autotune.interrupt)
        proc = subprocess.run([sys.executable, "-m", "autotune.environment", device],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"could not inspect the machine for --device {device}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    try:
        print(json.dumps(describe(sys.argv[1] if len(sys.argv) > 1 else "auto", with_imports=True)))
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
