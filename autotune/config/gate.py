"""The equivalence gate: when a measured configuration counts as matching the unoptimized model.

Every trial of a trained model is scored twice on the baseline's greedy continuations (teacher forcing):
against the baseline (the model as `from_pretrained` loads it, often bf16) and against the same model in
float32, the more exact computation. The baseline's own distance from float32 is the noise floor: how far
rounding alone already moves the model.

- `baseline`: feasible when top-1 agreement with the baseline is at least `--min-agreement`. A configuration
  that computes more exactly than the baseline (float32 itself) can fail it on a real model: it disagrees with
  the baseline's rounding, not with the model.
- `noise-floor` (the default): feasible when, against float32, the candidate's top-1 agreement is within
  1 - `--min-agreement` of the baseline's, and its mean KL within twice the baseline's (at least
  `KL_ALLOWANCE` nats). Where no float32 scores exist (the float32 model did not fit, or a result of an older
  version) the `baseline` rule decides.

Random weights are never judged: their text is degenerate (`equivalence_meaningful`).
"""

from __future__ import annotations

from dataclasses import dataclass

GATES = ("noise-floor", "baseline")
KL_FACTOR = 2.0  # a candidate may stray from float32 up to this many times the baseline's own KL ...
KL_ALLOWANCE = 0.001  # ... and at least this much (nats): about bf16 rounding on a trained 135M model
DEFAULT_GATE = "noise-floor"


@dataclass(frozen=True)
class Gate:
    """The rule a study judges equivalence by, and its bar.

    Args:
        rule: one of GATES.
        min_agreement: the top-1 bar (`baseline`) or the top-1 allowance below the noise floor, as
            1 - min_agreement (`noise-floor`).
    """

    rule: str = DEFAULT_GATE
    min_agreement: float = 0.99

    def __post_init__(self):
        if self.rule not in GATES:
            raise ValueError(f"--gate is one of {', '.join(GATES)}, got {self.rule!r}")
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f"--min-agreement is a share between 0 and 1, got {self.min_agreement}")

    @classmethod
    def of_attrs(cls, attrs: dict) -> "Gate":
        """The gate a study or preset recorded; studies made before the gate existed judged by `baseline`."""
        return cls(attrs.get("gate") or "baseline", attrs.get("min_agreement", 0.99))

    def floor_known(self, scores) -> bool:
        """Whether `scores` (a Measurement, or anything with its fields) carries the float32 figures."""
        return all(getattr(scores, name, None) is not None for name in (
            "float32_top1_agreement", "float32_mean_kl", "floor_top1_agreement", "floor_mean_kl"))

    def gap(self, scores) -> float:
        """How far `scores` fall short of the gate: feasible when <= 0 (Optuna's constraint convention).

        Args:
            scores: a Measurement, or anything with its equivalence fields.

        Returns:
            The shortfall: of top-1 agreement (a share), or of KL (nats) where that is the larger one.
        """
        if self.rule == "baseline" or not self.floor_known(scores):
            return self.min_agreement - (scores.top1_agreement or 0.0)
        return max(self.top1_bar(scores.floor_top1_agreement) - scores.float32_top1_agreement,
                   scores.float32_mean_kl - self.kl_bar(scores))

    def top1_bar(self, floor_top1: float) -> float:
        """The least top-1 agreement with float32 the noise-floor rule takes, given the baseline's own."""
        return floor_top1 - (1 - self.min_agreement)

    def kl_bar(self, scores) -> float:
        return max(KL_FACTOR * scores.floor_mean_kl, KL_ALLOWANCE)

    def passes(self, scores) -> bool:
        return self.gap(scores) <= 0

    def describe(self, scores=None) -> str:
        """The rule in words, with its bars where `scores` carry the noise floor."""
        if self.rule == "baseline" or (scores is not None and not self.floor_known(scores)):
            return f"top-1 agreement with the baseline at least {self.min_agreement:g}"
        if scores is None:
            return (f"against float32, top-1 within {1 - self.min_agreement:.3g} of the baseline's and mean KL "
                    f"within {KL_FACTOR:g}x the baseline's (at least {KL_ALLOWANCE:g})")
        return (f"against float32, top-1 at least {self.top1_bar(scores.floor_top1_agreement):.4f} "
                f"and mean KL at most {self.kl_bar(scores):.3g} (the baseline's: {scores.floor_top1_agreement:.4f}, "
                f"{scores.floor_mean_kl:.3g})")
