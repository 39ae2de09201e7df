"""Build: the one path from a recipe to a model that generates as the recipe says. The trial worker and
`autotune.load_preset` both call `build`, so a preset runs as its trial was measured.

    load the model (load kwargs) and its tokenizer, and the assistant model
    -> weight hints (int8 weights, stacked siblings) -> flex attention's kernel options
    -> Inductor options -> GenerationConfig (the model's own + the recipe's fields) -> compile
    -> the decode loop

A trial measures a workload: `build(recipe, device, workload)` makes every call generate exactly its
`max_new_tokens` and sizes a static cache (and the decode loop's) to its longest padded batch. A preset is
built for any prompt: its loop sizes its cache by the first call and grows it when a call needs more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from autotune.config.candidate import STATIC_CACHES, Candidate
from autotune.config.preset import Preset
from autotune.config.workload import Workload
from autotune.runtime import attention, tuning
from autotune.runtime.loading import load_model, load_tokenizer


@dataclass(frozen=True)
class Recipe:
    """What to build: a model, its `from_pretrained` kwargs, GenerationConfig fields on top of the model's
    own, and runtime hints (see docs/preset.md)."""

    model: str
    load_kwargs: dict
    generation: dict
    runtime: dict

    @classmethod
    def of_candidate(cls, model: str, candidate: Candidate) -> "Recipe":
        return cls(model, candidate.load_kwargs(), candidate.generation_kwargs(), candidate.runtime())

    @classmethod
    def of_preset(cls, preset: Preset) -> "Recipe":
        return cls(preset.model, preset.load_kwargs, preset.generation_config, preset.runtime)


@dataclass
class Built:
    """A model ready to generate as its recipe says, and what it took to get there."""

    model: Any
    tokenizer: Any
    generation_config: Any
    assistant: Any
    runtime: dict
    device: str
    load_s: float
    max_cache_len: int | None = None  # the static cache's length
    loop: Any = None  # the decode loop (autotune.runtime.decode) where the recipe runs one

    def generate(self, inputs: dict, streamer=None):
        """Generate for one tokenized batch as the recipe says: its decode loop, or generate()."""
        if self.loop is not None:
            return self.loop.generate(**inputs, generation_config=self.generation_config, streamer=streamer)
        extra = {} if self.assistant is None else {"assistant_model": self.assistant}
        return self.model.generate(**inputs, streamer=streamer, generation_config=self.generation_config, **extra)

    def tokenize(self, prompts) -> dict:
        """Left-padded batch on the device, padded to `pad_to_multiple_of` when the recipe asks."""
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True,
                              pad_to_multiple_of=self.runtime.get("pad_to_multiple_of")).to(self.device)

    def runtime_context(self):
        """The context generation runs in: the recipe's SDPA backend."""
        return attention.sdpa_backend_context(self.runtime.get("sdpa_backend"))

    def scoring_context(self):
        """The context of teacher-forced scoring: the recipe's SDPA backend, math where it cannot run."""
        return attention.scoring_backend_context(self.runtime.get("sdpa_backend"))

    def bind_generate(self) -> None:
        """Make `model.generate` generate as `generate` does, for code that calls it directly (a loaded
        preset): `tuning.bind_generate`."""
        tuning.bind_generate(self.model, self.runtime, self.loop, self.assistant)


def build(recipe: Recipe, device: str, workload: Workload | None = None) -> Built:
    """Load and prepare the recipe's model on `device`.

    Args:
        recipe: what to build (`Recipe.of_candidate` for a trial, `Recipe.of_preset` for a preset).
        device: "cpu" or "cuda".
        workload: the workload a trial measures, or None (a preset, for any prompt).

    Returns:
        The Built model; `load_s` is the time to load it and apply its weight hints.
    """
    import torch

    started = time.perf_counter()
    model = load_model(recipe.model, recipe.load_kwargs, device)
    tokenizer = load_tokenizer(recipe.model)
    check_vocabulary(model, tokenizer)
    assistant = None
    if recipe.runtime.get("assistant_model"):
        # the assistant runs in the target's dtype, so the two exchange logits of one precision
        assistant = load_model(recipe.runtime["assistant_model"], {"dtype": model.dtype}, device)
    tuning.prepare_weights(model, recipe.runtime)
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    max_cache_len = None
    if workload is not None and recipe.generation.get("cache_implementation") in STATIC_CACHES:
        max_cache_len = static_cache_length(tokenizer, workload, recipe.runtime.get("pad_to_multiple_of"))
    config = generation_config_for(model, recipe.generation, tokenizer, workload, max_cache_len)
    # a preset's loop starts at the length its trial measured with, and grows for a longer call
    loop_length = max_cache_len if workload is not None else recipe.generation.get("max_cache_len")
    loop = tuning.prepare_generation(model, recipe.runtime, config, loop_length, grow=workload is None)
    return Built(model, tokenizer, config, assistant, recipe.runtime, device, load_s, max_cache_len, loop)


def check_vocabulary(model, tokenizer) -> None:
    """A tokenizer whose ids the model cannot embed is refused before anything runs."""
    vocab = model.config.get_text_config().vocab_size
    if len(tokenizer) > vocab:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary ({vocab})")


def static_cache_length(tokenizer, workload: Workload, pad_to_multiple_of: int | None) -> int:
    """The longest padded prompt batch of the workload plus its new tokens: one static cache of this length
    serves every batch, so no batch reallocates it (and no compiled forward recompiles for its length)."""
    longest = max(len(tokenizer(list(batch), padding=True, pad_to_multiple_of=pad_to_multiple_of)["input_ids"][0])
                  for batch in workload.batches())
    return longest + workload.max_new_tokens


def generation_config_for(model, fields: dict, tokenizer, workload: Workload | None = None,
                          max_cache_len: int | None = None):
    """The model's own generation config with `fields` on top; greedy decoding carries no sampling settings.

    For a trial (`workload`), `min_new_tokens = max_new_tokens` makes every configuration generate the same
    number of tokens, so their speeds compare: a measuring setting, never part of an exported preset.
    """
    from transformers import GenerationConfig

    config = GenerationConfig.from_dict({**model.generation_config.to_dict(), **fields})
    if workload is not None:
        config.max_new_tokens = config.min_new_tokens = workload.max_new_tokens
        config.pad_token_id = tokenizer.pad_token_id
        config.do_sample = workload.sampling
    if not config.do_sample:
        config.temperature = config.top_p = config.top_k = None
    if max_cache_len is not None:
        config.max_cache_len = max_cache_len
    return config
