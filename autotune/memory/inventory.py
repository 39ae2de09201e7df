"""What a model is made of, without loading it: its config, parameter counts on the meta device, the shapes
the cache and activation terms need, and the workload's prompt lengths in tokens."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autotune.errors import InputError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Prompt lengths without a tokenizer: byte-level BPE and SentencePiece with byte fallback never make more
# tokens than UTF-8 bytes, so bytes + special tokens is an upper bound.
SPECIAL_TOKENS_ALLOWANCE = 2

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
                             "(num_hidden_layers, hidden_size, num_attention_heads and vocab_size are needed)"
                             ) from None
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


def config_dtype(config) -> str:
    """The dtype `from_pretrained` uses for dtype="auto" (transformers 5's default): the config's own,
    float32 when it names none."""
    c = text_config(config)
    value = getattr(c, "dtype", None) or getattr(config, "dtype", None)
    name = str(value).replace("torch.", "") if value is not None else "float32"
    return name if name in DTYPE_BYTES else "float32"


def load_config(model_id: str):
    """The transformers config of a model: a local folder, a `random:ARCH` id (autotune.config.models), or a hub
    id: from the local hub cache first, then from the hub unless HF_HUB_OFFLINE is set; a failure says how to
    get it."""
    if model_id.startswith("random:"):
        from autotune.config import models

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
