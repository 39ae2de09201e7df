"""Preset: the export of a study's best feasible configuration.

A preset is one JSON file whose two halves work with plain transformers::

    p = json.load(open("studies/demo.preset.json"))
    model = AutoModelForCausalLM.from_pretrained(p["model"], **p["load_kwargs"])
    gen = GenerationConfig(**p["generation_config"])

`load_kwargs` is JSON-plain: a bitsandbytes quantization is a `quantization_config` dict, which
`from_pretrained` accepts as it is in transformers 5.17 through 5.24 (it becomes a `BitsAndBytesConfig`
through `AutoQuantizationConfig.from_dict`; `BitsAndBytesConfig(**d)` makes the object explicitly).

`runtime` holds what neither half can (torch.compile settings, the SDPA backend, padding, the assistant
model, autotune's weight-only int8 quantization); `autotune.load_preset(path)` applies it (docs/preset.md says
how to apply each without autotune). `measurement` is what the chosen trial measured and `environment` where
(library versions, device), and `workload` what was measured (prompts, batch size, new tokens, sampling), so
that `autotune verify` measures it again. A preset of a `random:` model says so in `note`: `from_pretrained` cannot load
such a model; `load_preset` builds it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from autotune.config.preset_schema import check_preset_fields
from autotune.errors import PresetError
from autotune.files import read_text, remove_leftovers, write_atomic
# PRESET_IN_FOLDER: the preset's file name inside a model folder (`autotune export --folder DIR`, `autotune verify DIR`)
from autotune.runtime.hints import PRESET_IN_FOLDER, check_inductor_hint, check_weight_hints

FORMAT = "autotune-preset/1"


@dataclass(frozen=True)
class Preset:
    model: str
    load_kwargs: dict
    generation_config: dict
    runtime: dict
    measurement: dict
    environment: dict
    study: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)  # empty in a preset exported before workloads were recorded
    note: str | None = None
    format: str = FORMAT

    def __post_init__(self):
        if self.format != FORMAT:
            raise PresetError(f"this preset has format {self.format!r}, but this autotune reads {FORMAT!r}: "
                              "export it again with this version (autotune export --study NAME)")
        if isinstance(self.runtime, dict):
            check_runtime_hints(self.runtime)
        check_preset_fields(self.model, self.load_kwargs, self.generation_config, self.runtime,
                            {"measurement": self.measurement, "environment": self.environment, "study": self.study,
                             "workload": self.workload, "note": self.note})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Preset":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PresetError(f"the preset is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise PresetError("the preset nests too deeply to be a preset; export the preset again") from None
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
            raise PresetError(f"preset file {str(path)!r} does not exist (autotune search or autotune export "
                              "writes it)")
        return cls.from_json(read_text(path, "preset file", PresetError))

    @classmethod
    def read_in(cls, path: str | Path) -> "Preset":
        """The preset of a file, or of a model folder that holds one as PRESET_IN_FOLDER (PresetError where it
        does not)."""
        path = Path(path)
        if path.is_dir():
            inside = path / PRESET_IN_FOLDER
            if not inside.is_file():
                raise PresetError(f"the folder {str(path)!r} holds no {PRESET_IN_FOLDER}: give a preset file, or a "
                                  "folder written by autotune export --folder")
            path = inside
        return cls.read(path)

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file, fsync, rename, fsync of the folder), then read it back."""
        path = Path(path)
        remove_leftovers(path)  # of an export killed before its rename
        write_atomic(path, self.to_json())
        if Preset.read(path) != self:
            raise PresetError(f"{path} did not read back as written")
        return path


def check_runtime_hints(runtime: dict) -> None:
    """The preset's `runtime.inductor` and weight hints, checked before any model loads (PresetError)."""
    try:
        check_inductor_hint(runtime.get("inductor"))
        check_weight_hints(runtime)
    except ValueError as exc:
        raise PresetError(f"the preset's {exc}; export the preset again") from None


