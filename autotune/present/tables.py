"""The trial table: one row per trial (`trial_rows`), one declaration of its columns (`COLUMNS`), rendered for
a terminal (`rich_table`: the table a search ends with, `autotune show`) and for the HTML report
(`html_table`). The views differ only in which columns they show and in their order."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable

import optuna

from autotune.config.objective import DEFAULT_METRIC, metric_of
from autotune.tuner.study import STUDY_ATTR
from autotune.tuner.trials import is_feasible, retried_trial_number

MiB = 2**20


def fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    """A figure as text: `-` for none, numbers formatted with `spec` after dividing by `scale`."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value if scale == 1.0 else value / scale, spec)
    return str(value)


# ---- rows ----------------------------------------------------------------------------------------

def trial_row(trial, baseline_value: float | None, metric: str = DEFAULT_METRIC) -> dict:
    """A trial as a JSON-ready dict (what `autotune show --json` prints)."""
    a = trial.user_attrs
    if trial.state.name in ("WAITING", "RUNNING"):  # a retry starts with the attrs of the trial it retries
        retried = retried_trial_number(trial)
        a = {k: a[k] for k in ("role", "config") if k in a}
        a["status"] = trial.state.name.lower() + ("" if retried is None else f" (retry of #{retried})")
    feasible = is_feasible(trial)
    status = a.get("status") or trial.state.name.lower()
    if trial.state.name == "COMPLETE" and not feasible and not a.get("failure_kind") and a.get("status") == "ok":
        status = "disagrees"  # measured, but short of the study's equivalence gate
    value, objective = a.get("decode_tokens_per_s"), a.get(metric)
    figures = ("e2e_tokens_per_s", "ttft_s", "prefill_tokens_per_s", "peak_memory_bytes", "estimated_memory_bytes",
               "warmup_s", "recompiles", "top1_agreement", "prefix_match", "divergence_margin", "mean_kl",
               "float32_top1_agreement", "float32_mean_kl", "floor_top1_agreement", "floor_mean_kl",
               "equivalence_meaningful", "failure_kind", "message", "duplicate_of")
    return {"number": trial.number, "state": trial.state.name, "role": a.get("role", "search"),
            "config": a.get("config", "-"), "params": dict(trial.params), "decode_tokens_per_s": value,
            "objective": objective, "speedup": objective / baseline_value if objective and baseline_value else None,
            **{name: a.get(name) for name in figures}, "feasible": feasible, "status": status}


def baseline_value(trials, metric: str = DEFAULT_METRIC) -> float | None:
    for t in trials:
        if t.user_attrs.get("role") == "baseline" and t.user_attrs.get(metric):
            return t.user_attrs[metric]
    return None


def trial_rows(study: optuna.Study, by_speed: bool = True) -> list[dict]:
    """Every trial as a row, with `best` marking the trial a preset is exported from; fastest first
    (unmeasured trials last, in trial order), or in trial order."""
    trials = study.get_trials(deepcopy=False)
    metric = metric_of(study.user_attrs.get(STUDY_ATTR) or {})
    base = baseline_value(trials, metric)
    rows = [trial_row(t, base, metric) for t in trials]
    feasible = [r for r in rows if r["feasible"]]
    best = max(feasible, key=lambda r: (r["objective"] or 0, -r["number"]))["number"] if feasible else None
    for r in rows:
        r["best"] = r["number"] == best
    if not by_speed:
        return rows
    return sorted(rows, key=lambda r: (r["objective"] is None, -(r["objective"] or 0),
                                       r["number"]))


def random_weights(rows: list[dict]) -> bool:
    return any(r["equivalence_meaningful"] is False for r in rows)


# ---- columns -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    title: str
    cell: Callable[[dict], str]
    left: bool = False  # text columns are left-aligned, figures right-aligned


def status_cell(r: dict) -> str:
    status = r["status"] + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
    return status + (f" = #{r['duplicate_of']}" if r["duplicate_of"] is not None else "")


def judged(r: dict, text: str) -> str:
    """An agreement figure, marked where random weights leave it unjudged."""
    return text + (" (rw)" if r["equivalence_meaningful"] is False and text != "-" else "")


COLUMNS = {column.title: column for column in (
    Column("#", lambda r: str(r["number"])),
    Column("role", lambda r: r["role"] + (" ★" if r["best"] else ""), left=True),
    Column("config", lambda r: r["config"], left=True),
    Column("decode tok/s", lambda r: fmt(r["decode_tokens_per_s"])),
    Column("e2e tok/s", lambda r: fmt(r["e2e_tokens_per_s"])),
    Column("speed-up", lambda r: fmt(r["speedup"], ".2f")),
    Column("TTFT ms", lambda r: fmt(r["ttft_s"], ".1f", 1e-3)),
    Column("prefill tok/s", lambda r: fmt(r["prefill_tokens_per_s"], ".0f")),
    Column("peak MiB", lambda r: fmt(r["peak_memory_bytes"], ".0f", MiB)),
    Column("estimate MiB", lambda r: fmt(r["estimated_memory_bytes"], ".0f", MiB)),
    Column("warm-up s", lambda r: fmt(r["warmup_s"])),
    Column("recompiles", lambda r: fmt(r["recompiles"], "d")),
    Column("top-1 agr.", lambda r: judged(r, fmt(r["top1_agreement"], ".3f"))),
    Column("top-1 f32", lambda r: judged(r, fmt(r["float32_top1_agreement"], ".3f"))),
    Column("prefix", lambda r: judged(r, fmt(r["prefix_match"], ".3f"))),
    Column("margin", lambda r: fmt(r["divergence_margin"], ".3f")),
    Column("feasible", lambda r: "yes" if r["feasible"] else "no"),
    Column("status", status_cell, left=True),
)}
# the table a search ends with (trial order), `autotune show` (fastest first), the report's
SEARCH_VIEW = ("#", "role", "config", "decode tok/s", "TTFT ms", "peak MiB", "recompiles", "top-1 agr.", "prefix",
               "margin", "status")
SHOW_VIEW = ("#", "role", "config", "decode tok/s", "e2e tok/s", "speed-up", "TTFT ms", "prefill tok/s", "peak MiB", "warm-up s",
             "top-1 agr.", "top-1 f32", "prefix", "margin", "feasible", "status")
REPORT_VIEW = ("#", "role", "config", "decode tok/s", "e2e tok/s", "speed-up", "TTFT ms", "prefill tok/s", "peak MiB",
               "estimate MiB", "warm-up s", "recompiles", "top-1 agr.", "top-1 f32", "prefix", "margin", "status")


def caption(rows: list[dict], view: tuple[str, ...] = ()) -> str:
    """What the agreement columns mean (and that random weights leave them unjudged)."""
    lines = ["(rw): random weights: the agreement figures are recorded but not judged"] if random_weights(rows) else []
    lines.append("TTFT ms: time to the first new token of a batch (the prompt read, the first step); prefill tok/s: "
                 "prompt tokens (padding aside) over that time; decode tok/s: the tokens after the first over "
                 "the rest of the time; e2e tok/s: all new tokens over the whole request; both summed over the "
                 "batch; speed-up: the study's objective (--objective) against the baseline's")
    lines.append("top-1 agr.: teacher-forced top-1 agreement with the baseline (the model's own forward); prefix: "
                 "share of the baseline's greedy continuation generated before the first differing token (what "
                 "the decoding changes: assisted decoding, the compiled loops)")
    if "top-1 f32" in view and any(r["float32_top1_agreement"] is not None for r in rows):
        lines.append("top-1 f32: the same against the model in float32; the baseline's own is the noise floor, "
                     "what rounding alone moves (the noise-floor gate judges a trial's top-1 and KL against float32 "
                     "relative to it: autotune search --help, --gate)")
    lines.append("margin: the baseline's log-probability gap between its two likeliest tokens where "
                 "the greedy text first differs, the largest over prompts: about one bf16 step (0.0625) is a "
                 "near-tie that another order of the sums turns; a wide one is a real change")
    return "\n".join(lines)


# ---- renderings ----------------------------------------------------------------------------------

def rich_table(rows: list[dict], view: tuple[str, ...], title: str):
    """A rich Table of `rows` with the columns of `view`; the best row bold, the seeds in cyan."""
    from rich.table import Table

    table = Table(title=title, caption=caption(rows, view))
    for name in view:
        # a long configuration folds onto more lines rather than ending in an ellipsis
        table.add_column(name, justify="left" if COLUMNS[name].left else "right", overflow="fold")
    for r in rows:
        style = "bold" if r["best"] else ("cyan" if r["role"] in ("baseline", "seed-recipe") else None)
        table.add_row(*(COLUMNS[name].cell(r) for name in view), style=style)
    return table


def html_table(rows: list[dict], view: tuple[str, ...]) -> str:
    """The rows as an HTML table (the best row with class "best")."""
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in view) + "</tr>"]
    for r in rows:
        cells = "".join(f"<td>{html.escape(COLUMNS[name].cell(r))}</td>" for name in view)
        marked = ' class="best"' if r["best"] else ""
        lines.append(f"<tr{marked}>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def trials_table(study):
    """The table a search ends with: every trial, in trial order."""
    return rich_table(trial_rows(study, by_speed=False), SEARCH_VIEW, f"study {study.study_name}")
