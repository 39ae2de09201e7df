"""Seeing a study: `search --json-progress`, `autotune show`, `autotune report` and `autotune dashboard`,
the last two opened in headless Chromium as a user would open them."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from support import ROOT, SMALL_PROMPTS, run_cli

pytestmark = pytest.mark.slow

SPACE = ROOT / "tests" / "data" / "small_space.yaml"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


@pytest.fixture(scope="module")
def study(tmp_path_factory, bundled_model):
    """A 4-trial study with a memory budget, its progress as JSON lines."""
    workdir = tmp_path_factory.mktemp("seen")
    run = run_cli("search", "--model", str(bundled_model), "--device", "cpu", "--trials", "4", "--study", "seen",
                  "--space", str(SPACE), "--prompts", str(SMALL_PROMPTS), "--max-new-tokens", "8", "--repeats", "1",
                  "--confirm", "0", "--vram", "8GB", "--json-progress", cwd=workdir)
    assert run.returncode == 0, run.stdout + run.stderr
    return {"dir": workdir, "run": run, "events": [json.loads(line) for line in run.stdout.splitlines()]}


def test_json_progress_names_trial_phase_elapsed_and_best(study):
    events = study["events"]  # stdout holds nothing but JSON lines
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert [e["trial"] for e in starts] == [0, 1, 2, 3] and len(ends) == 4
    launched = {e["trial"] for e in ends if e.get("duplicate_of") is None}
    for number in launched:
        phases = [e["phase"] for e in events if e["event"] == "phase" and e["trial"] == number]
        assert phases == ["start", "load", "warmup", "measure", "compare"], (number, phases)
    phase = next(e for e in events if e["event"] == "phase" and e["trial"] == 1 and e["phase"] == "measure")
    assert phase["elapsed_s"] > 0 and phase["best"] == pytest.approx(ends[0]["decode_tokens_per_s"])
    assert ends[0]["status"] == "ok" and ends[0]["decode_tokens_per_s"] > 0 and ends[0]["config"] == "baseline"
    assert events[-1]["event"] == "preset" and events[-1]["path"] == "studies/seen.preset.json"
    assert "trial 0" not in study["run"].stdout and "decode tok/s" in study["run"].stderr  # the table: stderr


def test_progress_lines_show_phases_and_quiet_shows_none(tmp_path, bundled_model):
    args = ["search", "--model", str(bundled_model), "--device", "cpu", "--trials", "1", "--study", "p",
            "--space", str(SPACE), "--prompts", str(SMALL_PROMPTS), "--max-new-tokens", "4", "--repeats", "1",
            "--warmup", "0", "--confirm", "0"]
    loud = run_cli(*args, cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    for label in ("loading ...", "warm-up/compile ...", "measuring ...", "comparing with the baseline ..."):
        assert label in loud.stdout, loud.stdout
    assert "best so far" in loud.stdout
    quiet = run_cli(*args, "--new-study", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and "trial 0" not in quiet.stdout and "loading" not in quiet.stdout
    assert "preset written" in quiet.stdout


def test_show_sorts_by_objective_and_marks_roles(study):
    run = run_cli("show", "--study", "seen", "--json", cwd=study["dir"])
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    trials = optuna.load_study(study_name="seen", storage=f"sqlite:///{study['dir']}/studies/seen.db").trials
    assert sorted(r["number"] for r in rows) == [t.number for t in trials]
    speeds = [r["decode_tokens_per_s"] for r in rows if r["decode_tokens_per_s"] is not None]
    assert speeds == sorted(speeds, reverse=True)
    assert {r["role"] for r in rows} >= {"baseline"}
    best = [r for r in rows if r["best"]]
    preset = json.loads((study["dir"] / "studies" / "seen.preset.json").read_text())
    assert len(best) == 1 and best[0]["number"] == preset["measurement"]["trial"]
    baseline = next(r for r in rows if r["role"] == "baseline")
    assert baseline["speedup"] == 1.0 and baseline["feasible"] and baseline["prefix_match"] == 1.0
    table = run_cli("show", "--study", "seen", cwd=study["dir"])
    assert table.returncode == 0 and "baseline" in table.stdout and "★" in table.stdout
    assert "prefix" in table.stdout and "margin" in table.stdout  # the baseline's: 1.000 and none (no divergence)
    assert "divergence_margin" in baseline and baseline["divergence_margin"] is None


def test_show_of_a_missing_study_says_so(tmp_path):
    run = run_cli("show", "--study", "nope", cwd=tmp_path)
    assert run.returncode == 2 and "nope" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "studies" / "nope.db").exists()


def test_report_is_one_self_contained_file_with_every_plot(study):
    run = run_cli("report", "--study", "seen", "-o", "seen.html", cwd=study["dir"])
    assert run.returncode == 0, run.stderr
    text = (study["dir"] / "seen.html").read_text()
    for title in ("Optimization history", "Decode tokens/s against peak memory", "Parameter importances (over the",
                  "Speed-up per knob value", "Equivalence per trial", "Exported preset"):
        assert f"<h2>{title}" in text
    assert text.count("plotly.js v") == 1 and "<script src=" not in text  # inlined once, nothing fetched
    assert "--vram budget" in text and "--min-agreement" in text
    assert "<th>prefix</th><th>margin</th>" in text  # the trials table: where the greedy text differs, and how
    assert "autotune.load_preset(" in text and "autotune search --model" in text  # how to use, how to redo
    assert "random weights" not in text  # a trained model: equivalence is meaningful here


# ---- in a real browser ---------------------------------------------------------------------------

def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def browse(url: str, tmp_path: Path, name: str) -> tuple[str, Path]:
    """Open `url` in headless Chromium: the DOM after its scripts ran, and a screenshot."""
    common = [chromium(), *CHROMIUM_FLAGS, "--window-size=1280,2400", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, f"--user-data-dir={tmp_path / (name + '-dom')}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / f"{name}.png"
    subprocess.run([*common, f"--user-data-dir={tmp_path / (name + '-shot')}", f"--screenshot={shot}", url],
                   capture_output=True, text=True, timeout=120)
    return dom, shot


def assert_not_blank(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, f"{png} looks blank ({colors and len(colors)} colours)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_report_renders_its_plots_in_chromium(study, tmp_path):
    out = study["dir"] / "browse.html"
    assert run_cli("report", "--study", "seen", "-o", str(out), cwd=study["dir"]).returncode == 0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(study["dir"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom, shot = browse(f"http://127.0.0.1:{server.server_address[1]}/browse.html", tmp_path, "report")
    finally:
        server.shutdown()
    assert dom.count('class="plotly-graph-div') >= 5  # one per plot, filled in by plotly.js:
    assert dom.count('class="main-svg"') >= 5 and "scatterlayer" in dom
    assert_not_blank(shot)


def test_dashboard_lists_the_study_in_chromium(study, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autotune.cli", "dashboard", "--study", "seen", "--port", str(port)],
                            cwd=study["dir"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    summaries = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout and proc.stdout.read()
                time.sleep(0.5)
        assert [s["study_name"] for s in summaries] == ["seen"]
        dom, shot = browse(f"http://127.0.0.1:{port}/dashboard/", tmp_path, "dashboard")
        assert "seen" in dom.split("<body", 1)[1] and "MAXIMIZE" in dom
        assert_not_blank(shot)
        study_id = summaries[0]["study_id"]
        dom, shot = browse(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", tmp_path, "study")
        assert "decode_tokens_per_s" in dom  # the objective under its own name
        assert_not_blank(shot)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_on_a_busy_port_says_so(study):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run = run_cli("dashboard", "--study", "seen", "--port", str(busy.getsockname()[1]), cwd=study["dir"],
                      timeout=60)
    assert run.returncode == 2 and "--port" in run.stderr and "Traceback" not in run.stderr


def test_the_search_ends_with_what_it_found_and_show_folds_rather_than_cuts(study):
    preset = next(e for e in study["events"] if e["event"] == "preset")
    assert preset["outcome"].startswith(("best: ", "no configuration beat the baseline"))
    assert preset["outcome"] in study["run"].stderr
    table = run_cli("show", "--study", "seen", cwd=study["dir"], env={"COLUMNS": "100"})
    assert table.returncode == 0 and "…" not in table.stdout


def test_export_takes_a_chosen_feasible_trial(study, tmp_path):
    rows = json.loads(run_cli("show", "--study", "seen", "--json", cwd=study["dir"]).stdout)
    chosen = next(r for r in rows if r["feasible"] and not r["best"]) if sum(r["feasible"] for r in rows) > 1 \
        else next(r for r in rows if r["feasible"])
    out = tmp_path / "chosen.preset.json"
    run = run_cli("export", "--study", "seen", "--trial", str(chosen["number"]), "-o", str(out), cwd=study["dir"])
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["study"]["trial"] == chosen["number"]
    refused = run_cli("export", "--study", "seen", "--trial", "99", "-o", str(tmp_path / "no.json"), cwd=study["dir"])
    assert refused.returncode == 2 and "--trial 99: the study has no such trial" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "no.json").exists()
