"""A preset as a model folder that plain transformers runs at the measured speed.

    config.json, model.safetensors   the model in the preset's dtype (bitsandbytes and torchao quantizations
                                     as `save_pretrained` writes them: quantized, with their config)
    tokenizer files                  the model's tokenizer
    generation_config.json           the preset's GenerationConfig (what was measured: cache, length, ...)
    autotune_preset.json             the preset itself (its runtime hints, measurement and environment)
    custom_generate/                 autotune's tuning and decode loops (autotune.runtime.shipping)
    README.md                        how to load it

`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` loads it, and its `generate` runs
custom_generate/generate.py: on the first call it applies what `from_pretrained` cannot (attention
implementation, autotune's weight-only int8 and stacked siblings, Inductor options, compile, decode loop,
SDPA backend, assistant), so the weights of autotune's own int8 are quantized then, from the saved ones.

The folder is written beside its target and renamed into place; a folder exported before from a preset with
the same model and load kwargs keeps its weights (only the small files are written again).
Run as `python -m autotune.runtime.folder PRESET FOLDER`, which the tuner does in a process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from autotune.config.preset import Preset
from autotune.files import current_umask
from autotune.runtime.hints import PRESET_IN_FOLDER
from autotune.runtime.loading import load_model, load_tokenizer
from autotune.runtime.quant.ao import is_torchao
from autotune.runtime.shipping import write_custom_generate

WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")
# load kwargs that choose how the saved model runs, not what it holds: the folder's generation code applies them
RUN_ONLY_LOAD_KWARGS = ("attn_implementation", "device_map", "low_cpu_mem_usage")

README = """# {name}: a model tuned by autotune

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("{name}", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("{name}")
    out = model.generate(**tokenizer(["def fib(n):"], return_tensors="pt").to(model.device))

`trust_remote_code=True` runs `custom_generate/generate.py`: autotune's tuning of the model ({what}) and its
decode loop. Without it the model loads as saved and generates with transformers' own `generate`.
`autotune_preset.json` holds what was measured and where: {speed}.
"""


def export_folder(preset: Preset, folder: str | Path) -> Path:
    """Write `preset` as a model folder (see the module's docstring), replacing an earlier export there.

    Args:
        preset: the preset (its model must load here: a folder, or a `random:` architecture).
        folder: where the folder goes.

    Returns:
        The folder.
    """
    folder = Path(folder)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if not reuse_weights(preset, folder, partial):
        save_weights(preset, partial)
    load_tokenizer(preset.model).save_pretrained(partial)
    save_generation_config(preset, partial)
    write_custom_generate(partial)
    (partial / "README.md").write_text(readme(preset, folder.name), encoding="utf-8")
    preset.write(partial / PRESET_IN_FOLDER)
    readable_as_umask_says(partial)
    replaced = folder.with_name(f".{folder.name}.replaced")
    if folder.exists():
        folder.rename(replaced)
    partial.rename(folder)
    shutil.rmtree(replaced, ignore_errors=True)
    return folder


def readable_as_umask_says(folder: Path) -> None:
    """Give every file the mode the umask gives a new file (the weights are written private by default)."""
    mode = 0o666 & ~current_umask()
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)


def save_weights(preset: Preset, folder: Path) -> None:
    """The model as the preset's load kwargs load it (its dtype, a quantization of transformers), saved. A
    torchao quantization is made on the GPU where there is one (float8 and int4 run only there); anything else
    on the CPU, which needs no device memory."""
    import torch

    kwargs = {k: v for k, v in preset.load_kwargs.items() if k not in RUN_ONLY_LOAD_KWARGS}
    device = "cuda" if is_torchao(kwargs.get("quantization_config")) and torch.cuda.is_available() else "cpu"
    model = load_model(preset.model, kwargs, device)
    model.save_pretrained(folder)


def reuse_weights(preset: Preset, folder: Path, partial: Path) -> bool:
    """Move the weights of an earlier export into `partial` where they are what `preset` would save."""
    earlier = folder / PRESET_IN_FOLDER
    try:
        old = json.loads(earlier.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if old.get("model") != preset.model or old.get("load_kwargs") != preset.load_kwargs:
        return False
    for name in WEIGHT_FILES + tuple(p.name for p in folder.glob("model-*.safetensors")):
        if (folder / name).exists():
            try:  # a second name for the same file: gigabytes of weights are not copied
                os.link(folder / name, partial / name)
            except OSError:
                shutil.copy2(folder / name, partial / name)
    return (partial / "config.json").exists()


def save_generation_config(preset: Preset, folder: Path) -> None:
    """The preset's GenerationConfig as generation_config.json (no compile settings: the shipped code sets
    them, as the trial did)."""
    from transformers import GenerationConfig

    GenerationConfig.from_dict(dict(preset.generation_config)).save_pretrained(folder)


def readme(preset: Preset, name: str) -> str:
    runtime = preset.runtime
    what = ", ".join(k for k in ("weight_quantization", "fuse_projections", "compile", "decode_loop", "sdpa_backend",
                                 "assistant_model") if runtime.get(k)) or "nothing beyond the saved config"
    tok_s = preset.measurement.get("decode_tokens_per_s")
    speed = f"{tok_s:.1f} decode tok/s" if isinstance(tok_s, (int, float)) else "no speed recorded"
    device = preset.environment.get("device_name") or preset.study.get("device") or "an unrecorded device"
    return README.format(name=name, what=what, speed=f"{speed} on {device}")


def main(argv: list[str]) -> int:
    """`python -m autotune.runtime.folder PRESET FOLDER`: export a preset file as a folder."""
    preset_path, folder = argv
    export_folder(Preset.read(preset_path), folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
