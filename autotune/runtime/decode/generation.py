"""What the decode loops share with generate(): which generation configs they run, EOS and padding, and
sampling drawn as generate() draws it."""

from __future__ import annotations

import torch

SUPPORTED_SAMPLING = ("temperature", "top_k", "top_p")


class UnsupportedGeneration(ValueError):
    """The generation config asks for something this loop does not do."""


def unsupported_reason(generation_config) -> str | None:
    """Why this loop cannot run `generation_config` as generate() would, or None."""
    g = generation_config
    checks = [
        (getattr(g, "num_beams", 1) not in (None, 1), "beam search"),
        (getattr(g, "num_return_sequences", 1) not in (None, 1), "several sequences per prompt"),
        (getattr(g, "repetition_penalty", 1.0) not in (None, 1.0), "a repetition penalty"),
        (bool(getattr(g, "no_repeat_ngram_size", 0)), "no_repeat_ngram_size"),
        (bool(getattr(g, "min_length", 0)), "min_length (min_new_tokens is done)"),
        (bool(getattr(g, "stop_strings", None)), "stop strings"),
        (bool(getattr(g, "bad_words_ids", None)), "bad_words_ids"),
        (getattr(g, "prompt_lookup_num_tokens", None) is not None, "prompt lookup decoding"),
        (getattr(g, "max_new_tokens", None) is None, "no max_new_tokens"),
    ]
    for failed, what in checks:
        if failed:
            return f"the static decode loop does not do {what}: use generate()"
    return None


def check_supported(generation_config) -> None:
    reason = unsupported_reason(generation_config)
    if reason is not None:
        raise UnsupportedGeneration(reason)


def eos_ids(generation_config) -> list[int]:
    eos = generation_config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def pad_id(generation_config) -> int:
    """What rows emit once they have finished: the pad token, else the first EOS, else 0."""
    g = generation_config
    return g.pad_token_id if g.pad_token_id is not None else (eos_ids(g) or [0])[0]


def process_for_sampling(logits: torch.Tensor, generation_config) -> torch.Tensor:
    """Temperature, then top-k, then top-p, as generate() orders its warpers; returns probabilities."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    g = generation_config
    scores = logits.float()
    if g.temperature is not None and g.temperature != 1.0:
        scores = TemperatureLogitsWarper(g.temperature)(None, scores)
    if g.top_k is not None and g.top_k != 0:
        scores = TopKLogitsWarper(top_k=g.top_k, min_tokens_to_keep=1)(None, scores)
    if g.top_p is not None and g.top_p < 1.0:
        scores = TopPLogitsWarper(top_p=g.top_p, min_tokens_to_keep=1)(None, scores)
    return torch.softmax(scores, dim=-1)


def sample(logits: torch.Tensor, generation_config) -> torch.Tensor:
    """One token per row, drawn as generate() draws it."""
    return torch.multinomial(process_for_sampling(logits, generation_config), num_samples=1).squeeze(1)


def first_true(flags: torch.Tensor) -> int | None:
    """Index of the first true flag (one wait for the device), or None."""
    hits = flags.nonzero()
    return int(hits[0, 0]) if hits.numel() else None
