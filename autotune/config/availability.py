"""What a machine, a workload and a model let a study search: the one filter of the search space.

`for_machine(space, machine, ...)` drops the values that cannot run here (float16 on CPU, bitsandbytes where
it does not import, assisted decoding without an assistant, ...), records each with its reason, and adds the
invalid combinations that depend on the machine or the installed versions. `autotune search`, `autotune
estimate`, the study's workers and the benchmarks all call it, so they see one space.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from autotune.config.candidate import COMPILE_MODES, DECODE_PRODUCT_ROWS, TORCHAO_QUANTIZATIONS
from autotune.config.space import Knob, Rule, SearchSpace

SLOW_FLOAT16 = "float16 matmuls are emulated and slow on CPU"
NO_BITSANDBYTES = "bitsandbytes is not installed (pip install bitsandbytes)"
NO_TORCHAO = "torchao is not installed (pip install 'autotune[torchao]')"
TORCHAO_FLOAT8 = ("torchao_float8_weight_only", "torchao_float8_dynamic")
NO_FLOAT8 = "torchao's float8 formats need a CUDA GPU of compute capability 8.9 or newer"
NO_INT4 = ("torchao's int4 weight-only packs for aten's tinygemm kernel, which needs CUDA and bfloat16 (its other "
           "layouts need the mslk package, or Arm and XPU/NPU kernels)")
RANDOM_DRAFTS = ("random weights repeat one token, so every draft is accepted: speculative decoding's speed on "
                 "them is not real (measure it on a trained model)")


@dataclass(frozen=True)
class Machine:
    """What a machine offers, as far as the search space cares.

    `has_bitsandbytes`: bitsandbytes imports. `bnb_compileable`: the installed transformers marks bitsandbytes
    models compileable (`hf_quantizer.is_compileable`); where it does not, generate() skips its compilation
    of such a model, so bitsandbytes + compile is marked invalid rather than measured under a name it does
    not deserve. `has_torchao`: torchao imports. `has_float8`: a CUDA device of compute capability 8.9 or
    newer, where torchao's float8 formats run.
    """

    device: str
    has_bf16: bool = True
    has_flash_attn: bool = False
    has_flex_attention: bool = False
    has_triton: bool = False
    has_bitsandbytes: bool = False
    bnb_compileable: bool = False
    has_torchao: bool = False
    has_float8: bool = False

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"a machine's device is cpu or cuda, not {self.device!r}")

    @classmethod
    def from_environment(cls, env: dict) -> "Machine":
        """The facts of a machine description (`autotune.runtime.environment.describe`, via the probe)."""
        return cls(**{f.name: env[f.name] for f in fields(cls) if env.get(f.name) is not None})


def cpu_unavailable() -> dict[tuple[str, Any], str]:
    """Values that need CUDA (or are pointless on a CPU)."""
    unavailable = {("dtype", "float16"): SLOW_FLOAT16, ("bnb_4bit_compute_dtype", "float16"): SLOW_FLOAT16,
                   ("compile_api", "generate"): "generate() compiles automatically only on CUDA",
                   ("attn_implementation", "flex_attention"): "flex_attention is searched on CUDA only",
                   ("compile_tuning", "coordinate_descent"): "it tunes Inductor's Triton kernels, for GPUs",
                   ("decode_loop", "graph_loop"): "it captures CUDA graphs",
                   ("cache_implementation", "offloaded_static"): (
                       "offloaded_static moves the KV cache from the accelerator to CPU memory (with CUDA "
                       "streams): on CPU it is the static cache"),
                   ("int8_kernel", "triton"): "autotune's Triton int8 kernel runs on CUDA"}
    for mode in ("reduce-overhead", "max-autotune"):
        unavailable[("compile", mode)] = f"{mode} targets CUDA graphs / GPU autotuning"
    for backend in ("efficient", "cudnn"):
        unavailable[("sdpa_backend", backend)] = f"PyTorch has no {backend} SDPA kernel for CPU"
    return unavailable


def unavailable_values(machine: Machine, *, batch_size: int, assistant: str | None,
                       random_weights: bool) -> dict[tuple[str, Any], str]:
    """(knob, value) -> why it cannot be searched here. The first reason found for a value is kept."""
    unavailable = cpu_unavailable() if machine.device == "cpu" else {}

    def leave_out(knob: str, value: Any, why: str) -> None:
        unavailable.setdefault((knob, value), why)

    if not machine.has_bf16:
        for knob in ("dtype", "bnb_4bit_compute_dtype"):
            leave_out(knob, "bfloat16", "this device does not support bfloat16")
    if not machine.has_flash_attn:
        leave_out("attn_implementation", "flash_attention_2", "the flash-attn package is not installed")
    if not machine.has_triton:
        leave_out("int8_kernel", "triton", "Triton is not installed")
    if not machine.has_flex_attention:
        leave_out("attn_implementation", "flex_attention", "this torch has no flex_attention")
    if not machine.has_bitsandbytes:
        for value in ("bnb_8bit", "bnb_4bit"):
            leave_out("quantization", value, NO_BITSANDBYTES)
    leave_out_torchao(machine, leave_out)
    if assistant is None:
        leave_out("decoding", "assisted", "no assistant model given (--assistant)")
    for value in ("prompt_lookup", "assisted"):
        if random_weights:  # every draft of a repeated token is accepted: a speed that says nothing
            unavailable[("decoding", value)] = RANDOM_DRAFTS
        if batch_size > 1:
            leave_out("decoding", value, "transformers runs it at batch size 1 only")
    if batch_size > DECODE_PRODUCT_ROWS:
        why = (f"a decode step of more than {DECODE_PRODUCT_ROWS} rows runs its products as matrix products, "
               "neither through the Triton kernel nor stacked: the same build as without it")
        leave_out("int8_kernel", "triton", why)
        leave_out("fuse_projections", True, why)
    return unavailable


def leave_out_torchao(machine: Machine, leave_out) -> None:
    """torchao's values where it is not installed, float8 below compute capability 8.9, int4 off CUDA or
    without bfloat16 (`leave_out(knob, value, why)`)."""
    if not machine.has_torchao:
        for value in TORCHAO_QUANTIZATIONS:
            leave_out("quantization", value, NO_TORCHAO)
    if not machine.has_float8:
        for value in TORCHAO_FLOAT8:
            leave_out("quantization", value, NO_FLOAT8)
    if machine.device != "cuda" or not machine.has_bf16:
        leave_out("quantization", "torchao_int4_weight_only", NO_INT4)


def machine_rules(machine: Machine) -> list[Rule]:
    """Invalid combinations that depend on the device or the installed versions."""
    rules = []
    if machine.device == "cuda":
        rules.append(Rule((("sdpa_backend", ("flash",)), ("dtype", ("float32",))),
                          "PyTorch's flash SDPA kernel on CUDA runs float16 and bfloat16 only"))
    if machine.has_bitsandbytes and not machine.bnb_compileable:
        rules.append(Rule((("quantization", ("bnb_8bit", "bnb_4bit")), ("compile", COMPILE_MODES)),
                          "this transformers marks bitsandbytes models not compileable "
                          "(hf_quantizer.is_compileable is False): generate() would skip the compilation"))
    return rules


def for_machine(space: SearchSpace, machine: Machine, *, batch_size: int, assistant: str | None = None,
                random_weights: bool = False) -> SearchSpace:
    """The space a study searches on `machine` for this workload and model.

    Args:
        space: the space as loaded from its file (or recorded in a study).
        machine: what the machine offers (`Machine.from_environment(probe)`).
        batch_size: the workload's batch size (speculative decoding runs at 1 only).
        assistant: the assistant model for assisted decoding, None without one.
        random_weights: the model is a `random:` one: its greedy text is one token repeated, so speculative
            decoding is left out (every draft would be accepted).

    Returns:
        The space without the values that cannot run here (each kept in `left_out` with its reason) and with
        the machine's invalid combinations added (only those about knobs the space holds).
    """
    unavailable = unavailable_values(machine, batch_size=batch_size, assistant=assistant,
                                     random_weights=random_weights)
    knobs, left_out = [], list(space.left_out)
    for knob in space.knobs:
        kept = tuple(v for v in knob.values if (knob.name, v) not in unavailable)
        left_out += [(knob.name, v, unavailable[(knob.name, v)]) for v in knob.values
                     if (knob.name, v) in unavailable]  # a dict lookup per value: linear in the values
        knobs.append(Knob(knob.name, kept, knob.when))
    names = {k.name for k in knobs}
    extra = tuple(r for r in machine_rules(machine)
                  if all(knob in names for knob, _ in r.conditions) and r not in space.rules)
    return SearchSpace(space.name, tuple(knobs), space.rules + extra, tuple(left_out))
