"""What each field of a preset may hold: a preset is data, checked before anything loads.

A preset comes from a file that anyone may have written, and `autotune.load_preset` passes its `load_kwargs`
to `from_pretrained` and its `generation_config` to `GenerationConfig`. Both accept switches that run code
(`trust_remote_code`, `code_revision`, a `custom_generate` repository), so every field is checked against an
allow-list here: `load_kwargs` takes only the keys autotune exports (and a few harmless loading settings),
each with its allowed values; `runtime` only autotune's hints; the other fields plain JSON. A key that names
code is refused wherever it appears. Each refusal names the field and says how to fix it (PresetError).
"""

from __future__ import annotations

import re
from typing import Any

from autotune.config.candidate import COMPILE_MODES, INT8_KERNELS, KNOBS
from autotune.errors import PresetError

# Keys that switch on remote code or name code to import, refused at any depth of any field.
CODE_KEYS = frozenset({"trust_remote_code", "code_revision", "custom_generate", "auto_map", "custom_pipelines",
                       "custom_code", "remote_code"})
DTYPES = ("auto", "float32", "float16", "bfloat16")
BNB_FIELDS = {"load_in_8bit": bool, "load_in_4bit": bool, "llm_int8_threshold": float,
              "llm_int8_has_fp16_weight": bool, "llm_int8_enable_fp32_cpu_offload": bool,
              "llm_int8_skip_modules": list, "bnb_4bit_quant_type": ("nf4", "fp4"),
              "bnb_4bit_use_double_quant": bool, "bnb_4bit_compute_dtype": DTYPES[1:],
              "bnb_4bit_quant_storage": DTYPES[1:] + ("uint8",), "quant_method": ("bitsandbytes",)}
# torchao's quantization_config (TorchAoConfig.to_dict()): its quant_type is torchao's JSON encoding of a
# config object, {"_type": class name, "_version": n, "_data": fields}, which torchao turns back into the class
# it names; only the config classes autotune exports, and the value types they hold, are accepted.
TORCHAO_FIELDS = {"quant_method": ("torchao",), "quant_type": dict, "modules_to_not_convert": list,
                  "include_input_output_embeddings": bool, "untie_embedding_weights": bool}
TORCHAO_CONFIG_TYPES = ("Int8WeightOnlyConfig", "Int4WeightOnlyConfig", "Float8WeightOnlyConfig",
                        "Float8DynamicActivationFloat8WeightConfig")
TORCHAO_VALUE_TYPES = ("PerRow", "PerTensor", "PerGroup", "PerAxis", "PerToken", "PerBlock", "Float8MMConfig")
TORCHAO_ENUM_TYPES = ("Int4PackingFormat", "Int4ChooseQParamsAlgorithm", "Float8PackingFormat", "KernelPreference")
TORCH_DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int8", "uint8", "int4", "uint4")
ENUM_MEMBER = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
DEVICE_MAP = re.compile(r"^(auto|balanced|balanced_low_0|sequential|cpu|cuda|cuda:\d+|mps|meta)$")
KEY = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # a key of a descriptive field: printable, bounded
MAX_DEPTH = 8
FIX = "fix that field or export the preset again (autotune export --study NAME)"


def fail(field: str, what: str) -> None:
    raise PresetError(f"the preset's {field} {what}; {FIX}")


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_plain(value: Any, field: str, depth: int = 0) -> None:
    """`value` is plain JSON (objects with name-like keys, lists, strings, numbers, booleans, null) and names
    no code (CODE_KEYS), at any depth."""
    if depth > MAX_DEPTH:
        fail(field, f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not KEY.fullmatch(key):
                fail(field, f"has the key {shown(key)}, which is not a printable name of up to 200 characters")
            if key in CODE_KEYS:
                fail(f"{field}.{key}", "would run code that is not autotune's (remote or custom code is never "
                                       "loaded from a preset): remove it")
            check_plain(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_plain(item, f"{field}[{index}]", depth + 1)
    elif value is not None and not isinstance(value, (str, bool, int, float)):
        fail(field, f"holds {type(value).__name__} {shown(value)}, not JSON")


def check_value(field: str, value: Any, allowed) -> None:
    """`value` of `field` is one of the tuple `allowed`, or of the type `allowed` (bool, int, float, str, list,
    dict; int and float exclude booleans, and an int is positive)."""
    if isinstance(allowed, tuple):
        if not (isinstance(value, str) and value in allowed):
            fail(field, f"is {shown(value)}; allowed: {', '.join(allowed)}")
        return
    if allowed in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or (allowed is int and not isinstance(value, int)) or value <= 0):
        fail(field, f"is {shown(value)}, not a positive {'integer' if allowed is int else 'number'}")
    if allowed in (bool, str, list, dict) and not isinstance(value, allowed):
        names = {bool: "true or false", str: "a string", list: "a list", dict: "an object"}
        fail(field, f"is {shown(value)}, not {names[allowed]}")


def check_fields(field: str, data: Any, schema: dict, required: tuple[str, ...] = ()) -> None:
    """`data` is an object whose keys are in `schema` (key -> allowed, as `check_value` takes), `required`
    among them."""
    check_value(field, data, dict)
    missing = [key for key in required if key not in data]
    if missing:
        fail(field, f"lacks {', '.join(missing)} (it needs {', '.join(required)})")
    for key, value in data.items():
        if key in CODE_KEYS:
            check_plain({key: value}, field)
        if key not in schema:
            fail(f"{field}.{key}", f"is not a setting a preset may hold (allowed: {', '.join(sorted(schema))})")
        check_value(f"{field}.{key}", value, schema[key])


def check_device_map(value: Any) -> None:
    if isinstance(value, str) and DEVICE_MAP.match(value):
        return
    if isinstance(value, dict) and all(isinstance(k, str) and (isinstance(v, str) and DEVICE_MAP.match(v) or
                                                               isinstance(v, int) and not isinstance(v, bool))
                                       for k, v in value.items()):
        return
    fail("load_kwargs.device_map", f"is {shown(value)}; give 'auto', 'cpu', 'cuda', 'cuda:N' or a map of module "
                                   "names to devices")


LOAD_KWARGS = {"dtype": DTYPES, "torch_dtype": DTYPES, "attn_implementation": KNOBS["attn_implementation"][1:],
               "quantization_config": dict, "low_cpu_mem_usage": bool}


def check_load_kwargs(load_kwargs: Any) -> None:
    """Only the `from_pretrained` settings of LOAD_KWARGS and `device_map`, a bitsandbytes quantization of
    BNB_FIELDS."""
    check_value("load_kwargs", load_kwargs, dict)
    check_fields("load_kwargs", {k: v for k, v in load_kwargs.items() if k != "device_map"},
                 {**LOAD_KWARGS, "device_map": object})
    if "device_map" in load_kwargs:
        check_device_map(load_kwargs["device_map"])
    quantization = load_kwargs.get("quantization_config")
    if isinstance(quantization, dict) and quantization.get("quant_method") == "torchao":
        check_torchao_config(quantization)
    elif quantization is not None:
        check_fields("load_kwargs.quantization_config", quantization, BNB_FIELDS)
        if not (quantization.get("load_in_8bit") or quantization.get("load_in_4bit")):
            fail("load_kwargs.quantization_config", "sets neither load_in_8bit nor load_in_4bit (a bitsandbytes "
                                                     "quantization is the only one a preset holds)")
        for module in quantization.get("llm_int8_skip_modules", []):
            check_value("load_kwargs.quantization_config.llm_int8_skip_modules[]", module, str)


def check_torchao_config(config: dict) -> None:
    """A torchao quantization (TORCHAO_FIELDS) whose quant_type is {"default": one of TORCHAO_CONFIG_TYPES}."""
    field = "load_kwargs.quantization_config"
    check_plain(config, field)
    check_fields(field, {k: v for k, v in config.items() if v is not None or k not in TORCHAO_FIELDS},
                 TORCHAO_FIELDS, required=("quant_method", "quant_type"))
    for module in config.get("modules_to_not_convert") or []:
        check_value(f"{field}.modules_to_not_convert[]", module, str)
    quant_type = config["quant_type"]
    if list(quant_type) != ["default"]:
        fail(f"{field}.quant_type", "holds other keys than 'default' (TorchAoConfig writes {\"default\": config})")
    check_torchao_object(quant_type["default"], f"{field}.quant_type.default", TORCHAO_CONFIG_TYPES)


def check_torchao_object(value: Any, field: str, types: tuple[str, ...], depth: int = 0) -> None:
    """One object of torchao's JSON encoding: `_type` among `types`, a positive `_version`, and `_data` as the
    type takes it (a dtype's name, an enum member's name, or fields of JSON values and nested objects)."""
    if depth > MAX_DEPTH:
        fail(field, f"nests deeper than {MAX_DEPTH} levels")
    check_fields(field, value, {"_type": types, "_version": int, "_data": object}, required=("_type", "_data"))
    kind, data = value["_type"], value["_data"]
    if kind == "torch.dtype":
        check_value(f"{field}._data", data, TORCH_DTYPES)
    elif kind in TORCHAO_ENUM_TYPES:
        if not (isinstance(data, str) and ENUM_MEMBER.match(data)):
            fail(f"{field}._data", f"is {shown(data)}, not the name of a {kind} member")
    else:
        check_value(f"{field}._data", data, dict)
        for key, item in data.items():
            if not FIELD_NAME.match(key):
                fail(f"{field}._data", f"has the key {shown(key)}, which is not a field name")
            for index, element in enumerate(item if isinstance(item, list) else [item]):
                where = f"{field}._data.{key}" + (f"[{index}]" if isinstance(item, list) else "")
                if isinstance(element, (dict, list)):
                    check_torchao_object(element, where, ("torch.dtype",) + TORCHAO_VALUE_TYPES + TORCHAO_ENUM_TYPES,
                                         depth + 1)
                elif element is not None and not isinstance(element, (str, bool, int, float)):
                    fail(where, f"holds {type(element).__name__} {shown(element)}, not JSON")


def check_generation_config(generation_config: Any) -> None:
    """`GenerationConfig` fields: name -> a JSON scalar or a list (token ids); no object-valued settings,
    which is where transformers takes configurations of code (a custom generate, a logits processor)."""
    check_value("generation_config", generation_config, dict)
    check_plain(generation_config, "generation_config")
    for key, value in generation_config.items():
        if isinstance(value, dict):
            fail(f"generation_config.{key}", "is an object; a preset's GenerationConfig holds numbers, strings, "
                                             "booleans and lists only")


RUNTIME = {"padding_side": ("left", "right"), "pad_to_multiple_of": int, "sdpa_backend": KNOBS["sdpa_backend"],
           "weight_quantization": ("int8",), "int8_kernel": INT8_KERNELS, "fuse_projections": bool,
           "inductor": dict, "decode_loop": dict, "compile": dict, "assistant_model": str}
COMPILE = {"api": KNOBS["compile_api"], "mode": COMPILE_MODES, "fullgraph": bool}
DECODE_LOOP = {"kind": ("static", "graph"), "mode": COMPILE_MODES, "fullgraph": bool, "offloading": bool,
               "steps": int}


def check_runtime(runtime: Any) -> None:
    """Only autotune's runtime hints (RUNTIME), each with its allowed values."""
    check_fields("runtime", runtime, RUNTIME)
    if "compile" in runtime:
        check_fields("runtime.compile", runtime["compile"], COMPILE, required=tuple(COMPILE))
    if "decode_loop" in runtime:
        loop = runtime["decode_loop"]
        graph = isinstance(loop, dict) and loop.get("kind") == "graph"
        check_fields("runtime.decode_loop", loop, DECODE_LOOP,
                     required=("kind", "mode", "fullgraph") + (("steps",) if graph else ()))
    if "assistant_model" in runtime and not runtime["assistant_model"].strip():
        fail("runtime.assistant_model", "is empty; name the assistant model's folder or hub id")


WORKLOAD = {"prompts": list, "prompt_count": int, "prompts_sha256": str, "batch_size": int, "max_new_tokens": int,
            "sampling": bool, "seed": object, "chat": bool}
SHA256 = re.compile(r"[0-9a-f]{64}")


def check_workload(workload: Any) -> None:
    """What was measured (`autotune verify` measures it again): WORKLOAD's keys, the prompts (when kept) as
    strings, their hash as hex SHA-256, the sampling seed a non-negative integer. Empty: not recorded."""
    check_value("workload", workload, dict)
    if not workload:
        return
    check_fields("workload", workload, WORKLOAD, required=tuple(k for k in WORKLOAD if k not in ("prompts", "chat")))
    for index, prompt in enumerate(workload.get("prompts", [])):
        check_value(f"workload.prompts[{index}]", prompt, str)
    if not SHA256.fullmatch(workload["prompts_sha256"]):
        fail("workload.prompts_sha256", f"is {shown(workload['prompts_sha256'])}, not a hex SHA-256")
    seed = workload["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("workload.seed", f"is {shown(seed)}, not an integer of at least 0")


def check_preset_fields(model: Any, load_kwargs: Any, generation_config: Any, runtime: Any, others: dict) -> None:
    """Every field of a preset, as this module's docstring says (PresetError naming the first bad one).

    Args:
        model: the model folder or hub id.
        load_kwargs, generation_config, runtime: the three halves a model is built from.
        others: the descriptive fields (measurement, environment, study, workload, note) by name.
    """
    if not isinstance(model, str) or not model.strip() or any(ord(c) < 32 for c in model):
        fail("model", f"is {shown(model)}; give the model folder, hub id or random:<architecture> it was tuned for")
    check_load_kwargs(load_kwargs)
    check_generation_config(generation_config)
    check_runtime(runtime)
    for name, value in others.items():
        if name == "note":
            if value is not None and not isinstance(value, str):
                fail("note", f"is {shown(value)}, not a string or null")
            continue
        if name == "workload":
            check_workload(value)
        check_value(name, value, dict)
        check_plain(value, name)
