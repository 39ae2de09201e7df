"""What a study maximizes: decode throughput, or the end-to-end speed of a request.

- `decode` (the default): decode tokens/s, the tokens after the first over the time after the first. What a
  long reply or a busy server spends its time on.
- `e2e`: end-to-end tokens/s of a request, the prompt's prefill included (new tokens over the whole request).
  On a fixed workload it ranks configurations exactly as the request latency does (the latency is the new tokens
  over it): the objective for long prompts and short replies, where the time to first token dominates.

Both figures, and the time to first token and prefill tokens/s, are measured for every trial whatever the
objective: `autotune show` lists them side by side.
"""

from __future__ import annotations

OBJECTIVES = ("decode", "e2e")
DEFAULT_OBJECTIVE = "decode"
# the Measurement field each objective maximizes; a study records it under "objective" (studies made before
# the choice existed recorded the decode one)
METRICS = {"decode": "decode_tokens_per_s", "e2e": "e2e_tokens_per_s"}
DEFAULT_METRIC = METRICS[DEFAULT_OBJECTIVE]
LABELS = {"decode_tokens_per_s": "decode tok/s", "e2e_tokens_per_s": "end-to-end tok/s"}


def metric_of(attrs: dict) -> str:
    """The Measurement field a study or a preset's `study` record maximizes (decode tok/s where it records none).

    Args:
        attrs: the study's attributes, or a preset's `study` field.

    Returns:
        One of METRICS' values.
    """
    recorded = attrs.get("objective")
    return recorded if recorded in LABELS else DEFAULT_METRIC
