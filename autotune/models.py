"""Random-weight models of real architectures, for measuring speed at real scale with no checkpoint.

`--model random:gemma-2b` (or `random:llama-3-8b`, `random:mistral-7b`, `random:qwen2.5-0.5b`) builds the
architecture from a built-in copy of its public `config.json` with random weights, directly on the
device: no download, no checkpoint on disk, no CPU copy of the parameters.

- Weights: every parameter is drawn from its own seeded generator on the device, in float32, then cast to
  the load dtype, so two trials of one study (other dtype, other attention, quantized or not) get the
  same weights up to rounding. Matrices ~ N(0, initializer_range), biases 0, norm weights at the
  architecture's neutral value.
- Loading: the random state dict goes through `from_pretrained(None, config=..., state_dict=...)` with the
  candidate's load kwargs, exactly the path a checkpoint takes, so dtype, attention implementation and
  bitsandbytes quantization (which quantizes while loading) all apply as they would to real weights.
- Tokenizer: random models have none. The bundled `examples/models/codelm-4m` tokenizer (8192-token
  byte-level BPE, `<pad>`=0, `<eos>`=1, `<bos>`=2) is used when the source tree holds it, else a
  byte-level tokenizer built in memory (259 tokens, same special ids). Every built-in architecture has a
  vocabulary of at least 32000, so those ids are valid as they are: no mapping is needed.
- Their greedy text is degenerate (one token repeated), so a Measurement of a random model says
  `equivalence_meaningful=False`: its agreement figures are recorded but prove nothing.

`config_for(model_id)` returns the `PretrainedConfig` of any model id (a `random:` name, a folder, a hub
id) without loading weights; the memory model sizes models with it.
"""

from __future__ import annotations

import zlib
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

BUNDLED_TOKENIZER = Path(__file__).resolve().parent.parent / "examples" / "models" / "codelm-4m"


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


def model_class(config):
    import transformers

    return getattr(transformers, config.architectures[0])


def _parameter_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def random_state_dict(model_id: str, dtype, device: str, seed: int = 0, config=None, store: str | None = None) -> dict:
    """A deterministic random state dict for the architecture, drawn on `device`, in `dtype` (a torch dtype),
    kept on `store` (default: `device`).

    The parameter names and shapes come from the model built on the meta device (no memory); each tensor
    is drawn in float32 from a generator seeded by (seed, name), one at a time, then cast. `config`
    replaces the built-in one (tests use a copy with fewer layers)."""
    import torch

    spec = ARCHITECTURES[random_name(model_id)]
    config = config if config is not None else config_for(model_id)
    with torch.device("meta"):
        skeleton = model_class(config)(config)
    state = {}
    for name, param in skeleton.named_parameters():  # tied weights appear once
        if param.dim() >= 2:
            generator = torch.Generator(device=device).manual_seed(_parameter_seed(seed, name))
            values = torch.randn(param.shape, generator=generator, device=device, dtype=torch.float32)
            state[name] = values.mul_(config.initializer_range).to(dtype).to(store or device)
            del values
        elif "norm" in name:
            state[name] = torch.full(param.shape, spec["_norm_weight"], device=store or device, dtype=dtype)
        else:  # biases
            state[name] = torch.zeros(param.shape, device=store or device, dtype=dtype)
    return state


def load_random_model(model_id: str, load_kwargs: dict, device: str, seed: int = 0, config=None):
    """Build `random:<name>` with `load_kwargs` (dtype, attn_implementation, quantization_config), on
    `device`, in eval mode. The weights are drawn on the device (fast) and kept in host memory until
    `from_pretrained` loads them, as it loads a checkpoint: a state dict already on the GPU would be copied
    there and hold the weights twice at load (a peak of 2x the weights, measured on the H200), which is
    not what a real model costs. `config` replaces the built-in one (tests use a copy with fewer layers)."""
    import torch

    config = config if config is not None else config_for(model_id)
    dtype = load_kwargs.get("dtype", "auto")
    if dtype == "auto":  # the architecture's own dtype, as from_pretrained reads it from a config.json
        dtype = config.dtype
    if isinstance(dtype, str):  # config.dtype is a torch dtype in transformers 5, a string in a preset
        dtype = getattr(torch, dtype)
    state = random_state_dict(model_id, dtype, device, seed, config=config, store="cpu")
    if device.startswith("cuda"):  # the float32 draws stay reserved by the caching allocator otherwise
        torch.cuda.empty_cache()   # (2 GB for gemma-2b's embedding), which no checkpoint load would cost
    kwargs = {**load_kwargs, "dtype": dtype}
    if device != "cpu":
        kwargs.setdefault("device_map", device)
    model = model_class(config).from_pretrained(None, config=config, state_dict=state, **kwargs)
    del state
    return model.eval()


def load_tokenizer(model_id: str | None = None):
    """The tokenizer used with random-weight models (left padding): the bundled codelm-4m tokenizer when
    the source tree holds it, else an in-memory byte-level tokenizer with the same special token ids."""
    from transformers import AutoTokenizer

    if (BUNDLED_TOKENIZER / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(BUNDLED_TOKENIZER))
    else:
        tokenizer = byte_tokenizer()
    tokenizer.padding_side = "left"
    return tokenizer


def byte_tokenizer():
    """A byte-level tokenizer without merges: `<pad>`=0, `<eos>`=1, `<bos>`=2, then the 256 bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, **{ch: 3 + i for i, ch in enumerate(sorted(alphabet))}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", padding_side="left")


def describe(model_id: str) -> str:
    """One line about a `random:` model, for presets and reports."""
    return (f"{model_id} is a random-weight {random_name(model_id)} built by autotune.models: "
            "from_pretrained cannot load it; autotune.load_preset builds it again (its outputs are "
            "degenerate, so its equivalence figures prove nothing)")
