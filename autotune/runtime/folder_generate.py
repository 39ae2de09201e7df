"""The generation code of an exported model folder: its `custom_generate/generate.py`.

transformers runs it in place of `generate` for a model loaded with
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` (or called as
`model.generate(..., custom_generate=folder, trust_remote_code=True)`). On the first call it tunes the model
as the folder's preset (PRESET_IN_FOLDER) says, with the steps `autotune.load_preset` takes (`tuning`):
attention implementation, weight hints, Inductor options, compile, decode loop, SDPA backend, assistant model.
Then every call runs the tuned `generate`. The folder ships this file and the modules it imports, rewritten
to import each other relatively (autotune.runtime.shipping), so the process never imports autotune.
"""

from __future__ import annotations

import json
from pathlib import Path

from autotune.runtime.hints import (ATTENTION_IMPLEMENTATIONS, PRESET_IN_FOLDER, check_inductor_hint,
                                    check_weight_hints)
from autotune.runtime.tuning import bind_generate, prepare_generation, prepare_weights


def generate(*args, model, **kwargs):
    """transformers' custom generate: `model` is the loaded model; the rest is what `generate` was given.

    Args:
        *args: generate()'s positional arguments (the input ids).
        model: the model transformers loaded from the folder.
        **kwargs: generate()'s keyword arguments (those left at None are dropped).

    Returns:
        What the tuned generate returns: the prompt and the new tokens.
    """
    tuned = model.__dict__.get("autotune_generate") or tune(model)
    given = {k: v for k, v in kwargs.items() if v is not None}
    if "inputs" in given and not args:
        args = (given.pop("inputs"),)
    return tuned(*args, **given)


def read_preset(model) -> dict:
    """The folder's preset, its hints checked (a preset is data: nothing it names runs as code)."""
    path = Path(model.name_or_path) / PRESET_IN_FOLDER
    preset = json.loads(path.read_text(encoding="utf-8"))
    runtime = preset.get("runtime")
    if not isinstance(runtime, dict) or not isinstance(preset.get("load_kwargs"), dict):
        raise ValueError(f"{path} holds no runtime hints and load kwargs: export the folder again")
    check_inductor_hint(runtime.get("inductor"))
    check_weight_hints(runtime)
    attention = preset["load_kwargs"].get("attn_implementation")
    if attention is not None and attention not in ATTENTION_IMPLEMENTATIONS:
        # a name outside these may be a kernel repository that transformers would fetch and run
        raise ValueError(f"{path}: load_kwargs.attn_implementation {attention!r} is not one of "
                         f"{', '.join(ATTENTION_IMPLEMENTATIONS)}: export the folder again")
    return preset


def tune(model):
    """Tune `model` as its folder's preset says and bind the tuned `generate` to it.

    Args:
        model: the model transformers loaded from the folder.

    Returns:
        The tuned generate (also `model.autotune_generate`).
    """
    preset = read_preset(model)
    runtime, load_kwargs = preset["runtime"], preset["load_kwargs"]
    model.generate = type(model).generate.__get__(model)  # transformers' own, which the loop falls back to
    attention = load_kwargs.get("attn_implementation")
    if attention and attention != model.config._attn_implementation:
        model.set_attn_implementation(attention)
    prepare_weights(model, runtime)
    loop = prepare_generation(model, runtime, model.generation_config,
                              preset["generation_config"].get("max_cache_len"), grow=True)
    bind_generate(model, runtime, loop, load_assistant(model, runtime))
    model.autotune_generate = model.generate
    return model.generate


def load_assistant(model, runtime: dict):
    """The assistant model of assisted decoding, in the model's dtype on its device, or None."""
    name = runtime.get("assistant_model")
    if not name:
        return None
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(name, dtype=model.dtype).to(model.device).eval()
