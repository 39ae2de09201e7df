"""The model a study names: a folder, a hub id, or `random:<architecture>`, a random-weight model of a
real architecture for measuring speed at real scale with no checkpoint.

`--model random:gemma-2b` (or `random:llama-3-8b`, `random:mistral-7b`, `random:qwen2.5-0.5b`) builds the
architecture from a built-in copy of its public `config.json`; `autotune.runtime.random_weights` draws its
weights on the device and loads them through `from_pretrained`, the path a checkpoint takes. Their greedy
text is degenerate (one token repeated), so a Measurement of a random model says
`equivalence_meaningful=False`: its agreement figures are recorded but prove nothing.

`config_for(model_id)` returns the `PretrainedConfig` of any model id (a `random:` name, a folder, a hub id)
without loading weights; the memory model sizes models with it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from autotune.errors import InputError

PREFIX = "random:"

# Public config.json values of each architecture (rope settings in transformers 5's `rope_parameters`
# form). `_norm_weight` is not a config field: the value at which the architecture's RMSNorm weight is
# neutral (Gemma scales by 1 + weight).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # google/gemma-2b: 2.51B parameters
    "gemma-2b": dict(
        model_type="gemma", architectures=["GemmaForCausalLM"], vocab_size=256000, hidden_size=2048,
        intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1,
        head_dim=256, hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192, initializer_range=0.02,
        rms_norm_eps=1e-6, bos_token_id=2, eos_token_id=1, pad_token_id=0, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, attention_bias=False,
        dtype="bfloat16", _norm_weight=0.0),
    # meta-llama/Meta-Llama-3-8B: 8.03B parameters
    "llama-3-8b": dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256, hidden_size=4096,
        intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        hidden_act="silu", max_position_embeddings=8192, initializer_range=0.02, rms_norm_eps=1e-5,
        bos_token_id=128000, eos_token_id=128001, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, attention_bias=False,
        mlp_bias=False, dtype="bfloat16", _norm_weight=1.0),
    # mistralai/Mistral-7B-v0.1: 7.24B parameters
    "mistral-7b": dict(
        model_type="mistral", architectures=["MistralForCausalLM"], vocab_size=32000, hidden_size=4096,
        intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        hidden_act="silu", max_position_embeddings=32768, initializer_range=0.02, rms_norm_eps=1e-5,
        sliding_window=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, dtype="bfloat16", _norm_weight=1.0),
    # Qwen/Qwen2.5-0.5B: 0.49B parameters (q/k/v projections with bias)
    "qwen2.5-0.5b": dict(
        model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936, hidden_size=896,
        intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        hidden_act="silu", max_position_embeddings=32768, initializer_range=0.02, rms_norm_eps=1e-6,
        use_sliding_window=False, sliding_window=32768, max_window_layers=24, bos_token_id=151643,
        eos_token_id=151643, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, dtype="bfloat16", _norm_weight=1.0),
}


def is_random(model_id: str | None) -> bool:
    return isinstance(model_id, str) and model_id.startswith(PREFIX)


def random_name(model_id: str) -> str:
    """The architecture name of a `random:` id; an unknown one is an input error listing the known ones."""
    name = model_id[len(PREFIX):] if is_random(model_id) else model_id
    if name not in ARCHITECTURES:
        raise InputError(f"unknown random-weight model {model_id!r}: use one of "
                         f"{', '.join(PREFIX + n for n in ARCHITECTURES)}")
    return name


def config_for(model_id: str):
    """The `transformers.PretrainedConfig` of `model_id`, without weights: the built-in architecture of a
    `random:` id (with `config.architectures` naming its model class), else `AutoConfig.from_pretrained`."""
    from transformers import AutoConfig

    if not is_random(model_id):
        return AutoConfig.from_pretrained(model_id)
    fields = {k: v for k, v in ARCHITECTURES[random_name(model_id)].items() if not k.startswith("_")}
    fields = {**fields, "rope_parameters": dict(fields["rope_parameters"])}
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def describe(model_id: str) -> str:
    """One line about a `random:` model, for presets and reports."""
    return (f"{model_id} is a random-weight {random_name(model_id)} built by autotune: "
            "from_pretrained cannot load it; autotune.load_preset builds it again (its outputs are "
            "degenerate, so its equivalence figures prove nothing)")


def default_study_name(model: str) -> str:
    """A study's name when none is given: the model folder's name, or `random-<architecture>`."""
    if is_random(model):
        return "random-" + random_name(model)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.rstrip("/")).name).lstrip("._-")[:100]
    return name or "study"


def resolve_model(model: str) -> str:
    """A local model folder becomes an absolute path (so workers and presets find it from anywhere); a hub id
    is kept; a `random:<architecture>` id is kept once its architecture is known. A path that does not exist
    or holds no config.json is an input error."""
    if is_random(model):
        random_name(model)  # an unknown architecture is an input error here, before anything starts
        return model
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1
    if not looks_local:
        return model
    if not path.is_dir():
        raise InputError(f"model path {model!r} does not exist: give a folder with config.json and weights, "
                         "or a Hugging Face hub id like google/gemma-2b")
    if not (path / "config.json").is_file():
        raise InputError(f"model folder {model!r} has no config.json: is it a transformers model folder?")
    return str(path.resolve())
