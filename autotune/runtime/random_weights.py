"""Random weights for the built-in architectures (`random:<name>`, autotune.config.models), drawn on the device.

Every parameter is drawn from its own seeded generator in float32, then cast to the load dtype, so two
trials of one study (another dtype, another attention, quantized or not) get the same weights up to rounding.
The state dict goes through `from_pretrained(None, config=..., state_dict=...)` with the candidate's load
kwargs, the path a checkpoint takes; a torchao quantization is applied to the built model instead
(`autotune.runtime.quant.ao`), on the linears `from_pretrained` would quantize. Random models have no tokenizer: the bundled codelm-4m one is used where
the source tree holds it, else a byte-level one built in memory (every built-in architecture has a vocabulary
of at least 32000, so either tokenizer's ids are valid as they are).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from autotune.config.models import ARCHITECTURES, config_for, random_name
from autotune.runtime.quant import ao

BUNDLED_TOKENIZER = Path(__file__).resolve().parents[2] / "examples" / "models" / "codelm-4m"


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
    torchao = ao.is_torchao(kwargs.get("quantization_config"))
    if torchao:  # quantized once built: through the state dict, int4 failed to convert (H200, torchao 0.18)
        quantization = kwargs.pop("quantization_config")
    if device != "cpu":
        kwargs.setdefault("device_map", device)
    model = model_class(config).from_pretrained(None, config=config, state_dict=state, **kwargs)
    del state
    if torchao:
        ao.quantize_as_loaded(model, quantization)
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
