"""The machine as a process on it sees it: device, capabilities and library versions.

`describe()` imports torch (and initialises CUDA where it is asked for), so the orchestrator never calls it
itself: `autotune.tuner.machine.probe` runs it in a short-lived child (`python -m
autotune.runtime.environment DEVICE`), and every worker records it in its Measurement.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import sys

from autotune import __version__
from autotune.errors import InputError


def triton_imports() -> bool:
    """Whether Triton imports here (autotune's int8 kernel needs it; an install that fails to import is none)."""
    from autotune.runtime.quant import int8_gemv

    return int8_gemv.triton is not None


def describe(device: str = "auto", with_imports: bool = False) -> dict:
    """Describe this process's view of the machine (imports torch; initialises CUDA if it is there).

    Args:
        device: "auto", "cpu" or "cuda".
        with_imports: also import bitsandbytes (seconds) and Triton to say whether they work here: the probe
            before a study does; a worker, which only records its environment, does not.

    Returns:
        A JSON-ready dict: device, versions, host, capabilities (`has_bf16`, `has_flash_attn`, ...), the
        device's name and total memory.
    """
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    env = {
        "device": device,
        "autotune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cuda_available": cuda,
        "has_flash_attn": importlib.util.find_spec("flash_attn") is not None,
        "has_flex_attention": importlib.util.find_spec("torch.nn.attention.flex_attention") is not None,
    }
    if with_imports:
        env.update(bitsandbytes_support(), has_triton=triton_imports(), **torchao_support())
    if device == "cuda":
        if not cuda:
            raise InputError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu")
        props = torch.cuda.get_device_properties(0)
        env.update(device_name=props.name, total_memory_bytes=props.total_memory,
                   has_bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda,
                   has_float8=torch.cuda.get_device_capability(0) >= (8, 9))
    else:
        import psutil

        env.update(device_name=platform.processor() or platform.machine(),
                   total_memory_bytes=psutil.virtual_memory().total, has_bf16=True, has_float8=False)
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


def torchao_support() -> dict:
    """Whether torchao imports here, and its version (None without it)."""
    try:
        import torchao
    except Exception:  # not installed, or built for another torch
        return {"has_torchao": False, "torchao": None}
    return {"has_torchao": True, "torchao": torchao.__version__}


if __name__ == "__main__":
    try:
        print(json.dumps(describe(sys.argv[1] if len(sys.argv) > 1 else "auto", with_imports=True)))
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
