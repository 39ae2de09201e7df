"""Preset: the export of a study's best feasible configuration.

A preset is one JSON file whose two halves work with plain transformers::

    p = json.load(open("studies/demo.preset.json"))
    model = AutoModelForCausalLM.from_pretrained(p["model"], **p["load_kwargs"])
    gen = GenerationConfig(**p["generation_config"])

`load_kwargs` is JSON-plain: a bitsandbytes quantization is a `quantization_config` dict, which
`from_pretrained` accepts as it is in transformers 5.17 through 5.24 (it becomes a `BitsAndBytesConfig`
through `AutoQuantizationConfig.from_dict`; `BitsAndBytesConfig(**d)` makes the object explicitly).

`runtime` holds what neither half can (torch.compile settings, the SDPA backend, padding, the assistant
model, autotune's weight-only int8 quantization); `autotune.load_preset(path)` applies it. (With
`weight_quantization` or `fuse_projections` in it, plain transformers loads the unquantized, unstacked model:
correct, but not what was measured; `autotune.hints.apply_weight_hints(model, runtime)` does the rest.)
`measurement` is what the chosen trial measured and `environment` where (library versions, device). A preset of a `random:` model says so in `note`:
`from_pretrained` cannot load such a model; `load_preset` builds it again with `autotune.models`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from autotune import models
from autotune.candidate import STATIC_CACHES, Candidate
from autotune.errors import NoFeasibleTrialError, PresetError
from autotune.measurement import write_atomic

FORMAT = "autotune-preset/1"

# GenerationConfig fields of the model's own generation_config.json that a preset carries over.
_MODEL_GENERATION_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_SAMPLING_FIELDS = ("temperature", "top_k", "top_p")


@dataclass(frozen=True)
class Preset:
    model: str
    load_kwargs: dict
    generation_config: dict
    runtime: dict
    measurement: dict
    environment: dict
    study: dict = field(default_factory=dict)
    note: str | None = None
    format: str = FORMAT

    def __post_init__(self):
        if self.format != FORMAT:
            raise PresetError(f"this preset has format {self.format!r}, but this autotune reads {FORMAT!r}: "
                              "export it again with this version (autotune export --study NAME)")
        if not isinstance(self.model, str) or not self.model:
            raise PresetError("a preset needs the model it was tuned for ('model')")
        check_runtime_hints(self.runtime if isinstance(self.runtime, dict) else {})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Preset":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PresetError(f"the preset is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise PresetError("a preset is a JSON object")
        known = {f.name for f in fields(cls)}
        missing = {"model", "load_kwargs", "generation_config", "runtime"} - set(data)
        if missing:
            raise PresetError(f"the preset lacks {sorted(missing)}; is it an autotune preset?")
        if data.get("format", FORMAT) != FORMAT:
            raise PresetError(f"this preset has format {data.get('format')!r}, but this autotune reads {FORMAT!r}: "
                              "export it again with this version (autotune export --study NAME)")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: str | Path) -> "Preset":
        path = Path(path)
        if not path.is_file():
            raise PresetError(f"preset file {str(path)!r} does not exist (autotune search or autotune export writes it)")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file, fsync, rename, fsync of the folder), then read it back."""
        path = Path(path)
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # from an export killed before its rename
            leftover.unlink(missing_ok=True)
        text = self.to_json()
        write_atomic(path, text)
        if Preset.read(path) != self:
            raise PresetError(f"{path} did not read back as written")
        return path


def model_generation_defaults(model: str, sampling: bool = False) -> dict:
    """Token ids from the model's own generation config (so the preset's GenerationConfig is complete), and
    for a sampling workload its sampling settings (temperature, top_k, top_p), which the trials used."""
    try:
        from transformers import GenerationConfig

        if models.is_random(model):
            config = GenerationConfig.from_model_config(models.config_for(model))
        else:
            config = GenerationConfig.from_pretrained(model)
    except Exception:  # no generation_config.json, or a hub id that cannot be reached: keep the candidate's
        return {}
    names = _MODEL_GENERATION_FIELDS + (_SAMPLING_FIELDS if sampling else ())
    return {k: getattr(config, k) for k in names if getattr(config, k, None) is not None}


def preset_from_trial(trial, study_attrs: dict, measurement: dict) -> Preset:
    """The Preset of a finished trial, from its candidate, the study's workload and its measurement.

    A static cache keeps the length it was measured with (`max_cache_len`: the workload's longest padded
    prompt plus its new tokens); generate() still grows it for a longer call."""
    candidate = Candidate.from_json(trial.user_attrs["candidate"])
    workload = study_attrs["workload"]
    generation = {**model_generation_defaults(study_attrs["model"], workload["sampling"]), **candidate.generation_kwargs(),
                  "max_new_tokens": workload["max_new_tokens"], "do_sample": workload["sampling"]}
    if candidate.cache_implementation in STATIC_CACHES and measurement.get("max_cache_len"):
        generation["max_cache_len"] = measurement["max_cache_len"]
    figures = {k: v for k, v in measurement.items() if k not in ("environment", "traceback", "runs")}
    model = study_attrs["model"]
    return Preset(
        model=model,
        load_kwargs=candidate.load_kwargs(),
        generation_config=generation,
        runtime=candidate.runtime(),
        measurement={**figures, "candidate": candidate.to_dict()},
        environment=measurement.get("environment", {}),
        study={"name": study_attrs["study_name"], "trial": trial.number, "role": trial.user_attrs.get("role"),
               "device": study_attrs["device"], "min_agreement": study_attrs["min_agreement"],
               "command": study_attrs.get("command")},
        note=models.describe(model) if models.is_random(model) else None,
    )


def best_feasible_trial(trials):
    """The fastest COMPLETE trial whose constraints all hold; the earliest among equals."""
    from optuna.trial import TrialState

    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                and all(v <= 0 for v in t.constraints.values())]
    if not feasible:
        raise NoFeasibleTrialError("no trial of this study is feasible (every one failed, ran out of memory, or "
                                   "disagreed with the baseline): nothing was exported. Inspect it with "
                                   "'autotune show' or optuna-dashboard, lower --min-agreement, or run more trials")
    return max(feasible, key=lambda t: (t.value, -t.number))


def check_runtime_hints(runtime: dict) -> None:
    """The preset's `runtime.inductor` and weight hints (`hints.check_inductor_hint`,
    `hints.check_weight_hints`), checked before any model loads."""
    from autotune.hints import check_inductor_hint, check_weight_hints

    try:
        check_inductor_hint(runtime.get("inductor"))
        check_weight_hints(runtime)
    except ValueError as exc:
        raise PresetError(f"the preset's {exc}; export the preset again") from None


def load_preset(path: str | Path, device: str | None = None):
    """Load a preset's model and GenerationConfig with its runtime hints applied.

    Returns `(model, generation_config)`. The model is placed on `device` (default: CUDA when available);
    a weight-quantization hint turns its linear layers into int8 weight-only ones (`autotune.quantize`); an
    `inductor` hint sets Inductor's options for this process (coordinate descent tuning); an explicit
    torch.compile hint compiles `model.forward`; a compile hint through generate() sets the GenerationConfig's
    `compile_config`; an SDPA backend makes `model.generate` run inside `torch.nn.attention.sdpa_kernel(...)`;
    an assistant model is loaded and bound to `model.generate`; a decode-loop hint makes `model.generate` run
    autotune's static decode loop (`model.autotune_decode_loop`).
    A `random:` model is built again by `autotune.models` (its tokenizer: `autotune.models.load_tokenizer()`).
    `pad_to_multiple_of`, when present in `runtime`, is a tokenizer setting for the caller to pass.
    """
    import functools

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from autotune import hints

    preset = Preset.read(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    extra = {} if device == "cpu" else {"device_map": device}
    try:
        if models.is_random(preset.model):
            model = models.load_random_model(preset.model, preset.load_kwargs, device)
        else:
            model = AutoModelForCausalLM.from_pretrained(preset.model, **preset.load_kwargs, **extra).eval()
    except OSError as exc:
        raise PresetError(f"cannot load the preset's model {preset.model!r}: {exc}") from None
    hints.apply_weight_hints(model, preset.runtime)  # int8 weights, stacked sibling projections
    hints.fit_flex_attention(model)
    generation_config = GenerationConfig(**preset.generation_config)
    hints.apply_inductor_config(preset.runtime.get("inductor"))  # checked when the preset was read
    hints.apply_compile(model, generation_config, preset.runtime.get("compile"))
    hints.apply_decode_loop(model, preset.runtime.get("decode_loop"))
    if preset.runtime.get("assistant_model"):
        assistant = AutoModelForCausalLM.from_pretrained(preset.runtime["assistant_model"], dtype=model.dtype,
                                                         **extra).eval()
        model.generate = functools.partial(model.generate, assistant_model=assistant)
    hints.generate_in_sdpa_backend(model, preset.runtime.get("sdpa_backend"))
    return model, generation_config
