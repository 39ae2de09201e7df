"""Loading a model and its tokenizer: a checkpoint through `from_pretrained`, a `random:` architecture through
`autotune.runtime.random_weights`, placed on the device in eval mode."""

from __future__ import annotations

from autotune.config import models
from autotune.runtime import random_weights


def load_model(model_id: str, load_kwargs: dict, device: str):
    """`from_pretrained` with `load_kwargs`, placed on `device`, in eval mode.

    Args:
        model_id: a model folder, a hub id, or `random:<architecture>` (built with the same kwargs).
        load_kwargs: `from_pretrained` keyword arguments (dtype, attn_implementation, quantization_config).
        device: "cpu" or "cuda".

    Returns:
        The model, in eval mode.
    """
    if models.is_random(model_id):
        return random_weights.load_random_model(model_id, load_kwargs, device)
    from transformers import AutoModelForCausalLM

    kwargs = dict(load_kwargs)
    if device != "cpu":
        # without a device_map from_pretrained loads on the CPU, and a bitsandbytes model refuses `.to`
        kwargs.setdefault("device_map", device)
    return AutoModelForCausalLM.from_pretrained(model_id, **kwargs).eval()


def load_tokenizer(model_id: str):
    """The model's tokenizer (a random model's: `random_weights.load_tokenizer`), left padding, with a pad
    token (EOS where the tokenizer names none)."""
    if models.is_random(model_id):
        tokenizer = random_weights.load_tokenizer(model_id)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
