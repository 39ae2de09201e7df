"""`autotune.load_preset`: a preset's model and GenerationConfig, built as its trial was (`runtime.build`)."""

from __future__ import annotations

from pathlib import Path

from autotune.config.preset import Preset
from autotune.errors import PresetError
from autotune.runtime.build import Recipe, build


def load_preset(path: str | Path, device: str | None = None):
    """Load a preset's model and GenerationConfig with its runtime hints applied.

    The model is built by the same function that built the trial the preset comes from: weight-only int8
    and stacked projections, flex attention's kernel options, Inductor's options, torch.compile (of the
    forward, or generate()'s `compile_config` in the returned GenerationConfig). Its `generate` runs the
    decode loop where the preset names one (falling back to generate() for what the loop does not do), with
    the assistant model and inside the SDPA backend where the preset names them. A `random:` model is built
    again with the same seeded weights (its tokenizer: `autotune.runtime.random_weights.load_tokenizer()`).
    `runtime.pad_to_multiple_of`, when present, is a tokenizer setting for the caller to pass.

    Args:
        path: the preset JSON file (`autotune search` or `autotune export` writes it), or a model folder
            exported with its preset (`autotune export --folder`).
        device: "cpu" or "cuda" (default: CUDA when available).

    Returns:
        (model, generation_config): call `model.generate(**inputs, generation_config=generation_config)`.
    """
    import torch

    preset = Preset.read_in(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        built = build(Recipe.of_preset(preset), device)
    except OSError as exc:
        raise PresetError(f"cannot load the preset's model {preset.model!r}: {exc}") from None
    built.bind_generate()
    return built.model, built.generation_config
