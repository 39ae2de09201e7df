"""Build a Candidate: load the model (and assistant) with its load kwargs, prepare its GenerationConfig,
and apply its runtime hints (torch.compile). Runs in the worker process only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.generation.configuration_utils import CompileConfig

from autotune.candidate import Candidate
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

    def generate_kwargs(self) -> dict:
        kwargs: dict[str, Any] = {"generation_config": self.generation_config}
        if self.assistant is not None:
            kwargs["assistant_model"] = self.assistant
        return kwargs

    def tokenize(self, prompts) -> dict:
        """Left-padded batch on the device, padded to `pad_to_multiple_of` when the candidate asks."""
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True,
                              pad_to_multiple_of=self.candidate.pad_to_multiple_of).to(self.device)


def load_model(model_id: str, load_kwargs: dict, device: str):
    """`from_pretrained` with the candidate's kwargs, placed on `device`, in eval mode."""
    kwargs = dict(load_kwargs)
    if device != "cpu":
        kwargs.setdefault("device_map", device)
    model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    if device == "cpu":
        model = model.to(device)
    return model.eval()


def load_tokenizer(model_id: str):
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def generation_config_for(model, candidate: Candidate, workload: Workload, pad_token_id: int) -> GenerationConfig:
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
    compile_hint = candidate.runtime().get("compile")
    if compile_hint and compile_hint["api"] == "generate":
        config.compile_config = CompileConfig(mode=compile_hint["mode"], fullgraph=compile_hint["fullgraph"])
    return config


def apply_explicit_compile(model, candidate: Candidate) -> None:
    """The seed guide's `model.forward = torch.compile(model.forward, ...)`. The candidate's generation
    config sets `disable_compile=True` with it, so generate() never compiles the forward a second time."""
    hint = candidate.runtime().get("compile")
    if hint and hint["api"] == "explicit":
        model.forward = torch.compile(model.forward, mode=hint["mode"], fullgraph=hint["fullgraph"])


def build(model_id: str, candidate: Candidate, workload: Workload, device: str) -> Built:
    started = time.perf_counter()
    model = load_model(model_id, candidate.load_kwargs(), device)
    tokenizer = load_tokenizer(model_id)
    assistant = None
    if candidate.decoding == "assisted":
        # The assistant runs in the target's dtype so the two exchange logits of one precision.
        assistant = load_model(candidate.assistant, {"dtype": model.dtype}, device)
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - started
    apply_explicit_compile(model, candidate)
    config = generation_config_for(model, candidate, workload, tokenizer.pad_token_id)
    return Built(model, tokenizer, config, assistant, candidate, device, load_s)
