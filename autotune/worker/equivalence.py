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
- `float32_top1_agreement`, `float32_mean_kl`: the same two against the model in float32 (the baseline trial
  scores it too), beside the baseline's own (`floor_*`, the noise floor): `autotune.config.gate` judges them;
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


def scored_set(model, prompt_ids: list[list[int]], continuations: list[list[int]], device: str) -> dict:
    """What a reference keeps of one model: per prompt, the argmax and the top-k log-probabilities of its
    teacher-forced scoring of `continuations`."""
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
    return {"argmax": argmax, "topk_ids": topk_ids, "topk_logprobs": topk_logprobs}


def build_reference(model, tokenizer, prompts, continuations: list[list[int]], device: str) -> dict:
    """The Baseline's reference: continuations and their teacher-forced top-k log-probabilities."""
    prompt_ids = prompt_token_ids(tokenizer, prompts)
    return {"prompt_ids": prompt_ids, "continuations": continuations,
            **scored_set(model, prompt_ids, continuations, device)}


def add_float32(reference: dict, model32) -> None:
    """Add to `reference` the same scoring by the model in float32 (`model32`; None: the baseline is float32
    already, and is its own float32 reference), against which every trial is scored as well."""
    if model32 is None:
        reference["float32"] = {key: reference[key] for key in ("argmax", "topk_ids", "topk_logprobs")}
    else:
        device = str(next(model32.parameters()).device).split(":")[0]
        reference["float32"] = scored_set(model32, reference["prompt_ids"], reference["continuations"], device)


def set_noise_floor(reference: dict, baseline_scores: dict) -> dict:
    """Record in `reference` the baseline's own distance from float32 (its `compare` scores), which every
    later trial reports beside its own; returns `baseline_scores` with the floor filled in."""
    floor = {"top1_agreement": baseline_scores["float32_top1_agreement"],
             "mean_kl": baseline_scores["float32_mean_kl"]}
    reference["noise_floor"] = floor
    return {**baseline_scores, "floor_top1_agreement": floor["top1_agreement"], "floor_mean_kl": floor["mean_kl"]}


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


class Tally:
    """Top-1 agreement and mean KL of a candidate against one scored set, prompt by prompt."""

    def __init__(self, scored: dict):
        self.scored = scored
        self.agree = self.total = 0
        self.kls: list[torch.Tensor] = []

    def add(self, index: int, logprobs: torch.Tensor, argmax: torch.Tensor) -> None:
        self.agree += int((argmax == self.scored["argmax"][index]).sum())
        self.total += len(argmax)
        top_lp, top_ids = self.scored["topk_logprobs"][index], self.scored["topk_ids"][index]
        self.kls.append(coarse_kl(top_lp.to(logprobs.device), top_ids.to(logprobs.device), logprobs).cpu())

    def scores(self) -> tuple[float, float]:
        return self.agree / self.total, float(torch.cat(self.kls).mean())


def compare(reference: dict, model, candidate_continuations: list[list[int]] | None, device: str) -> dict:
    """Score a candidate against the reference, and against its float32 scoring where it has one.

    Args:
        reference: the baseline's (`build_reference`, `add_float32`, `set_noise_floor`).
        model: the candidate's model as built (its dtype, attention and compiled forward).
        candidate_continuations: its greedy outputs (None for sampling workloads, where only the
            teacher-forced distributions are compared).
        device: where the model runs.

    Returns:
        top1_agreement, mean_kl, prefix_match, divergence_margin against the baseline; float32_top1_agreement,
        float32_mean_kl against float32 and the baseline's own (floor_top1_agreement, floor_mean_kl), or None.
    """
    baseline, float32 = Tally(reference), Tally(reference["float32"]) if "float32" in reference else None
    for index, (ids, continuation) in enumerate(zip(reference["prompt_ids"], reference["continuations"])):
        logprobs = teacher_forced_logprobs(model, ids, continuation, device)
        argmax = logprobs.argmax(-1).cpu()
        for tally in (baseline, float32):
            if tally is not None:
                tally.add(index, logprobs, argmax)
        del logprobs
    top1, kl = baseline.scores()
    f32_top1, f32_kl = float32.scores() if float32 is not None else (None, None)
    floor = reference.get("noise_floor") or {}
    result = {"top1_agreement": top1, "mean_kl": kl, "prefix_match": None, "divergence_margin": None,
              "float32_top1_agreement": f32_top1, "float32_mean_kl": f32_kl,
              "floor_top1_agreement": floor.get("top1_agreement"), "floor_mean_kl": floor.get("mean_kl")}
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
