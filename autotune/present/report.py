"""A study, presented as one self-contained HTML file (`autotune report`): its summary, the exported preset,
the plots (autotune.present.figures) and the trial table (autotune.present.tables), read from the study's
storage and, when one exists, its preset. plotly.js is inlined once, so the file opens offline."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import optuna

from autotune import __version__
from autotune.config.gate import Gate
from autotune.config.objective import LABELS, metric_of
from autotune.files import write_atomic
from autotune.present.figures import equivalence_figure, knob_speedup_figure, optuna_figures, speed_memory_figure
from autotune.present.tables import REPORT_VIEW, fmt, html_table, random_weights, trial_rows
from autotune.tuner.study import STUDY_ATTR

GiB = 2**30

CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.note{background:#fff6d6;border:1px solid #e8d48a;padding:.6em 1em}
code,pre{background:#f6f6f6;padding:2px 4px}pre{padding:.6em;overflow-x:auto}tr.best{background:#e6f3e6}"""


def preset_html(preset: dict | None, preset_path: str | None, config: dict) -> str:
    command = config.get("command")
    parts = []
    if preset is None:
        parts.append("<p>No preset was exported for this study (yet): <code>autotune export --study "
                     f"{html.escape(config.get('study_name', 'NAME'))}</code> writes one once a trial is feasible.</p>")
    else:
        m = preset.get("measurement", {})
        stability = m.get("stability") or {}
        from autotune.config.candidate import Candidate

        try:
            described = Candidate.from_dict(m["candidate"]).describe()
        except Exception:  # a preset of another version: show what it says
            described = json.dumps(m.get("candidate"))
        parts.append(f"<p>Preset <code>{html.escape(str(preset_path))}</code> "
                     f"({html.escape(preset.get('format', ''))}): "
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

    config = study.user_attrs.get(STUDY_ATTR) or {}
    gate = Gate.of_attrs(config)
    rows = trial_rows(study)
    meaningful = not random_weights(rows)
    preset = None
    if preset_path is not None and Path(preset_path).is_file():
        preset = json.loads(Path(preset_path).read_text(encoding="utf-8"))
    workload = config.get("workload", {})
    base = next((r for r in rows if r["role"] == "baseline"), None)
    best = next((r for r in rows if r["best"]), None)
    budget = config.get("vram")

    sections = [
        f"<h1>autotune study {html.escape(study.study_name)}</h1>",
        f"<p>Model <code>{html.escape(str(config.get('model', '-')))}</code> "
        f"on {html.escape(str(config.get('device', '-')))}; "
        f"batch {workload.get('batch_size', '-')}, {workload.get('max_new_tokens', '-')} new tokens, "
        f"{len(workload.get('prompts', []))} prompts, {'sampling' if workload.get('sampling') else 'greedy'}; "
        f"budget {f'{budget / 1e9:.1f} GB ({budget / GiB:.1f} GiB)' if budget else 'none'}; {len(rows)} trials. "
        f"Objective: {LABELS[metric_of(config)]}, subject to the equivalence gate {html.escape(gate.rule)}: "
        f"{html.escape(gate.describe())}.</p>",
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
    figures.append(("Equivalence per trial", equivalence_figure(rows, gate, meaningful), ""))
    inlined = False
    for title, fig, note in figures:
        sections.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            sections.append(f"<p>{html.escape(note)}</p>")
            continue
        sections.append(fig.to_html(full_html=False, include_plotlyjs=not inlined, default_width="100%"))
        inlined = True
    sections += ["<h2>Trials</h2>", html_table(rows, REPORT_VIEW)]
    sections.append(f"<p><small>autotune {__version__}, optuna {optuna.__version__}, plotly {plotly.__version__}; "
                    f"written {time.strftime('%Y-%m-%d %H:%M:%S')}</small></p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>autotune: {html.escape(study.study_name)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_report(study: optuna.Study, out: str | Path, preset_path: str | Path | None = None) -> Path:
    """Write the report of `study` (with the preset at `preset_path` when it exists) atomically.

    Returns:
        The path written.
    """
    return write_atomic(out, build_report(study, preset_path))
