"""MemoryModel: an estimate of a trial's peak memory, in pure Python, before any process starts.

    estimate = weights + kv_cache + assistant + activations
             + cuda_context (CUDA) or process_baseline (CPU) + kernel_cache + allocator_overhead
             + compile_workspace

(kernel_cache: on CPU, oneDNN's low-precision kernels; on CUDA, memory outside the allocator beyond the
context: bnb 8-bit's libraries and float32 flex_attention's kernels.)

Every term is reported on its own (`MemoryEstimate`), so that measurements can calibrate each one.
No weights are loaded: parameter counts come from the model built on the meta device
(`accelerate.init_empty_weights()` + `AutoModelForCausalLM.from_config`), sizes from the transformers
config, prompt lengths from the tokenizer (or an upper bound without one).

What the budget bounds:

- on CUDA, the device memory of one worker process: its CUDA context plus everything the caching
  allocator holds, plus the kernels outside it. The worker caps its allocator with
  `torch.cuda.set_per_process_memory_fraction` at (budget - CUDA context) / card total, so a 24 GB study on
  a larger card finds what a 24 GB card would; what lies outside the allocator is not capped, so the
  estimate's kernel_cache term keeps a candidate that needs it out before launch;
- on CPU, the worker's peak resident memory (RSS), which includes python, torch and transformers
  themselves (`process_baseline`). It is checked after the trial, not enforced (see the worker).

Constants: every number below says where it came from. Those marked PENDING are not yet measured on
a GPU; they are the hooks to calibrate (a `Calibration` holds them all, so a measured set can be passed
to `MemoryModel(calibration)` without editing this file).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from autotune.errors import InputError

KiB, MiB, GiB = 2**10, 2**20, 2**30

# ---- parsing a budget --------------------------------------------------------------------------------

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": KiB, "mib": MiB, "gib": GiB, "tib": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
BUDGET_FORMS = ("an amount with a unit: 24GB, 24000MB (powers of 10), 24GiB, 512MiB (powers of 2); "
                "or a fraction of the device's memory between 0 and 1, like 0.5")


def parse_budget(text: str, total_bytes: int | None = None) -> int:
    """A memory budget in bytes from `24GB` (10^9), `24GiB` (2^30), `24000MB`, `512MiB`, ... or from a
    fraction of `total_bytes` (`0.5`: half of the card, or of the RAM on CPU).

    Raises InputError naming the accepted forms for anything else (`24`, `-1GB`, `1.5`, `abc`)."""
    text = str(text)
    match = _BUDGET.match(text)
    if not match:
        raise InputError(f"memory budget {text!r} is not understood: give {BUDGET_FORMS}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit:
        if not 0 < number <= 1:
            hint = f" (did you mean {match.group(1)}GB or {match.group(1)}GiB?)" if number > 1 else ""
            raise InputError(f"memory budget {text!r} has no unit, so it would be a fraction of the device's "
                             f"memory, which must be between 0 and 1{hint}: give {BUDGET_FORMS}")
        if total_bytes is None:
            raise InputError(f"memory budget {text!r} is a fraction of the device's memory, which is not known "
                             "here: give an amount with a unit instead, like 24GB or 24GiB")
        return int(number * total_bytes)
    if unit not in _UNITS:
        raise InputError(f"memory budget {text!r} has an unknown unit {match.group(2)!r}: give {BUDGET_FORMS}")
    value = int(round(number * _UNITS[unit]))
    if value <= 0:
        raise InputError(f"memory budget {text!r} must be more than zero: give {BUDGET_FORMS}")
    return value


def is_fraction(text: str) -> bool:
    """Whether `text` is a budget given as a fraction of the device's memory (a plain number in (0, 1])."""
    match = _BUDGET.match(str(text))
    return bool(match) and not match.group(2) and 0 < float(match.group(1)) <= 1


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / MiB:.1f} MiB"


# ---- constants and their calibration --------------------------------------------------------------

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# CUDA: the context of one process (driver state, loaded kernel modules of torch's CUDA libraries), outside
# the caching allocator and so outside torch.cuda.max_memory_allocated. Calibrated on the H200 (torch 2.11,
# CUDA 13, benchmarks/memory_calibration.py on random:gemma-2b, 2026-11-28): device memory in use minus
# torch.cuda.memory_reserved() was 689-709 MiB in every trial, bf16 and fp32 alike.
CUDA_CONTEXT_BYTES = 700 * MiB

# CUDA: cuBLAS / cuBLASLt workspaces, taken from the caching allocator once per handle and stream
# (PyTorch sizes them at up to 32 MiB on Hopper). PENDING: calibrate with memory_reserved on the H200.
CUDA_LIBRARY_WORKSPACE_BYTES = 64 * MiB

# CUDA: caching-allocator overhead (reserved minus allocated: rounding to 512 B blocks and 2 MiB / 20 MiB
# segments, and fragmentation from freed activations). Weights and static caches are allocated once and
# fragment little; activations churn every step. Both shares are assumptions, PENDING calibration
# (torch.cuda.max_memory_reserved / max_memory_allocated of measured trials).
CUDA_ALLOCATOR_RESIDENT_FRACTION = 0.02   # of weights + KV caches
CUDA_ALLOCATOR_TRANSIENT_FRACTION = 0.25  # of activations + compile workspace

# CUDA: torch.compile. Inductor's generated kernels mostly live in host memory; on the device there are
# its workspace buffers and (modes reduce-overhead / max-autotune) the CUDA-graph memory pool, which keeps
# the intermediate buffers of the captured graphs. Every compiled path autotune builds captures decode
# steps only (generate()'s own compile, the explicit compile through hints.compiled_decode_forward, the
# static decode loop): the prefill runs eager. So the pool is counted from one decode step's activations.
# Calibrated on the H200 (torch 2.11, transformers 5.17; BENCHMARKS.md, third GPU session): random gemma-2b
# bf16 with a static cache, batch 1, 32 + 256 tokens, peak reserved 4926 MiB with reduce-overhead and 4894
# MiB with max-autotune against 4786 MiB of weights + cache (batch 8: 5044 against 4831); codelm-12m with
# the static loop and max-autotune, 142 MiB reserved for 25 MiB of weights. So compilation costs tens of
# MiB to ~140 MiB on the device, prefill activations included, and max-autotune's benchmark buffers do not
# raise the peak. The constants used before (256 MiB fixed, a pool of twice the largest activations,
# 512 MiB more for max-autotune) put those trials at 1.5-2.1x their measured peak.
CUDA_COMPILE_FIXED_BYTES = 64 * MiB
CUDA_GRAPH_POOL_ACTIVATION_COPIES = 2.0   # pool size as a multiple of one decode step's activations
CUDA_MAX_AUTOTUNE_EXTRA_BYTES = 0          # measured: no higher peak than reduce-overhead

# CUDA: device memory outside the caching allocator beyond the context (the `kernel_cache` term on CUDA),
# which set_per_process_memory_fraction does not cap. Measured on the H200 (third GPU session; device memory
# in use minus peak reserved, tests/data/h200_fixture_peaks.json): 686-702 MiB for eager, SDPA, bf16
# flex_attention and bnb 4-bit trials (the context alone); 752-796 MiB with bnb 8-bit (its int8 matmul
# libraries: +64-108 MiB); 2764-3002 MiB with float32 flex_attention (+2076-2314 MiB; bf16 flex_attention
# adds nothing), with the model 12M parameters: kernels and their state, not model-sized. On gemma-2b the
# float32 flex_attention trials used 2.1-2.4 GB more too, before failing in Inductor.
CUDA_BNB_8BIT_KERNEL_BYTES = 96 * MiB
CUDA_FLEX_FLOAT32_KERNEL_BYTES = 2200 * MiB

# CPU: the resident memory of a worker before any model-sized memory: python, torch, transformers and the
# tokenizers library imported, the tokenizer loaded, the loading machinery touched, a first float32
# forward run. Measured on this 2-core Xeon (torch 2.13 CPU, transformers 5.24): imports 246 MiB,
# + tokenizer 310 MiB, + loading the 7 MB bundled model 354 MiB (the 14 MB float32 load 367 MiB),
# + the first float32 generate 376 MiB. So ~360 MiB before the model's own bytes; whole float32 trials of
# the 4m model peaked at 387-389 MiB with 14 MB of weights. 376 MiB leaves a margin of ~10 MiB there.
CPU_PROCESS_BASELINE_BYTES = 376 * MiB

# CPU, bfloat16/float16 only: oneDNN JIT-compiles a matmul kernel per input shape and keeps it, so the
# resident memory grows with the number of distinct shapes a trial runs (float32 stays flat). Measured on
# this machine (AMX-capable Xeon, torch 2.13): the first low-precision generate adds ~20 MiB; each new
# prompt length (the prefill's linear layers, and the teacher-forced scoring pass) ~2-2.5 MiB; with eager
# attention every new key length adds ~1.2-1.5 MiB for its score matmuls (a dynamic cache makes a new one
# each decoding step: +88 MiB for the first 64-token generate of the 4m model, +121 MiB for the 12m one),
# independent of model size. SDPA and a static cache's fixed key length avoid most of it. Prompt lookup
# with eager attention makes (draft + 1)-position score shapes too: counted as `draft` more per batch, an
# upper bound of what 14 sampled default-space trials of the 4m model needed. The per-shape figures are
# the upper end of the measurements (benchmarks/memory_calibration.py: estimates 3-16 % above the
# measured peaks). Other CPUs (without AMX, other oneDNN versions) may differ: recalibrate there.
CPU_LOWP_KERNEL_INIT_BYTES = 20 * MiB
CPU_LOWP_BYTES_PER_PREFILL_SHAPE = 3 * MiB
CPU_LOWP_EAGER_BYTES_PER_ATTENTION_SHAPE = int(1.5 * MiB)

# CPU: glibc keeps freed memory in its arenas, so RSS carries transient peaks a while; a margin on the
# model-sized terms. Assumption; the bundled and 12m fixture trials are within it.
CPU_ALLOCATOR_FRACTION = 0.10

# CPU: torch.compile (inductor, C++ backend) in the worker process: dynamo/inductor state, the generated
# code (one wrapper per graph, unrolled over the layers) and the loaded kernels. Measured on this machine
# with static cache + compile (default): +142-145 MiB over the same trial without compile for the 2-layer
# 4m model on 3 prompts, and +190-210 MiB for the 6-layer 12m model on the 10 default prompts (more
# prompt lengths, more recompiles). Counted as 128 MiB + 16 MiB per layer.
CPU_COMPILE_WORKSPACE_BYTES = 128 * MiB
CPU_COMPILE_BYTES_PER_LAYER = 16 * MiB

# Activations: how many hidden-state-sized buffers (batch x tokens x hidden) one decoder layer holds at
# once (residual stream, normed input, attention output, MLP output). From reading the Llama/Gemma forward.
HIDDEN_STATE_COPIES = 4
# Buffers of batch x tokens x intermediate in the gated MLP: gate, up, act(gate) * up.
MLP_BUFFERS = 3
# After the forward, generate() copies the last logits to float32 (`logits[:, -1, :].to(float32)`) and the
# logits processors work on copies (min_new_tokens masks a clone): float32 batch x vocab buffers alive
# at once. From transformers' generation/utils.py and logits_process.py.
LOGITS_FLOAT32_COPIES = 3
# Equivalence scoring (autotune.worker.equivalence.teacher_forced_logprobs): the forward returns the
# logits of every position (model dtype), then `.float()` and `log_softmax` of the continuation's rows.
EQUIVALENCE_FLOAT32_COPIES = 2
# Prompt lengths without a tokenizer: byte-level BPE and SentencePiece with byte fallback never make more
# tokens than UTF-8 bytes, so bytes + special tokens is an upper bound.
SPECIAL_TOKENS_ALLOWANCE = 2
# bitsandbytes 4-bit: weights are quantized in blocks of 64 with a float32 absmax per block (bnb 0.50
# default); double quantization stores absmax as uint8 with a float32 absmax per 256 blocks. The 4-bit
# code book is 16 float32, the second-level code book 256 float32. int8 (LLM.int8) keeps a float32 scale
# per output row (SCB). Checked against real bitsandbytes 0.50.2 loading on CPU (tests/test_memory.py).
BNB_4BIT_BLOCKSIZE = 64
BNB_DOUBLE_QUANT_BLOCKSIZE = 256


@dataclass(frozen=True)
class Calibration:
    """Every constant of the model in one place; `MemoryModel(Calibration(...))` overrides any of them."""

    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    cuda_library_workspace_bytes: int = CUDA_LIBRARY_WORKSPACE_BYTES
    cuda_allocator_resident_fraction: float = CUDA_ALLOCATOR_RESIDENT_FRACTION
    cuda_allocator_transient_fraction: float = CUDA_ALLOCATOR_TRANSIENT_FRACTION
    cuda_compile_fixed_bytes: int = CUDA_COMPILE_FIXED_BYTES
    cuda_graph_pool_activation_copies: float = CUDA_GRAPH_POOL_ACTIVATION_COPIES
    cuda_max_autotune_extra_bytes: int = CUDA_MAX_AUTOTUNE_EXTRA_BYTES
    cuda_bnb_8bit_kernel_bytes: int = CUDA_BNB_8BIT_KERNEL_BYTES
    cuda_flex_float32_kernel_bytes: int = CUDA_FLEX_FLOAT32_KERNEL_BYTES
    cpu_process_baseline_bytes: int = CPU_PROCESS_BASELINE_BYTES
    cpu_allocator_fraction: float = CPU_ALLOCATOR_FRACTION
    cpu_compile_workspace_bytes: int = CPU_COMPILE_WORKSPACE_BYTES
    cpu_compile_bytes_per_layer: int = CPU_COMPILE_BYTES_PER_LAYER
    cpu_lowp_kernel_init_bytes: int = CPU_LOWP_KERNEL_INIT_BYTES
    cpu_lowp_bytes_per_prefill_shape: int = CPU_LOWP_BYTES_PER_PREFILL_SHAPE
    cpu_lowp_eager_bytes_per_attention_shape: int = CPU_LOWP_EAGER_BYTES_PER_ATTENTION_SHAPE
    hidden_state_copies: float = HIDDEN_STATE_COPIES
    mlp_buffers: float = MLP_BUFFERS
    logits_float32_copies: float = LOGITS_FLOAT32_COPIES
    equivalence_float32_copies: float = EQUIVALENCE_FLOAT32_COPIES

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown calibration constant(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


# ---- the estimate --------------------------------------------------------------------------------

TERMS = ("weights", "kv_cache", "assistant", "activations", "cuda_context", "process_baseline",
         "kernel_cache", "allocator_overhead", "compile_workspace")


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one trial, in bytes, term by term. `total` is their sum."""

    weights: int
    kv_cache: int
    assistant: int
    activations: int
    cuda_context: int
    process_baseline: int
    kernel_cache: int
    allocator_overhead: int
    compile_workspace: int
    # What the terms were computed for (for reading and calibration; not summed).
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1
    max_cache_len: int = 0
    quantization: str | None = None

    @property
    def total(self) -> int:
        return sum(getattr(self, term) for term in TERMS)

    def terms(self) -> dict[str, int]:
        return {term: getattr(self, term) for term in TERMS}

    def fits(self, budget_bytes: int | None) -> bool | None:
        return None if budget_bytes is None else self.total <= budget_bytes

    def describe(self) -> str:
        parts = [f"{term.replace('_', ' ')} {format_bytes(value)}" for term, value in self.terms().items() if value]
        return f"{format_bytes(self.total)} = " + " + ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryEstimate":
        data = dict(data)
        total = data.pop("total", None)
        estimate = cls(**data)
        if total is not None and total != estimate.total:
            raise ValueError(f"memory estimate total {total} is not the sum of its terms ({estimate.total})")
        return estimate

    @classmethod
    def from_json(cls, text: str) -> "MemoryEstimate":
        return cls.from_dict(json.loads(text))


# ---- what the model is made of -------------------------------------------------------------------

@dataclass(frozen=True)
class ParameterInventory:
    """Parameter counts of a model, per kind, from a meta-device build (no memory, no weights read).

    `linears` are the (weight elements, output features) of every nn.Linear that bitsandbytes would
    quantize: all but the output embedding (lm_head) and weights tied to the input embedding.
    `other_params` are all other parameter elements (embeddings, lm_head, norms, biases), which stay in
    the model's dtype. `buffers` are (elements, bytes per element) of the module buffers (rotary
    frequencies: float32 whatever the dtype)."""

    linears: tuple[tuple[int, int], ...]
    other_params: int
    buffers: tuple[tuple[int, int], ...] = ()

    @property
    def parameters(self) -> int:
        return sum(n for n, _ in self.linears) + self.other_params

    def buffer_bytes(self) -> int:
        return sum(n * size for n, size in self.buffers)


def text_config(config):
    """The decoder's config of a (possibly multimodal) config."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


_INVENTORIES: dict[str, ParameterInventory] = {}


def parameter_inventory(config) -> ParameterInventory:
    """Count the parameters of the causal LM `config` describes, on the meta device (cached per config)."""
    cls = type(config)
    key = f"{cls.__module__}.{cls.__qualname__}:{config.to_json_string(use_diff=False)}"
    if key not in _INVENTORIES:
        _INVENTORIES[key] = _build_inventory(config)
    return _INVENTORIES[key]


def _build_inventory(config) -> ParameterInventory:
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    try:
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # an architecture transformers cannot build as a causal LM
        raise InputError(f"cannot size a {type(config).__name__} ({getattr(config, 'model_type', '?')}) as a "
                         f"causal language model: {type(exc).__name__}: {exc}") from None
    # init_empty_weights skips the tying from_pretrained does; tie as loading would, so shared weights count once.
    model.tie_weights()
    output = model.get_output_embeddings()
    input_embeddings = model.get_input_embeddings()
    untouchable = set()
    if output is not None:
        untouchable.add(id(output.weight))
    if input_embeddings is not None:
        untouchable.add(id(input_embeddings.weight))
    linears, other, seen = [], 0, set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if (isinstance(module, torch.nn.Linear) and name == "weight" and id(param) not in untouchable):
                linears.append((param.numel(), module.out_features))
            else:
                other += param.numel()
    tied = getattr(text_config(config), "tie_word_embeddings", False)
    if tied and output is not None and input_embeddings is not None and output.weight is not input_embeddings.weight:
        other -= output.weight.numel()  # tie_weights did not tie it, but loading will
    buffers = tuple((b.numel(), b.element_size()) for b in model.buffers())
    return ParameterInventory(tuple(linears), other, buffers)


# ---- quantization (bitsandbytes) -----------------------------------------------------------------

QUANTIZATION_SCHEMES = ("int8", "nf4", "fp4")


@dataclass(frozen=True)
class Quantization:
    scheme: str  # int8, nf4 or fp4
    double_quant: bool = False

    def __post_init__(self):
        if self.scheme not in QUANTIZATION_SCHEMES:
            raise InputError(f"unknown quantization {self.scheme!r}; one of {QUANTIZATION_SCHEMES}")

    def describe(self) -> str:
        return self.scheme + ("+dq" if self.double_quant else "")


def quantization_of(candidate) -> Quantization | None:
    """The candidate's bitsandbytes quantization (`Candidate.quantization`: none, bnb_8bit, bnb_4bit with
    `bnb_4bit_quant_type` nf4/fp4 and `bnb_4bit_use_double_quant`), or None."""
    value = getattr(candidate, "quantization", "none")
    if value == "bnb_8bit":
        return Quantization("int8", False)
    if value == "bnb_4bit":
        return Quantization(candidate.bnb_4bit_quant_type, bool(candidate.bnb_4bit_use_double_quant))
    return None


def quantized_linear_bytes(numel: int, out_features: int, q: Quantization) -> int:
    """Bytes of one nn.Linear weight as bitsandbytes stores it (bias not included)."""
    if q.scheme == "int8":
        return numel + 4 * out_features  # int8 weight + float32 scale per output row (SCB)
    blocks = math.ceil(numel / BNB_4BIT_BLOCKSIZE)
    packed = math.ceil(numel / 2) + 16 * 4  # two 4-bit values per byte + the 16-entry float32 code book
    if not q.double_quant:
        return packed + 4 * blocks
    outer = math.ceil(blocks / BNB_DOUBLE_QUANT_BLOCKSIZE)
    return packed + blocks + 4 * outer + 256 * 4 + 4  # uint8 absmax, float32 outer absmax, code book, offset


def weight_bytes(inventory: ParameterInventory, dtype: str, quantization: Quantization | None = None) -> int:
    """Bytes of the loaded model: parameters in `dtype` (quantized linears as bitsandbytes stores them)
    plus buffers."""
    size = DTYPE_BYTES[dtype]
    if quantization is None:
        params = inventory.parameters * size
    else:
        params = inventory.other_params * size + sum(quantized_linear_bytes(n, out, quantization)
                                                     for n, out in inventory.linears)
    return params + inventory.buffer_bytes()


# ---- shapes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shapes:
    """What the activation and cache terms need from a decoder config."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    # per layer: the longest key length it keeps (None: the whole sequence; an int: sliding window / chunk)
    windows: tuple[int | None, ...]

    @classmethod
    def of(cls, config) -> "Shapes":
        c = text_config(config)
        try:
            layers, hidden, heads = c.num_hidden_layers, c.hidden_size, c.num_attention_heads
            vocab = c.vocab_size
        except AttributeError as exc:
            raise InputError(f"cannot size the {type(config).__name__}: its config has no {exc.name!r} "
                             "(num_hidden_layers, hidden_size, num_attention_heads and vocab_size are needed)") from None
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or hidden // heads
        intermediate = getattr(c, "intermediate_size", None) or 4 * hidden
        return cls(layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, _layer_windows(c, layers))


def _layer_windows(c, layers: int) -> tuple[int | None, ...]:
    """Per layer, how many positions its cache keeps at most, following transformers' cache layers:
    sliding-window layers keep `sliding_window`, chunked-attention layers `attention_chunk_size`, layers
    without attention (mamba, moe-only) none, full-attention layers everything."""
    types = getattr(c, "layer_types", None)
    if not types:
        kind = ("sliding_attention" if getattr(c, "sliding_window", None) is not None
                else "chunked_attention" if getattr(c, "attention_chunk_size", None) is not None
                else "full_attention")
        types = [kind] * layers
    windows = []
    for kind in list(types)[:layers]:
        if kind in ("sliding_attention", "hybrid_sliding"):
            windows.append(int(getattr(c, "sliding_window", None) or 0) or None)
        elif kind == "chunked_attention":
            windows.append(int(getattr(c, "attention_chunk_size", None) or 0) or None)
        elif kind in ("moe", "mlp", "dummy", "mamba", "linear_attention"):
            windows.append(0)
        else:
            windows.append(None)
    return tuple(windows)


def kv_cache_bytes(shapes: Shapes, batch_size: int, max_cache_len: int, dtype_bytes: int) -> int:
    """layers x 2 (keys, values) x batch x kv_heads x head_dim x cache length x dtype size, with sliding
    layers capped at their window. A static cache allocates all of it up front; a dynamic cache grows to
    the same size by the last token."""
    positions = sum(max_cache_len if w is None else min(w, max_cache_len) for w in shapes.windows)
    return 2 * batch_size * shapes.kv_heads * shapes.head_dim * positions * dtype_bytes


# ---- prompt lengths ------------------------------------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def prompt_token_lengths(model_id: str | None, prompts: Iterable[str]) -> tuple[tuple[int, ...], str]:
    """Token count of each prompt (special tokens included, as the worker tokenizes) and how it was found:
    `tokenizer` when the model folder (or the local hub cache) has a tokenizer, `bytes` (an upper bound:
    UTF-8 bytes + special tokens) otherwise."""
    prompts = tuple(prompts)
    tokenizer = _local_tokenizer(model_id) if model_id else None
    if tokenizer is not None:
        return tuple(len(tokenizer(p)["input_ids"]) for p in prompts), "tokenizer"
    return tuple(len(p.encode("utf-8")) + SPECIAL_TOKENS_ALLOWANCE for p in prompts), "bytes"


def _local_tokenizer(model_id: str):
    path = Path(model_id).expanduser()
    if path.is_dir() and not any((path / name).is_file() for name in _TOKENIZER_FILES):
        return None
    if not path.is_dir() and (model_id.startswith("random:") or model_id.count("/") != 1):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else model_id, local_files_only=True)
    except Exception:  # no tokenizer to be had offline: fall back to the byte bound
        return None


def padded_batch_lengths(lengths: tuple[int, ...], batch_size: int, pad_to_multiple_of: int | None) -> list[int]:
    """The padded length of every batch the worker runs (a last partial batch is dropped, as
    `Workload.batches` does): the longest prompt of the batch, rounded up to `pad_to_multiple_of`."""
    full = len(lengths) // batch_size * batch_size
    batches = [max(lengths[i:i + batch_size]) for i in range(0, full, batch_size)] or [max(lengths)]
    if pad_to_multiple_of:
        batches = [math.ceil(n / pad_to_multiple_of) * pad_to_multiple_of for n in batches]
    return batches


# ---- the model -----------------------------------------------------------------------------------

def config_dtype(config) -> str:
    """The dtype `from_pretrained` uses for dtype="auto" (transformers 5's default): the config's own,
    float32 when it names none."""
    c = text_config(config)
    value = getattr(c, "dtype", None) or getattr(config, "dtype", None)
    name = str(value).replace("torch.", "") if value is not None else "float32"
    return name if name in DTYPE_BYTES else "float32"


class MemoryModel:
    """Estimates the peak memory of a trial from the model's config, the candidate and the workload."""

    def __init__(self, calibration: Calibration | None = None):
        self.calibration = calibration or Calibration()

    def estimate(self, model_config, candidate, workload, device: str, *,
                 prompt_lengths: tuple[int, ...] | None = None, assistant_config=None,
                 quantization: Quantization | None | str = "from-candidate") -> MemoryEstimate:
        """Estimate one trial. `prompt_lengths` are the workload's prompts in tokens (default: the byte
        upper bound); `assistant_config` is the assistant model's config for assisted decoding."""
        cal = self.calibration
        if device not in ("cpu", "cuda"):
            raise InputError(f"memory estimates are for device cpu or cuda, not {device!r}")
        if quantization == "from-candidate":
            quantization = quantization_of(candidate)
        if prompt_lengths is None:
            prompt_lengths = prompt_token_lengths(None, workload.prompts)[0]
        if len(prompt_lengths) != len(workload.prompts):
            raise ValueError("prompt_lengths must give one length per prompt of the workload")

        dtype = config_dtype(model_config) if candidate.dtype == "auto" else candidate.dtype
        size = DTYPE_BYTES[dtype]
        shapes = Shapes.of(model_config)
        batch = workload.batch_size
        new = workload.max_new_tokens
        batch_lengths = padded_batch_lengths(tuple(prompt_lengths), batch, candidate.pad_to_multiple_of)
        prompt_len = max(batch_lengths)
        max_cache_len = prompt_len + new
        # teacher-forced scoring runs each prompt alone, unpadded, with its continuation but the last token
        scoring_lengths = [n + new - 1 for n in prompt_lengths]
        static = candidate.cache_implementation == "static"

        weights = weight_bytes(parameter_inventory(model_config), dtype, quantization)
        kv = kv_cache_bytes(shapes, batch, max_cache_len, size)

        # Tokens scored per verification step: assisted / prompt lookup decoding check their draft in one
        # forward of (draft + 1) positions, with logits for each.
        draft = 0
        if candidate.decoding == "prompt_lookup":
            draft = candidate.prompt_lookup_num_tokens or 10
        elif candidate.decoding == "assisted":
            draft = candidate.num_assistant_tokens or 20

        attn = candidate.attn_implementation
        activations = max(
            # prefill: the whole padded prompt; a static cache attends over its full length
            self.forward_bytes(shapes, batch, prompt_len, max_cache_len if static else prompt_len, 1, size, attn),
            # verification of a draft (or one decode step)
            self.forward_bytes(shapes, batch, draft + 1, max_cache_len, draft + 1, size, attn),
            # equivalence scoring: one prompt and its continuation, no cache, logits of every position
            self.equivalence_bytes(shapes, max(scoring_lengths), new, size, attn),
        )

        assistant = 0
        if candidate.decoding == "assisted" and assistant_config is not None:
            # The worker loads the assistant in the target's dtype; it decodes with a dynamic cache.
            a_shapes = Shapes.of(assistant_config)
            assistant = (weight_bytes(parameter_inventory(assistant_config), dtype)
                         + kv_cache_bytes(a_shapes, batch, max_cache_len, size))
            activations = max(activations, self.forward_bytes(a_shapes, batch, prompt_len, prompt_len, 1, size, attn))

        compile_workspace = 0
        if candidate.compile != "off":
            if device == "cpu":
                compile_workspace = cal.cpu_compile_workspace_bytes + cal.cpu_compile_bytes_per_layer * shapes.layers
            else:
                compile_workspace = cal.cuda_compile_fixed_bytes
                # CUDA graphs keep a pool of the step's activations: torch.compile's, or the graph loop's own
                graphs = candidate.compile in ("reduce-overhead", "max-autotune") or (
                    candidate.decode_loop == "graph_loop" and candidate.uses_static_loop())
                if graphs:
                    decode_step = self.forward_bytes(shapes, batch, 1, max_cache_len, 1, size, attn)
                    compile_workspace += int(cal.cuda_graph_pool_activation_copies * decode_step)
                if candidate.compile == "max-autotune":
                    compile_workspace += cal.cuda_max_autotune_extra_bytes

        if candidate.quantization == "int8_weight_only":
            # autotune.quantize: the float weights are loaded first (counted above) and converted one by one,
            # the int8 copies taking the blocks the float ones leave. A prefill dequantizes a few thousand rows
            # of a weight at a time (float32, then the dtype). (When it dequantized the whole head at once, the
            # H200 showed it: 1.1 GiB more in use than the same configuration unquantized, for random gemma-2b.)
            from autotune.quantize import PREFILL_CHUNK_ELEMENTS
            activations += min(PREFILL_CHUNK_ELEMENTS, shapes.vocab * shapes.hidden) * (4 + size)
        if candidate.compile != "off" and candidate.compile_freezing and candidate.quantization == "none":
            # Inductor's freezing fuses products that share an input (q/k/v, gate/up) into one over
            # concatenated weights, copies beside the model's own (on CPU it repacks every linear weight):
            # at most the linear weights once more. (Not for int8: Inductor leaves int8 weights unfolded.)
            compile_workspace += sum(n for n, _ in parameter_inventory(model_config).linears) * size
        resident = weights + kv + assistant
        kernel_cache = 0
        if device == "cuda":
            cuda_context, baseline = cal.cuda_context_bytes, 0
            kernel_cache = self.cuda_kernel_bytes(quantization, dtype, attn)
            overhead = int(cal.cuda_library_workspace_bytes + cal.cuda_allocator_resident_fraction * resident
                           + cal.cuda_allocator_transient_fraction * (activations + compile_workspace))
        else:
            cuda_context, baseline = 0, cal.cpu_process_baseline_bytes
            overhead = int(cal.cpu_allocator_fraction * (resident + activations))
            if size == 2 and quantization is None:
                kernel_cache = self.cpu_kernel_cache_bytes(batch_lengths, scoring_lengths, new, static, attn, draft)
        return MemoryEstimate(
            weights=weights, kv_cache=kv, assistant=assistant, activations=activations,
            cuda_context=cuda_context, process_baseline=baseline, kernel_cache=kernel_cache,
            allocator_overhead=overhead,
            compile_workspace=compile_workspace, device=device, dtype=dtype, batch_size=batch,
            max_cache_len=max_cache_len, quantization=quantization.describe() if quantization else None)

    def cuda_kernel_bytes(self, quantization: Quantization | None, dtype: str, attention: str) -> int:
        """Device memory outside the allocator and the context (see CUDA_FLEX_FLOAT32_KERNEL_BYTES)."""
        cal = self.calibration
        extra = cal.cuda_bnb_8bit_kernel_bytes if quantization is not None and quantization.scheme == "int8" else 0
        if attention == "flex_attention" and dtype == "float32":
            extra += cal.cuda_flex_float32_kernel_bytes
        return extra

    def cpu_kernel_cache_bytes(self, batch_lengths: list[int], scoring_lengths: list[int], new: int,
                               static: bool, attention: str, draft: int = 0) -> int:
        """oneDNN's per-shape kernels of a low-precision trial on CPU (see CPU_LOWP_KERNEL_INIT_BYTES):
        one set per distinct number of positions in a forward (prefills, scoring passes, and the 2 to
        draft + 1 positions of a draft verification), and with eager attention one per score shape."""
        cal = self.calibration
        prefill_shapes = set(batch_lengths) | set(scoring_lengths) | set(range(2, draft + 2))
        total = cal.cpu_lowp_kernel_init_bytes + cal.cpu_lowp_bytes_per_prefill_shape * len(prefill_shapes)
        if attention == "eager":
            shapes: set[tuple[int, int]] = {(n, n) for n in scoring_lengths}
            cache_len = 0
            for n in batch_lengths:
                if static:  # transformers keeps the largest static cache length seen so far
                    cache_len = max(cache_len, n + new)
                    shapes |= {(n, cache_len), (1, cache_len)}
                else:  # the keys grow by one each decoding step
                    shapes |= {(n, n)} | {(1, k) for k in range(n + 1, n + new)}
            verification = draft * len(batch_lengths)  # draft checks of several positions, see the constants
            total += cal.cpu_lowp_eager_bytes_per_attention_shape * (len(shapes) + verification)
        return int(total)

    def forward_bytes(self, s: Shapes, batch: int, tokens: int, keys: int, logit_rows: int, size: int,
                      attention: str = "auto") -> int:
        """Transient memory of one forward of `tokens` positions per sequence attending over `keys`
        positions, with logits for `logit_rows` positions: the largest decoder layer's buffers, or the
        final hidden states and logits, whichever is larger (layers run one after another)."""
        cal = self.calibration
        hidden = batch * tokens * s.hidden * size
        projections = batch * tokens * (2 * s.heads + 2 * s.kv_heads) * s.head_dim * size
        fused = attention in ("flash_attention_2", "flex_attention")
        # Attention: eager materializes the scores in the dtype, adds the mask (a second buffer) and runs
        # softmax in float32; SDPA (auto = sdpa for the models autotune runs) may fall back to its math
        # kernel, counted as one score buffer; flash / flex keep none. eager and SDPA repeat the key/value
        # heads to the query heads (GQA through transformers' repeat_kv).
        score_bytes = 0 if fused else (2 * size + 4) if attention == "eager" else size
        scores = batch * s.heads * tokens * keys * score_bytes
        repeated_kv = 2 * batch * s.heads * keys * s.head_dim * size if s.kv_heads < s.heads and not fused else 0
        attention_bytes = projections + repeated_kv + scores
        mlp = batch * tokens * s.intermediate * size * cal.mlp_buffers
        layer = cal.hidden_state_copies * hidden + max(attention_bytes, mlp)
        logits = batch * logit_rows * s.vocab * (size + 4 * cal.logits_float32_copies)
        return int(max(layer, 2 * hidden + logits))

    def equivalence_bytes(self, s: Shapes, tokens: int, scored: int, size: int, attention: str = "auto") -> int:
        """The teacher-forced forward of equivalence scoring: batch 1, no cache, logits of all `tokens`
        positions in the dtype, then float32 copies of the `scored` continuation rows."""
        cal = self.calibration
        forward = self.forward_bytes(s, 1, tokens, tokens, 0, size, attention)
        logits = tokens * s.vocab * size + scored * s.vocab * 4 * cal.equivalence_float32_copies
        return int(max(forward, 2 * tokens * s.hidden * size + logits))


# ---- model ids -> configs, and one estimator per study ------------------------------------------

def load_config(model_id: str):
    """The transformers config of a model: a local folder, a `random:ARCH` id (autotune.models), or a hub id: from the local hub cache first, then from the hub unless HF_HUB_OFFLINE is set;
    a failure says how to get it."""
    if model_id.startswith("random:"):
        from autotune import models

        return models.config_for(model_id)
    from transformers import AutoConfig

    path = Path(model_id).expanduser()
    if path.is_dir():
        try:
            return AutoConfig.from_pretrained(str(path))
        except Exception as exc:
            raise InputError(f"cannot read the config of model folder {model_id!r}: {_first_line(exc)}") from None
    try:
        return AutoConfig.from_pretrained(model_id, local_files_only=True)
    except Exception as exc:
        error = exc
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            return AutoConfig.from_pretrained(model_id)
        except Exception as exc:
            error = exc
    raise InputError(f"cannot get the config of hub model {model_id!r} ({_first_line(error)}): without network "
                     "access, download it first (huggingface-cli download) or give a local folder") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass
class Estimator:
    """A MemoryModel bound to one study's model, assistant and workload: `estimator(candidate, device)`."""

    model_id: str
    config: Any
    workload: Any
    prompt_lengths: tuple[int, ...]
    lengths_from: str  # "tokenizer" or "bytes"
    assistant_config: Any = None
    memory_model: MemoryModel = field(default_factory=MemoryModel)

    @classmethod
    def for_model(cls, model_id: str, workload, assistant: str | None = None,
                  memory_model: MemoryModel | None = None) -> "Estimator":
        config = load_config(model_id)
        lengths, source = prompt_token_lengths(model_id, workload.prompts)
        assistant_config = load_config(assistant) if assistant else None
        return cls(model_id, config, workload, lengths, source, assistant_config, memory_model or MemoryModel())

    def __call__(self, candidate, device: str) -> MemoryEstimate:
        return self.memory_model.estimate(self.config, candidate, self.workload, device,
                                          prompt_lengths=self.prompt_lengths, assistant_config=self.assistant_config)


def over_budget_message(estimate: MemoryEstimate, budget_bytes: int) -> str:
    where = "device memory" if estimate.device == "cuda" else "resident memory"
    return (f"estimated peak {where} {format_bytes(estimate.total)} is over the --vram budget "
            f"{format_bytes(budget_bytes)}: {estimate.describe()}")
