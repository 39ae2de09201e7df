"""Whether a workload fits the model's context: a prompt longer than the model's positions, with the new
tokens, cannot run, so the study refuses it before any trial (instead of each trial failing on it)."""

from __future__ import annotations

from autotune.errors import WorkloadError
from autotune.memory.inventory import text_config

# The names configurations give their number of positions, most common first.
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config) -> int | None:
    """The model's context in tokens, None where its config names none."""
    c = text_config(config)
    for name in CONTEXT_FIELDS:
        value = getattr(c, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_prompts_fit(config, prompt_lengths: tuple[int, ...], lengths_from: str, max_new_tokens: int) -> None:
    """WorkloadError naming the first prompt whose tokens and the new tokens exceed the model's context.

    Args:
        config: the model's configuration.
        prompt_lengths: each prompt's length in tokens.
        lengths_from: "tokenizer" (exact lengths) or "bytes" (an upper bound: nothing is refused on it).
        max_new_tokens: the tokens generated per prompt.
    """
    context = context_length(config)
    if context is None or lengths_from != "tokenizer":
        return
    for number, length in enumerate(prompt_lengths, start=1):
        if length + max_new_tokens > context:
            raise WorkloadError(
                f"prompt {number} is {length} tokens; with --max-new-tokens {max_new_tokens} that is "
                f"{length + max_new_tokens}, more than the model's context of {context} tokens: shorten the prompt "
                "or lower --max-new-tokens")
