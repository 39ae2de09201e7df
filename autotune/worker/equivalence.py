"""Equivalence with the baseline: do a candidate's outputs match the unoptimized model's?

The Baseline (trial 0) keeps, for every prompt, its greedy continuation and — scoring that
continuation by teacher forcing — the top-k next-token log-probabilities at every position.
A candidate is compared on the same prompts:

- `prefix_match`: share of the baseline continuation the candidate reproduces before its first
  differing token (mean over prompts);
- `top1_agreement`: share of positions where the candidate's most likely next token equals the
  baseline's when both score the baseline's continuation (teacher forcing);
- `mean_kl`: mean KL(baseline || candidate) of next-token distributions on those positions. Only the
  baseline's top-k tokens are stored, so the KL is taken over the partition {each top-k token, all other
  tokens}: by the data-processing inequality this is a lower bound of the full-vocabulary KL, and it is
  exact up to the tail mass, which for k=32 is small for trained models;
- `divergence_margin`: at the first differing token of each prompt, the baseline's log-probability
  margin between its two most likely tokens; the largest over prompts is reported. A divergence at a
  near-tie (small margin) is benign; one at a wide margin is a real change.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from autotune.files import write_atomic

TOP_K = 32


def teacher_forced_logprobs(model, prompt_ids: list[int], continuation: list[int], device: str) -> torch.Tensor:
    """Log-probabilities (n x vocab, float32, on `device`) of the next token at each position of
    `continuation`, given the prompt and the continuation's earlier tokens, from one forward pass without a
    cache. They stay on the device: callers reduce them there (top-k, argmax, KL) and move only the small
    results, since n x vocab floats are 1 GB per sequence for a 256k vocabulary and 1024 tokens."""
    ids = torch.tensor([prompt_ids + continuation[:-1]], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt_ids) - 1:]
        return torch.log_softmax(logits.float(), dim=-1)


def prompt_token_ids(tokenizer, prompts) -> list[list[int]]:
    return [tokenizer(p)["input_ids"] for p in prompts]


def build_reference(model, tokenizer, prompts, continuations: list[list[int]], device: str) -> dict:
    """The Baseline's reference: continuations and their teacher-forced top-k log-probabilities."""
    prompt_ids = prompt_token_ids(tokenizer, prompts)
    topk_ids, topk_logprobs, argmax = [], [], []
    for ids, continuation in zip(prompt_ids, continuations):
        logprobs = teacher_forced_logprobs(model, ids, continuation, device)
        values, indices = logprobs.topk(TOP_K, dim=-1)
        topk_ids.append(indices.cpu())
        topk_logprobs.append(values.cpu())
        # argmax, not topk's first index: the two may break exact ties (common in bf16) differently,
        # and candidates are compared with argmax.
        argmax.append(logprobs.argmax(-1).cpu())
        del logprobs
    return {"prompt_ids": prompt_ids, "continuations": continuations, "argmax": argmax,
            "topk_ids": topk_ids, "topk_logprobs": topk_logprobs}


def save_reference(reference: dict, path: str | Path) -> None:
    """Save the baseline's reference atomically (a study's every later trial reads it)."""
    buffer = io.BytesIO()
    torch.save(reference, buffer)
    write_atomic(path, buffer.getvalue())


def load_reference(path: str | Path) -> dict:
    return torch.load(path, weights_only=True)


def prefix_length(a: list[int], b: list[int]) -> int:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return min(len(a), len(b))


def coarse_kl(base_topk_logprobs: torch.Tensor, base_topk_ids: torch.Tensor,
              cand_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-position KL(P || Q) over {each of P's top-k tokens, the rest}."""
    p = base_topk_logprobs.exp()
    q = cand_logprobs.gather(-1, base_topk_ids).exp()
    p_rest = (1 - p.sum(-1)).clamp_min(0)
    q_rest = (1 - q.sum(-1)).clamp_min(1e-12)
    eps = 1e-12
    head = (p * (torch.log(p + eps) - torch.log(q + eps))).sum(-1)
    tail = torch.where(p_rest > 1e-9, p_rest * (torch.log(p_rest + eps) - torch.log(q_rest)), torch.zeros_like(p_rest))
    return (head + tail).clamp_min(0)


def compare(reference: dict, model, candidate_continuations: list[list[int]] | None, device: str) -> dict:
    """Score a candidate against the reference. `model` is the candidate's model as built (its dtype,
    attention and compiled forward); `candidate_continuations` are its greedy outputs (None for sampling
    workloads, where only the teacher-forced distributions are compared)."""
    agree = total = 0
    kls: list[torch.Tensor] = []
    for ids, continuation, base_argmax, top_ids, top_lp in zip(
            reference["prompt_ids"], reference["continuations"], reference["argmax"],
            reference["topk_ids"], reference["topk_logprobs"]):
        logprobs = teacher_forced_logprobs(model, ids, continuation, device)
        agree += int((logprobs.argmax(-1).cpu() == base_argmax).sum())
        total += len(continuation)
        kls.append(coarse_kl(top_lp.to(logprobs.device), top_ids.to(logprobs.device), logprobs).cpu())
        del logprobs
    result = {"top1_agreement": agree / total, "mean_kl": float(torch.cat(kls).mean()),
              "prefix_match": None, "divergence_margin": None}
    if candidate_continuations is not None:
        shares, margins = [], []
        for base, cand, top_lp in zip(reference["continuations"], candidate_continuations, reference["topk_logprobs"]):
            n = prefix_length(base, cand)
            shares.append(n / len(base))
            if n < len(base):
                margins.append(float(top_lp[n, 0] - top_lp[n, 1]))
        result["prefix_match"] = sum(shares) / len(shares)
        result["divergence_margin"] = max(margins) if margins else None
    return result
