"""A study, presented: one row per trial (`autotune show`) and a self-contained HTML report with plots
(`autotune report`), read from the study's storage (user attrs and params) and, when one exists, its preset.

The plots are plotly figures, through `optuna.visualization` where Optuna has the plot (optimization
history, parameter importances); the others (decode tok/s against peak memory with the budget line,
speed-up per knob value, equivalence per trial) are built here from the same trials. plotly.js is
inlined once, so the file opens offline.
"""

from __future__ import annotations

import html
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune import __version__
from autotune.study import CONFIG_ATTR

GiB = 2**30


# ---- rows ----------------------------------------------------------------------------------------

def trial_row(trial, baseline_value: float | None) -> dict:
    a = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    feasible = complete and trial.value is not None and all(v <= 0 for v in trial.constraints.values())
    status = a.get("status") or trial.state.name.lower()
    if complete and not feasible and not a.get("failure_kind") and a.get("status") == "ok":
        status = "disagrees"  # measured, but below --min-agreement
    value = a.get("decode_tokens_per_s")
    return {
        "number": trial.number,
        "state": trial.state.name,
        "role": a.get("role", "search"),
        "config": a.get("config", "-"),
        "params": dict(trial.params),
        "decode_tokens_per_s": value,
        "speedup": value / baseline_value if value and baseline_value else None,
        "e2e_tokens_per_s": a.get("e2e_tokens_per_s"),
        "ttft_s": a.get("ttft_s"),
        "peak_memory_bytes": a.get("peak_memory_bytes"),
        "estimated_memory_bytes": a.get("estimated_memory_bytes"),
        "warmup_s": a.get("warmup_s"),
        "recompiles": a.get("recompiles"),
        "top1_agreement": a.get("top1_agreement"),
        "prefix_match": a.get("prefix_match"),
        "divergence_margin": a.get("divergence_margin"),
        "mean_kl": a.get("mean_kl"),
        "equivalence_meaningful": a.get("equivalence_meaningful"),
        "feasible": feasible,
        "status": status,
        "failure_kind": a.get("failure_kind"),
        "message": a.get("message"),
        "duplicate_of": a.get("duplicate_of"),
    }


def baseline_value(trials) -> float | None:
    for t in trials:
        if t.user_attrs.get("role") == "baseline" and t.user_attrs.get("decode_tokens_per_s"):
            return t.user_attrs["decode_tokens_per_s"]
    return None


def trial_rows(study: optuna.Study) -> list[dict]:
    """Every trial as a dict, sorted by the objective (decode tok/s, fastest first; unmeasured trials last,
    in trial order), with `best` marking the trial a preset would be exported from."""
    trials = study.get_trials(deepcopy=False)
    base = baseline_value(trials)
    rows = [trial_row(t, base) for t in trials]
    feasible = [r for r in rows if r["feasible"]]
    best = max(feasible, key=lambda r: (r["decode_tokens_per_s"] or 0, -r["number"]))["number"] if feasible else None
    for r in rows:
        r["best"] = r["number"] == best
    return sorted(rows, key=lambda r: (r["decode_tokens_per_s"] is None, -(r["decode_tokens_per_s"] or 0),
                                       r["number"]))


def study_config(study: optuna.Study) -> dict:
    return study.user_attrs.get(CONFIG_ATTR) or {}


def random_weights(study: optuna.Study) -> bool:
    return any(t.user_attrs.get("equivalence_meaningful") is False for t in study.get_trials(deepcopy=False))


# ---- figures -------------------------------------------------------------------------------------

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


def equivalence_figure(rows: list[dict], min_agreement: float | None, meaningful: bool):
    import plotly.graph_objects as go

    scored = sorted((r for r in rows if r["top1_agreement"] is not None), key=lambda r: r["number"])
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[f"#{r['number']}" for r in scored], y=[r["top1_agreement"] for r in scored],
                         name="top-1 agreement", text=[r["config"] for r in scored],
                         marker_color=["#1f77b4" if r["feasible"] else "#bbbbbb" for r in scored]))
    fig.add_trace(go.Scatter(x=[f"#{r['number']}" for r in scored], y=[r["prefix_match"] for r in scored],
                             mode="markers", name="greedy prefix match"))
    if min_agreement is not None:
        fig.add_hline(y=min_agreement, line=dict(color="#d62728", dash="dash"),
                      annotation_text=f"--min-agreement {min_agreement}")
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
    copy.add_trials([t for t in study.get_trials(deepcopy=False)
                     if t.state == TrialState.COMPLETE and t.value is not None
                     and all(v <= 0 for v in t.constraints.values())])
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


# ---- the HTML file -------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.note{background:#fff6d6;border:1px solid #e8d48a;padding:.6em 1em}
code,pre{background:#f6f6f6;padding:2px 4px}pre{padding:.6em;overflow-x:auto}tr.best{background:#e6f3e6}"""


def fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value if scale == 1.0 else value / scale, spec)
    return html.escape(str(value))


def trials_table_html(rows: list[dict], meaningful: bool) -> str:
    head = ("#", "role", "configuration", "decode tok/s", "speed-up", "peak MiB", "estimate MiB", "warm-up s",
            "recompiles", "top-1 agr.", "prefix", "margin", "status")
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        status = r["status"] + (f" ({r['failure_kind']})" if r["failure_kind"] else "")
        if r["duplicate_of"] is not None:
            status += f" = #{r['duplicate_of']}"
        agreement = fmt(r["top1_agreement"], ".3f") + ("" if meaningful else " (rw)")
        cells = (r["number"], r["role"] + (" ★" if r["best"] else ""), fmt(r["config"]),
                 fmt(r["decode_tokens_per_s"]), fmt(r["speedup"], ".2f") + ("×" if r["speedup"] else ""),
                 fmt(r["peak_memory_bytes"], ".0f", 2**20), fmt(r["estimated_memory_bytes"], ".0f", 2**20),
                 fmt(r["warmup_s"]), fmt(r["recompiles"], "d"), agreement, fmt(r["prefix_match"], ".3f"),
                 fmt(r["divergence_margin"], ".3f"), html.escape(status))
        cls = ' class="best"' if r["best"] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


def preset_html(preset: dict | None, preset_path: str | None, config: dict) -> str:
    command = config.get("command")
    parts = []
    if preset is None:
        parts.append("<p>No preset was exported for this study (yet): <code>autotune export --study "
                     f"{html.escape(config.get('study_name', 'NAME'))}</code> writes one once a trial is feasible.</p>")
    else:
        m = preset.get("measurement", {})
        stability = m.get("stability") or {}
        from autotune.candidate import Candidate

        try:
            described = Candidate.from_dict(m["candidate"]).describe()
        except Exception:  # a preset of another version: show what it says
            described = json.dumps(m.get("candidate"))
        parts.append(f"<p>Preset <code>{html.escape(str(preset_path))}</code> ({html.escape(preset.get('format', ''))}): "
                     f"<b>{html.escape(described)}</b> from trial {m.get('trial', '-')}, "
                     f"{fmt(m.get('decode_tokens_per_s'))} decode tok/s, peak "
                     f"{fmt(m.get('peak_memory_bytes'), '.0f', 2**20)} MiB, top-1 agreement "
                     f"{fmt(m.get('top1_agreement'), '.3f')}.</p>")
        if stability:
            cv = stability.get("cv")
            parts.append(f"<p>Re-measured {len(stability.get('runs', []))} times in fresh processes: coefficient "
                         f"of variation {fmt(None if cv is None else 100 * cv, '.1f')} % "
                         f"({'stable' if stability.get('stable') else 'UNSTABLE'}).</p>")
        parts.append("<p>Load kwargs and generation config:</p><pre>" + html.escape(json.dumps(
            {"load_kwargs": preset.get("load_kwargs"), "generation_config": preset.get("generation_config"),
             "runtime": preset.get("runtime")}, indent=2)) + "</pre>")
        if preset.get("note"):
            parts.append(f"<p>{html.escape(preset['note'])}</p>")
        parts.append(f"<p>Use it: <code>model, gen = autotune.load_preset({html.escape(repr(str(preset_path)))})"
                     "</code></p>")
    if command:
        parts.append(f"<p>Reproduce the study: <code>{html.escape(command)}</code></p>")
    return "\n".join(parts)


def build_report(study: optuna.Study, preset_path: str | Path | None = None) -> str:
    """The whole report as one HTML document (plotly.js inlined once)."""
    import plotly

    config = study_config(study)
    rows = trial_rows(study)
    meaningful = not random_weights(study)
    preset = None
    if preset_path is not None and Path(preset_path).is_file():
        preset = json.loads(Path(preset_path).read_text(encoding="utf-8"))
    workload = config.get("workload", {})
    base = next((r for r in rows if r["role"] == "baseline"), None)
    best = next((r for r in rows if r["best"]), None)
    budget = config.get("vram")

    sections = [
        f"<h1>autotune study {html.escape(study.study_name)}</h1>",
        f"<p>Model <code>{html.escape(str(config.get('model', '-')))}</code> on {html.escape(str(config.get('device', '-')))}; "
        f"batch {workload.get('batch_size', '-')}, {workload.get('max_new_tokens', '-')} new tokens, "
        f"{len(workload.get('prompts', []))} prompts, {'sampling' if workload.get('sampling') else 'greedy'}; "
        f"budget {f'{budget / 1e9:.1f} GB ({budget / GiB:.1f} GiB)' if budget else 'none'}; {len(rows)} trials. "
        f"Objective: decode tokens/s, subject to top-1 agreement ≥ {config.get('min_agreement', '-')}.</p>",
        f"<p>Baseline {fmt(base and base['decode_tokens_per_s'])} tok/s; best feasible "
        f"{fmt(best and best['decode_tokens_per_s'])} tok/s"
        + (f" ({best['speedup']:.2f}× the baseline: trial {best['number']}, {html.escape(best['config'])})"
           if best and best["speedup"] else "") + ".</p>",
    ]
    if not meaningful:
        sections.append('<p class="note">This study ran on random weights (a <code>random:</code> model): its '
                        "greedy text is degenerate, so the equivalence figures below are recorded but prove "
                        "nothing, and they were not used to judge the trials. Use a trained model for "
                        "equivalence.</p>")
    sections += ["<h2>Exported preset</h2>", preset_html(preset, preset_path, config)]

    figures = optuna_figures(study)
    figures.insert(1, ("Decode tokens/s against peak memory", speed_memory_figure(rows, budget), ""))
    figures.append(("Speed-up per knob value", knob_speedup_figure(rows), ""))
    figures.append(("Equivalence per trial", equivalence_figure(rows, config.get("min_agreement"), meaningful), ""))
    inlined = False
    for title, fig, note in figures:
        sections.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            sections.append(f"<p>{html.escape(note)}</p>")
            continue
        sections.append(fig.to_html(full_html=False, include_plotlyjs=not inlined, default_width="100%"))
        inlined = True
    sections += ["<h2>Trials</h2>", trials_table_html(rows, meaningful)]
    sections.append(f"<p><small>autotune {__version__}, optuna {optuna.__version__}, plotly {plotly.__version__}; "
                    f"written {time.strftime('%Y-%m-%d %H:%M:%S')}</small></p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>autotune: {html.escape(study.study_name)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_report(study: optuna.Study, out: str | Path, preset_path: str | Path | None = None) -> Path:
    """Write the report atomically (temp file in the same folder, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(study, preset_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
