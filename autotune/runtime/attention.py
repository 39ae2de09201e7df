"""Attention hints: the SDPA backend generation runs in, and flex attention's kernel options for wide heads.

- `sdpa_backend` (`flash`, `efficient`, `math`, `cudnn`): generation runs inside
  `torch.nn.attention.sdpa_kernel(SDPBackend...)`, which restricts PyTorch's scaled_dot_product_attention to
  that kernel (an error where the kernel cannot run the inputs, never a silent fallback).
- A model loaded with `attn_implementation="flex_attention"` gets `fit_flex_attention`: on CUDA, heads wider
  than 128 run with kernel options that fit the GPU's shared memory.
"""

from __future__ import annotations

import contextlib
import functools

SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH",
                 "cudnn": "CUDNN_ATTENTION"}


def sdpa_backend(backend: str):
    """torch's SDPBackend of a backend name (flash, efficient, math, cudnn)."""
    from torch.nn.attention import SDPBackend

    if backend not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {backend!r}; one of {', '.join(SDPA_BACKENDS)}")
    return getattr(SDPBackend, SDPA_BACKENDS[backend])


def sdpa_backend_context(backend: str | None):
    """A context manager restricting SDPA to `backend` (None or "auto": no restriction)."""
    if backend in (None, "auto"):
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(sdpa_backend(backend))


def scoring_backend_context(backend: str | None):
    """The SDPA restriction of teacher-forced scoring: the candidate's kernel first, the math kernel only
    where that one cannot run the inputs. Scoring runs the whole sequence without a cache and, without a
    mask, transformers asks SDPA for grouped-query attention (`enable_gqa`), which the efficient and flash
    kernels refuse although they run the masked decode steps of the same candidate."""
    if backend in (None, "auto", "math"):
        return sdpa_backend_context(backend)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([sdpa_backend(backend), SDPBackend.MATH], set_priority=True)


def generate_in_sdpa_backend(model, backend: str | None) -> None:
    """Make `model.generate` run inside `sdpa_backend_context(backend)` (no change for None / "auto")."""
    if backend in (None, "auto"):
        return
    plain_generate = model.generate

    @functools.wraps(plain_generate)
    def generate(*args, **kwargs):
        with sdpa_backend_context(backend):
            return plain_generate(*args, **kwargs)

    model.generate = generate


# Inductor's flex attention kernels for heads wider than 128 (gemma-2b: 256) find no configuration that fits
# an H200's shared memory with their defaults ("NoValidChoicesError: No choices to select"); with blocks of
# 32 x 32 in one stage they compile and decode the tokens of SDPA (benchmarks/flex_probe.py).
WIDE_HEAD_DIM = 128
WIDE_HEAD_FLEX_OPTIONS = {"BLOCK_M": 32, "BLOCK_N": 32, "num_stages": 1, "num_warps": 4}


def flex_kernel_options(query, given: dict | None) -> dict | None:
    """The kernel options of one flex attention call: the caller's where given, else WIDE_HEAD_FLEX_OPTIONS
    for CUDA queries with heads wider than WIDE_HEAD_DIM, else none (flex attention's own choice)."""
    if given is not None:
        return given
    if query.device.type == "cuda" and query.shape[-1] > WIDE_HEAD_DIM:
        return dict(WIDE_HEAD_FLEX_OPTIONS)
    return None


def fit_flex_attention(model) -> bool:
    """Where `model` runs transformers' flex attention, register it (for the whole process, once) with
    `flex_kernel_options`, which changes nothing but the kernel options of wide CUDA heads.

    Args:
        model: a loaded transformers model.

    Returns:
        True if the model uses flex attention.
    """
    if getattr(model.config, "_attn_implementation", None) != "flex_attention":
        return False
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    current = ALL_ATTENTION_FUNCTIONS["flex_attention"]
    if getattr(current, "autotune_fitted", False):
        return True

    @functools.wraps(current)
    def flex_attention_fitted(module, query, key, value, attention_mask, **kwargs):
        options = flex_kernel_options(query, kwargs.pop("kernel_options", None))
        if options is not None:
            kwargs["kernel_options"] = options
        return current(module, query, key, value, attention_mask, **kwargs)

    flex_attention_fitted.autotune_fitted = True
    AttentionInterface.register("flex_attention", flex_attention_fitted)
    return True
