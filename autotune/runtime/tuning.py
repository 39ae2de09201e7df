"""Tuning a loaded model as a recipe's runtime hints say: its weights (weight-only int8, stacked siblings),
flex attention's kernel options, Inductor's options and the compile, its decode loop, and the `generate` that
runs them.

`runtime.build` calls these for a trial and for `autotune.load_preset`. An exported model folder ships this
module, with the modules it imports, as its `custom_generate/` (autotune.runtime.shipping), so plain
transformers tunes a model it loads with the same steps.
"""

from __future__ import annotations

import functools

from autotune.runtime.attention import fit_flex_attention, generate_in_sdpa_backend
from autotune.runtime.compiling import apply_compile, apply_inductor_config
from autotune.runtime.decode.loops import bind_to_generate, loop_for
from autotune.runtime.quant.weights import apply_weight_hints


def prepare_weights(model, runtime: dict) -> None:
    """The hints that change a loaded model: its weights (`apply_weight_hints`) and, where it runs flex
    attention, the kernel options of wide heads.

    Args:
        model: a loaded transformers model.
        runtime: the recipe's runtime hints.
    """
    apply_weight_hints(model, runtime)
    fit_flex_attention(model)


def prepare_generation(model, runtime: dict, generation_config, max_cache_len: int | None = None,
                       grow: bool = False):
    """The hints of generation: Inductor's options (before anything compiles), the compile (of the forward,
    or `generation_config.compile_config`), and the decode loop.

    Args:
        model: the model, its weights prepared.
        runtime: the recipe's runtime hints.
        generation_config: the GenerationConfig that generate() will run (it gains a `compile_config` where
            the hint compiles through generate()).
        max_cache_len: the decode loop's cache length (None: sized by the first call).
        grow: the loop's cache starts at `max_cache_len` and grows when a call needs more.

    Returns:
        The decode loop the hints name, or None.
    """
    apply_inductor_config(runtime.get("inductor"))
    apply_compile(model, generation_config, runtime.get("compile"))
    hint = runtime.get("decode_loop")
    return loop_for(model, hint, max_cache_len, grow) if hint else None


def bind_generate(model, runtime: dict, loop=None, assistant=None) -> None:
    """Make `model.generate` generate as the recipe says, for code that calls it directly: the decode loop
    (falling back to the plain generate() for what the loop does not do), the assistant model, the SDPA
    backend.

    Args:
        model: the prepared model; its current `generate` is the one the loop falls back to.
        runtime: the recipe's runtime hints.
        loop: the decode loop, or None.
        assistant: the assistant model of assisted decoding, or None.
    """
    if loop is not None:
        bind_to_generate(model, loop)
    if assistant is not None:
        model.generate = functools.partial(model.generate, assistant_model=assistant)
    generate_in_sdpa_backend(model, runtime.get("sdpa_backend"))
