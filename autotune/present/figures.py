"""The report's plots: plotly figures, through `optuna.visualization` where Optuna has the plot (optimization
history, parameter importances); the others (decode tok/s against peak memory with the budget line, speed-up
per knob value, equivalence per trial) are built here from the trial rows (autotune.present.tables)."""

from __future__ import annotations

import statistics
import warnings

import optuna

from autotune.config.gate import Gate
from autotune.tuner.trials import is_feasible

GiB = 2**30


def speed_memory_figure(rows: list[dict], budget: int | None):
    """Decode tok/s against peak memory: feasible trials, their Pareto front (faster and smaller), the
    measured but infeasible ones apart, and the --vram budget as a line."""
    import plotly.graph_objects as go

    def points(subset, name, **marker):
        return go.Scatter(
            x=[r["peak_memory_bytes"] / GiB for r in subset], y=[r["decode_tokens_per_s"] for r in subset],
            mode="markers", name=name, marker=marker,
            text=[f"#{r['number']} {r['config']}<br>{r['status']}" for r in subset], hoverinfo="text+x+y")

    measured = [r for r in rows if r["decode_tokens_per_s"] and r["peak_memory_bytes"] and r["duplicate_of"] is None]
    feasible = [r for r in measured if r["feasible"]]
    infeasible = [r for r in measured if not r["feasible"]]
    front, fastest = [], -1.0
    for r in sorted(feasible, key=lambda r: (r["peak_memory_bytes"], -r["decode_tokens_per_s"])):
        if r["decode_tokens_per_s"] > fastest:
            front.append(r)
            fastest = r["decode_tokens_per_s"]
    fig = go.Figure()
    fig.add_trace(points(feasible, "feasible", size=10, color="#1f77b4"))
    fig.add_trace(points(infeasible, "infeasible (disagrees with the baseline, or contended)", size=10,
                         color="#bbbbbb", symbol="x"))
    if front:
        fig.add_trace(go.Scatter(x=[r["peak_memory_bytes"] / GiB for r in front],
                                 y=[r["decode_tokens_per_s"] for r in front], mode="lines",
                                 name="Pareto front", line=dict(color="#1f77b4", dash="dot")))
    if budget:
        fig.add_vline(x=budget / GiB, line=dict(color="#d62728", dash="dash"),
                      annotation_text=f"--vram budget {budget / GiB:.1f} GiB")
    fig.update_layout(title="Decode tokens/s against peak memory", xaxis_title="peak memory (GiB)",
                      yaxis_title="decode tokens/s", legend=dict(orientation="h", y=-0.2))
    return fig


def knob_speedup_figure(rows: list[dict]):
    """For each knob value: the best and the median speed-up over the baseline among feasible trials."""
    import plotly.graph_objects as go

    by_value: dict[str, list[float]] = {}
    for r in rows:
        if r["feasible"] and r["speedup"] and r["duplicate_of"] is None:
            for knob, value in r["params"].items():
                by_value.setdefault(f"{knob}={value}", []).append(r["speedup"])
    labels = sorted(by_value, key=lambda k: max(by_value[k]))
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=[max(by_value[k]) for k in labels], orientation="h", name="best"))
    fig.add_trace(go.Bar(y=labels, x=[statistics.median(by_value[k]) for k in labels], orientation="h",
                         name="median"))
    fig.add_vline(x=1.0, line=dict(color="#444444", dash="dash"), annotation_text="baseline")
    fig.update_layout(title="Speed-up over the baseline per knob value (feasible trials)",
                      xaxis_title="decode tok/s / baseline decode tok/s", barmode="group",
                      height=max(400, 22 * len(labels) + 150))
    return fig


def equivalence_figure(rows: list[dict], gate: Gate, meaningful: bool):
    import plotly.graph_objects as go

    scored = sorted((r for r in rows if r["top1_agreement"] is not None), key=lambda r: r["number"])
    labels = [f"#{r['number']}" for r in scored]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[r["top1_agreement"] for r in scored],
                         name="top-1 agreement", text=[r["config"] for r in scored],
                         marker_color=["#1f77b4" if r["feasible"] else "#bbbbbb" for r in scored]))
    fig.add_trace(go.Scatter(x=labels, y=[r["prefix_match"] for r in scored], mode="markers",
                             name="greedy prefix match"))
    floor = next((r["floor_top1_agreement"] for r in scored if r["floor_top1_agreement"] is not None), None)
    if floor is not None:
        fig.add_trace(go.Scatter(x=labels, y=[r["float32_top1_agreement"] for r in scored], mode="markers",
                                 marker_symbol="diamond", name="top-1 agreement with float32"))
    if gate.rule == "noise-floor" and floor is not None:
        fig.add_hline(y=gate.top1_bar(floor), line=dict(color="#d62728", dash="dash"),
                      annotation_text=f"noise-floor bar: the baseline's top-1 with float32 less 1 - --min-agreement "
                                      f"{gate.min_agreement}")
    else:
        fig.add_hline(y=gate.min_agreement, line=dict(color="#d62728", dash="dash"),
                      annotation_text=f"--min-agreement {gate.min_agreement}")
    title = "Equivalence with the baseline per trial"
    if not meaningful:
        title += " (random weights: not meaningful, not judged)"
    fig.update_layout(title=title, yaxis_title="share of tokens", xaxis_title="trial", yaxis_range=[0, 1.05])
    return fig


def feasible_study(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study holding only its feasible trials: infeasible ones (out of memory,
    unsupported, disagreeing) are COMPLETE with a placeholder value, which would count as a measured speed
    in the parameter importances."""
    copy = optuna.create_study(direction="maximize")
    copy.add_trials([t for t in study.get_trials(deepcopy=False) if is_feasible(t)])
    return copy


def optuna_figures(study: optuna.Study) -> list[tuple[str, object | None, str]]:
    """Optuna's own plots, each (title, figure or None, note when it cannot be drawn)."""
    out = []
    feasible = feasible_study(study)
    for title, make, source in (
            ("Optimization history", optuna.visualization.plot_optimization_history, study),
            (f"Parameter importances (over the {len(feasible.trials)} feasible trials)",
             optuna.visualization.plot_param_importances, feasible)):
        if len(source.trials) < 2:
            out.append((title, None, "not drawn: it needs at least two trials"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append((title, make(source), ""))
        except Exception as exc:  # too few trials, a single value per knob, ...
            out.append((title, None, f"not drawn: {exc}"))
    return out
