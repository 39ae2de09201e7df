"""The Pareto front of a study: the feasible trials that no other feasible trial beats on both decode tok/s
(higher is better) and time to first token (lower is better).

A study maximizes one figure (`--objective`), and that one chooses its preset; the front is what a user picks
from when both matter (a chat server wants decode throughput, a long-context request its first token soon): every
figure is measured for every trial whatever the objective, so the front needs no second study.
"""

from __future__ import annotations

from optuna.trial import FrozenTrial

from autotune.tuner.trials import is_feasible

# (figure, whether higher is better)
PARETO_FIGURES = (("decode_tokens_per_s", True), ("ttft_s", False))


def figures_of(trial: FrozenTrial) -> tuple[float, ...] | None:
    """A trial's PARETO_FIGURES, each as "higher is better"; None where one is missing."""
    values = [trial.user_attrs.get(name) for name, _ in PARETO_FIGURES]
    if any(not isinstance(v, (int, float)) for v in values):
        return None
    return tuple(v if higher else -v for v, (_, higher) in zip(values, PARETO_FIGURES))


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(trials) -> list[FrozenTrial]:
    """The feasible trials on the front, fastest decode first; of trials with equal figures, the earliest.

    Args:
        trials: a study's trials.

    Returns:
        The trials no other feasible trial dominates on PARETO_FIGURES.
    """
    scored = [(t, f) for t in trials if is_feasible(t) and t.user_attrs.get("duplicate_of") is None
              for f in [figures_of(t)] if f is not None]
    front, seen = [], set()
    for trial, figures in sorted(scored, key=lambda tf: tf[0].number):
        if figures in seen or any(dominates(other, figures) for _, other in scored):
            continue
        seen.add(figures)
        front.append(trial)
    return sorted(front, key=lambda t: -t.user_attrs["decode_tokens_per_s"])
