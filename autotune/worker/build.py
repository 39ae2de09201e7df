"""Build a Candidate: load the model (and assistant) with its load kwargs, prepare its GenerationConfig,
and apply its runtime hints (weight-only quantization, torch.compile, the SDPA backend). Runs in the worker process only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from autotune import hints, models
from autotune.candidate import STATIC_CACHES, Candidate
from autotune.workload import Workload


@dataclass
class Built:
    """A model ready to generate as the candidate says, and what it took to get there."""

    model: Any
    tokenizer: Any
    generation_config: GenerationConfig
    assistant: Any
    candidate: Candidate
    device: str
    load_s: float
    max_cache_len: int | None = None  # the static cache's length, sized from the workload
    loop: Any = None  # autotune.decode_loop.StaticDecodeLoop when the candidate runs it

    def generate(self, inputs: dict, streamer=None):
        """Generate for one tokenized batch as the candidate says: its decode loop, or generate()."""
        if self.loop is not None:
            return self.loop.generate(**inputs, generation_config=self.generation_config, streamer=streamer)
        return self.model.generate(**inputs, streamer=streamer, **self.generate_kwargs())

    def generate_kwargs(self) -> dict:
        kwargs: dict[str, Any] = {"generation_config": self.generation_config}
        if self.assistant is not None:
            kwargs["assistant_model"] = self.assistant
        return kwargs

    def tokenize(self, prompts) -> dict:
        """Left-padded batch on the device, padded to `pad_to_multiple_of` when the candidate asks."""
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True,
                              pad_to_multiple_of=self.candidate.pad_to_multiple_of).to(self.device)

    def runtime_context(self):
        """The context generation runs in: the candidate's SDPA backend."""
        return hints.sdpa_backend_context(self.candidate.runtime().get("sdpa_backend"))

    def scoring_context(self):
        """The context of teacher-forced scoring: the candidate's SDPA backend, math where it cannot run."""
        return hints.scoring_backend_context(self.candidate.runtime().get("sdpa_backend"))


def load_model(model_id: str, load_kwargs: dict, device: str):
    """`from_pretrained` with the candidate's kwargs, placed on `device`, in eval mode; a `random:` id is
    built by `autotune.models` with the same kwargs."""
    if models.is_random(model_id):
        return models.load_random_model(model_id, load_kwargs, device)
    kwargs = dict(load_kwargs)
    if device != "cpu":
        kwargs.setdefault("device_map", device)
    # Without a device_map, from_pretrained loads on the CPU (and a bitsandbytes model refuses `.to`).
    return AutoModelForCausalLM.from_pretrained(model_id, **kwargs).eval()


def load_tokenizer(model_id: str):
    tokenizer = models.load_tokenizer(model_id) if models.is_random(model_id) else AutoTokenizer.from_pretrained(model_id)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def static_cache_length(tokenizer, workload: Workload, pad_to_multiple_of: int | None) -> int:
    """The longest padded prompt batch of the workload plus its new tokens: one static cache of this length
    serves every batch, so no batch reallocates it (and no compiled forward recompiles for its length)."""
    longest = max(len(tokenizer(list(batch), padding=True, pad_to_multiple_of=pad_to_multiple_of)["input_ids"][0])
                  for batch in workload.batches())
    return longest + workload.max_new_tokens


def generation_config_for(model, candidate: Candidate, workload: Workload, pad_token_id: int,
                          max_cache_len: int | None = None) -> GenerationConfig:
    """The model's own generation config, plus the candidate's fields, plus the workload's settings.

    `min_new_tokens = max_new_tokens` makes every configuration generate the same number of tokens,
    so their speeds compare (it is a measuring setting, not part of an exported preset).
    """
    config = GenerationConfig.from_dict({**model.generation_config.to_dict(), **candidate.generation_kwargs()})
    config.max_new_tokens = workload.max_new_tokens
    config.min_new_tokens = workload.max_new_tokens
    config.pad_token_id = pad_token_id
    config.do_sample = workload.sampling
    if not workload.sampling:
        config.temperature = config.top_p = config.top_k = None
    if max_cache_len is not None:
        config.max_cache_len = max_cache_len
    compile_hint = candidate.runtime().get("compile")
    if compile_hint and compile_hint["api"] == "generate":
        hints.apply_compile(model, config, compile_hint)
    return config


def apply_explicit_compile(model, candidate: Candidate) -> None:
    """The seed guide's `model.forward = torch.compile(model.forward, ...)`. The candidate's generation
    config sets `disable_compile=True` with it, so generate() never compiles the forward a second time."""
    hint = candidate.runtime().get("compile")
    if hint and hint["api"] == "explicit":
        hints.apply_compile(model, None, hint)


def build(model_id: str, candidate: Candidate, workload: Workload, device: str) -> Built:
    started = time.perf_counter()
    model = load_model(model_id, candidate.load_kwargs(), device)
    tokenizer = load_tokenizer(model_id)
    if len(tokenizer) > model.config.get_text_config().vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary "
                         f"({model.config.get_text_config().vocab_size})")
    assistant = None
    if candidate.decoding == "assisted":
        # The assistant runs in the target's dtype so the two exchange logits of one precision.
        assistant = load_model(candidate.assistant, {"dtype": model.dtype}, device)
    hints.apply_weight_hints(model, candidate.runtime())  # int8 weights, stacked sibling projections
    hints.fit_flex_attention(model)
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    hints.apply_inductor_config(candidate.runtime().get("inductor"))  # before anything is compiled
    apply_explicit_compile(model, candidate)
    max_cache_len = None
    if candidate.cache_implementation in STATIC_CACHES:
        max_cache_len = static_cache_length(tokenizer, workload, candidate.pad_to_multiple_of)
    config = generation_config_for(model, candidate, workload, tokenizer.pad_token_id, max_cache_len)
    hint = candidate.runtime().get("decode_loop")
    loop = hints.decode_loop_for(model, hint, max_cache_len) if hint else None
    return Built(model, tokenizer, config, assistant, candidate, device, load_s, max_cache_len, loop)
