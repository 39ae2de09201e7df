"""Candidate: one point of the search space, split into what transformers and torch need to build it.

A Candidate holds knob values (the fields named in `KNOBS`). From them it derives its three parts:

- `load_kwargs()`: keyword arguments of `AutoModelForCausalLM.from_pretrained`, JSON-plain (a
  bitsandbytes or torchao quantization is a plain `quantization_config` dict, which `from_pretrained`
  accepts and quantizes with as it loads);
- `generation_kwargs()`: fields of `transformers.GenerationConfig`;
- `runtime()`: what neither holds (torch.compile settings, the SDPA backend, padding, the assistant model).

The defaults are the baseline: the model as a user loads it with no optimization.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from autotune.errors import CandidateError
# the runtime hints' names and limits (re-exported: the space, the memory model and the schema read them here)
from autotune.runtime.hints import (ATTENTION_IMPLEMENTATIONS, DECODE_PRODUCT_ROWS, GRAPH_STEPS,  # noqa: F401
                                    INT8_KERNELS, INT8_PREFILL_CHUNK_ELEMENTS)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
STATIC_CACHES = ("static", "offloaded_static")
# the decode loops: transformers' generate(), and autotune's two static-cache loops
LOOPS = ("generate", "static_loop", "graph_loop")
BNB_QUANTIZATIONS = ("bnb_8bit", "bnb_4bit")
# autotune's own weight-only int8 (autotune.runtime.quant.quantize), applied after loading: a runtime hint
WEIGHT_ONLY_QUANTIZATIONS = ("int8_weight_only",)
# torchao's formats through transformers' TorchAoConfig: value -> (torchao config class, the fields it sets
# away from the class's defaults, in torchao's own JSON encoding). int4 packs for the tinygemm kernel of
# aten (CUDA, bfloat16): torchao's default int4 layout needs the separate mslk package.
TORCHAO_CONFIGS: dict[str, tuple[str, dict]] = {
    "torchao_int8_weight_only": ("Int8WeightOnlyConfig", {}),
    "torchao_int4_weight_only": ("Int4WeightOnlyConfig", {
        "group_size": 128, "int4_packing_format": {"_type": "Int4PackingFormat", "_data": "TILE_PACKED_TO_4D"}}),
    "torchao_float8_weight_only": ("Float8WeightOnlyConfig", {}),
    "torchao_float8_dynamic": ("Float8DynamicActivationFloat8WeightConfig", {}),
}
TORCHAO_QUANTIZATIONS = tuple(TORCHAO_CONFIGS)
# the torchao config version these encodings are written for (torchao 0.18's `version` of each class)
TORCHAO_CONFIG_VERSION = 2
# quantizations that from_pretrained applies as it loads: their layers are not stacked (fuse_projections)
LOADED_QUANTIZATIONS = BNB_QUANTIZATIONS + TORCHAO_QUANTIZATIONS

# knob -> allowed values (a tuple), or a type (int, float) for numeric knobs. Search spaces may use any subset.
KNOBS: dict[str, tuple | type] = {
    "dtype": ("auto", "float32", "float16", "bfloat16"),
    "attn_implementation": ("auto",) + ATTENTION_IMPLEMENTATIONS,
    # torch.nn.attention.sdpa_kernel(SDPBackend...) around generate; "auto" lets PyTorch choose.
    "sdpa_backend": ("auto", "flash", "efficient", "math", "cudnn"),
    # bitsandbytes through BitsAndBytesConfig: LLM.int8() or 4-bit (nf4/fp4) weights; or weight-only int8
    # in plain torch (autotune.runtime.quant.quantize), fast when compiled; or torchao's weight-only int8,
    # int4 or float8, or float8 weights and activations (TorchAoConfig).
    "quantization": ("none",) + BNB_QUANTIZATIONS + WEIGHT_ONLY_QUANTIZATIONS + TORCHAO_QUANTIZATIONS,
    # weight-only int8's decode-step product: "inductor" (plain torch, compiled into Inductor's reductions) or
    # "triton" (autotune.runtime.quant.int8_gemv, one kernel per product; CUDA with Triton). A runtime hint.
    "int8_kernel": INT8_KERNELS,
    "llm_int8_threshold": float,
    "bnb_4bit_quant_type": ("nf4", "fp4"),
    "bnb_4bit_use_double_quant": (False, True),
    "bnb_4bit_compute_dtype": ("float32", "float16", "bfloat16"),
    "cache_implementation": ("dynamic",) + STATIC_CACHES,
    "compile": ("off",) + COMPILE_MODES,
    "compile_fullgraph": (False, True),
    # "generate": transformers' own automatic compile (CUDA only); "explicit": torch.compile(model.forward)
    # with the automatic compile switched off, so the two never stack.
    "compile_api": ("generate", "explicit"),
    # Inductor's own tuning on top of the compile mode: "coordinate_descent" sets
    # torch._inductor.config.coordinate_descent_tuning, which tunes the block sizes of each generated Triton
    # kernel (the memory-bound matrix-vector products of batch-1 decoding above all). A runtime hint. The
    # max-autotune mode sets it already (torch._inductor.list_mode_options): there it changes nothing.
    "compile_tuning": ("default", "coordinate_descent"),
    # Inductor's freezing (torch._inductor.config.freezing): the weights become constants of the compiled
    # graph, which lets it fold them, and fuse matrix products that share their input into one (q, k and v;
    # an MLP's gate and up): fewer, larger kernels per decode step. The fused weights are copies: more
    # memory. A runtime hint.
    "compile_freezing": (False, True),
    # "generate": transformers' generate(); "static_loop": autotune.runtime.decode.StaticDecodeLoop, a
    # StaticCache driven by one compiled decode step (the seed guide's options 2 and 3); "graph_loop":
    # autotune.runtime.decode.GraphDecodeLoop, the same with GRAPH_STEPS steps captured as one CUDA graph (the
    # step compiled without torch.compile's own graphs). A runtime hint of the preset.
    "decode_loop": LOOPS,
    # autotune.runtime.quant.fusion: the projections a layer applies to one input (q, k, v; gate, up) stacked
    # into one product per decode step, in bf16/fp16/fp32 and weight-only int8 alike (not bitsandbytes). A
    # runtime hint.
    "fuse_projections": (False, True),
    "decoding": ("standard", "prompt_lookup", "assisted"),
    "prompt_lookup_num_tokens": int,
    "max_matching_ngram_size": int,
    "num_assistant_tokens": int,
    "num_assistant_tokens_schedule": ("constant", "heuristic", "heuristic_transient"),
    "pad_to_multiple_of": int,
}

# YAML reads a bare `off` as False and `none` / `null` as None: accept those spellings.
_ALIASES = {("compile", False): "off", ("compile", "none"): "off", ("pad_to_multiple_of", "none"): None,
            ("quantization", None): "none", ("quantization", False): "none", ("llm_int8_threshold", "none"): None}


def normalize_knob_value(knob: str, value: Any) -> Any:
    """Return `value` in the canonical form of `knob`, or raise CandidateError naming the allowed values."""
    if knob not in KNOBS:
        raise CandidateError(f"unknown knob {knob!r}; known knobs: {', '.join(KNOBS)}")
    try:
        value = _ALIASES.get((knob, value), value)
    except TypeError:  # unhashable value (a list, a dict)
        pass
    domain = KNOBS[knob]
    if domain is int:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        raise CandidateError(f"knob {knob!r} takes a positive integer (or none), got {value!r}")
    if domain is float:
        if value is None:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)  # BitsAndBytesConfig insists on a float
        raise CandidateError(f"knob {knob!r} takes a positive number (or none), got {value!r}")
    if value in domain and type(value) is type(domain[domain.index(value)]):
        return value
    raise CandidateError(f"knob {knob!r} has no value {value!r}; allowed: {', '.join(map(str, domain))}")


def torchao_quantization_config(value: str) -> dict:
    """`TorchAoConfig(config).to_dict()`'s shape for a torchao value of the quantization knob, with only the
    fields that differ from the torchao class's defaults (torchao fills in the rest as it reads the dict, so
    one dict serves the torchao versions that share those defaults; tests/config/test_torchao_config.py checks
    that it reads back as torchao's own config).

    Args:
        value: one of TORCHAO_QUANTIZATIONS.

    Returns:
        {"quant_method": "torchao", "quant_type": {"default": {"_type", "_version", "_data"}}}.
    """
    name, data = TORCHAO_CONFIGS[value]
    encoded = {"_type": name, "_version": TORCHAO_CONFIG_VERSION, "_data": json.loads(json.dumps(data))}
    return {"quant_method": "torchao", "quant_type": {"default": encoded}}


# Knobs added after studies were recorded, with the default that leaves them out of `Candidate.key()`.
KEY_NEUTRAL_DEFAULTS = {"compile_tuning": "default", "compile_freezing": False, "int8_kernel": "inductor",
                        "fuse_projections": False}


# Short names for summaries (tables, progress lines).
_SHORT = {"attn_implementation": "attn", "cache_implementation": "cache", "compile_fullgraph": "fullgraph",
          "compile_api": "compile_api", "compile_tuning": "tuning", "compile_freezing": "freezing",
          "decode_loop": "loop", "fuse_projections": "fuse",
          "prompt_lookup_num_tokens": "lookup_tokens",
          "max_matching_ngram_size": "ngram", "num_assistant_tokens": "assistant_tokens",
          "num_assistant_tokens_schedule": "schedule", "pad_to_multiple_of": "pad", "sdpa_backend": "sdpa",
          "quantization": "quant", "llm_int8_threshold": "int8_threshold", "bnb_4bit_quant_type": "4bit_type",
          "bnb_4bit_use_double_quant": "double_quant", "bnb_4bit_compute_dtype": "4bit_compute"}


@dataclass(frozen=True)
class Candidate:
    dtype: str = "auto"
    attn_implementation: str = "auto"
    sdpa_backend: str = "auto"
    quantization: str = "none"
    int8_kernel: str = "inductor"
    llm_int8_threshold: float | None = None  # None: BitsAndBytesConfig's default (6.0)
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = False
    bnb_4bit_compute_dtype: str = "float32"  # BitsAndBytesConfig's default
    cache_implementation: str = "dynamic"
    compile: str = "off"
    compile_fullgraph: bool = False
    compile_api: str = "explicit"
    compile_tuning: str = "default"
    compile_freezing: bool = False
    decode_loop: str = "generate"
    fuse_projections: bool = False
    decoding: str = "standard"
    prompt_lookup_num_tokens: int | None = None
    max_matching_ngram_size: int | None = None
    num_assistant_tokens: int | None = None
    num_assistant_tokens_schedule: str = "constant"
    pad_to_multiple_of: int | None = None
    # Not a knob: the assistant model for assisted decoding (a path or hub id), set by --assistant.
    assistant: str | None = None

    def __post_init__(self):
        for knob in KNOBS:
            object.__setattr__(self, knob, normalize_knob_value(knob, getattr(self, knob)))
        if self.assistant is not None and not isinstance(self.assistant, str):
            raise CandidateError(f"assistant must be a model path or id, got {self.assistant!r}")

    # ---- the three parts -------------------------------------------------------------------------

    def quantization_config(self) -> dict | None:
        """The `BitsAndBytesConfig` fields, or `TorchAoConfig.to_dict()`'s shape, as a plain dict (None
        without either). `from_pretrained` takes it as it is (`quantization_config=dict` goes through
        `AutoQuantizationConfig.from_dict` in transformers 5.17 through 5.25); `BitsAndBytesConfig(**d)` or
        `TorchAoConfig.from_dict(d)` makes the object when one is wanted."""
        if self.quantization in TORCHAO_CONFIGS:
            return torchao_quantization_config(self.quantization)
        if self.quantization == "bnb_8bit":
            config: dict[str, Any] = {"load_in_8bit": True}
            if self.llm_int8_threshold is not None:
                config["llm_int8_threshold"] = self.llm_int8_threshold
            return config
        if self.quantization == "bnb_4bit":
            return {"load_in_4bit": True, "bnb_4bit_quant_type": self.bnb_4bit_quant_type,
                    "bnb_4bit_use_double_quant": self.bnb_4bit_use_double_quant,
                    "bnb_4bit_compute_dtype": self.bnb_4bit_compute_dtype}
        return None

    def load_kwargs(self) -> dict:
        """`from_pretrained` keyword arguments, JSON-plain (dtype as a string transformers accepts)."""
        kwargs: dict[str, Any] = {}
        if self.dtype != "auto":
            kwargs["dtype"] = self.dtype
        if self.attn_implementation != "auto":
            kwargs["attn_implementation"] = self.attn_implementation
        quantization = self.quantization_config()
        if quantization is not None:
            kwargs["quantization_config"] = quantization
        return kwargs

    def generation_kwargs(self) -> dict:
        """`GenerationConfig` fields this candidate sets (on top of the model's own generation config).

        With a static cache, transformers 5 compiles the forward inside generate() on its own (on CUDA);
        `compile=off` therefore sets `disable_compile=True`, so that "off" means off, and the explicit
        compile sets it too, so the forward is never compiled twice."""
        kwargs: dict[str, Any] = {}
        if self.cache_implementation != "dynamic":
            kwargs["cache_implementation"] = self.cache_implementation
            if self.compile == "off":
                kwargs["disable_compile"] = True
        if self.compile != "off" and self.compile_api == "explicit" and not self.uses_static_loop():
            kwargs["disable_compile"] = True  # the forward is compiled explicitly: never compile twice
        # With the static loop the GenerationConfig keeps the static cache and generate()'s own compile: what
        # plain transformers does best with this preset; autotune.load_preset runs the loop instead.
        if self.decoding == "prompt_lookup":
            kwargs["prompt_lookup_num_tokens"] = self.prompt_lookup_num_tokens or 10
            if self.max_matching_ngram_size is not None:
                kwargs["max_matching_ngram_size"] = self.max_matching_ngram_size
        if self.decoding == "assisted":
            kwargs["num_assistant_tokens"] = self.num_assistant_tokens or 20
            kwargs["num_assistant_tokens_schedule"] = self.num_assistant_tokens_schedule
        return kwargs

    def runtime(self) -> dict:
        """What neither the load kwargs nor the GenerationConfig hold."""
        hints: dict[str, Any] = {"padding_side": "left"}
        if self.pad_to_multiple_of is not None:
            hints["pad_to_multiple_of"] = self.pad_to_multiple_of
        if self.sdpa_backend != "auto" and self.attn_implementation == "sdpa":
            hints["sdpa_backend"] = self.sdpa_backend
        if self.quantization == "int8_weight_only":
            hints["weight_quantization"] = "int8"
            if self.int8_kernel != "inductor":
                hints["int8_kernel"] = self.int8_kernel
        if self.fuse_projections and self.quantization not in LOADED_QUANTIZATIONS:
            hints["fuse_projections"] = True
        inductor = {}
        if self.compile in ("default", "reduce-overhead") and self.compile_tuning == "coordinate_descent":
            inductor["coordinate_descent_tuning"] = True
        if self.compile != "off" and self.compile_freezing:
            inductor["freezing"] = True
        if inductor:
            hints["inductor"] = inductor
        if self.uses_static_loop():
            hints["decode_loop"] = {"kind": "static", "mode": self.compile, "fullgraph": self.compile_fullgraph,
                                    "offloading": self.cache_implementation == "offloaded_static"}
            if self.decode_loop == "graph_loop":
                hints["decode_loop"].update(kind="graph", steps=GRAPH_STEPS)
        elif self.compile != "off":
            hints["compile"] = {"api": self.compile_api, "mode": self.compile, "fullgraph": self.compile_fullgraph}
        if self.decoding == "assisted":
            hints["assistant_model"] = self.assistant
        return hints

    def uses_static_loop(self) -> bool:
        """The static decode loop runs only where it has a static cache and a compile mode to use."""
        return (self.decode_loop in LOOPS[1:] and self.cache_implementation in STATIC_CACHES
                and self.compile != "off" and self.decoding == "standard")

    def with_assistant(self, assistant: str | None) -> "Candidate":
        """The configuration as a study runs it: assisted decoding with the study's assistant model."""
        return replace(self, assistant=assistant) if self.decoding == "assisted" else self

    # ---- identity and JSON -----------------------------------------------------------------------

    def effective(self) -> "Candidate":
        """The same configuration with knobs that have no effect reset to their defaults, so that two
        candidates that build the same thing compare equal (used to avoid measuring twice)."""
        changes: dict[str, Any] = {}
        if self.attn_implementation != "sdpa":
            changes.update(sdpa_backend="auto")
        if self.quantization != "bnb_8bit":
            changes.update(llm_int8_threshold=None)
        if self.quantization != "bnb_4bit":
            changes.update(bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype="float32")
        if self.quantization != "int8_weight_only":
            changes.update(int8_kernel="inductor")
        if self.quantization in LOADED_QUANTIZATIONS:
            changes.update(fuse_projections=False)  # bitsandbytes and torchao layers are not stacked
        if self.compile == "off":
            changes.update(compile_fullgraph=False, compile_api="explicit", compile_tuning="default",
                           compile_freezing=False)
        if self.compile == "max-autotune" or self.quantization in TORCHAO_QUANTIZATIONS:
            # max-autotune tunes by coordinate descent already; torchao's quantization switches it on itself
            changes.update(compile_tuning="default")
        if not self.uses_static_loop():
            changes.update(decode_loop="generate")
        else:
            changes.update(compile_api="explicit")  # the loop compiles its own step: the API plays no part
            if self.decode_loop == "graph_loop" and self.compile == "reduce-overhead":
                changes.update(compile="default")  # the loop captures the graphs: the step compiles as default
        if self.decoding != "prompt_lookup":
            changes.update(prompt_lookup_num_tokens=None, max_matching_ngram_size=None)
        if self.decoding != "assisted":
            changes.update(num_assistant_tokens=None, num_assistant_tokens_schedule="constant", assistant=None)
        return Candidate(**{**asdict(self), **changes})

    def key(self) -> str:
        """A short stable hash of the effective configuration. A knob added later is left out of it at its
        default, so configurations recorded before it existed keep their keys (and a resumed study its
        duplicates and its baseline)."""
        data = self.effective().to_dict()
        for name, default in KEY_NEUTRAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """A compact human-readable summary: only what differs from the baseline."""
        baseline, effective = Candidate(), self.effective()
        parts = [f"{_SHORT.get(f.name, f.name)}={getattr(effective, f.name)}" for f in fields(self)
                 if getattr(effective, f.name) != getattr(baseline, f.name)]
        return " ".join(parts) or "baseline"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "Candidate":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            known = [f.name for f in fields(cls)]
            raise CandidateError(f"unknown candidate field(s) {sorted(unknown)}; known: {known}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "Candidate":
        return cls.from_dict(json.loads(text))
