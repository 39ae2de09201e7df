"""Progress of a running search: which trial, which phase, how long, the best so far.

The tuner reports events (`report(event, **info)`); `Progress` prints them as lines for people,
`JsonProgress` as one JSON object per line for scripts (`autotune search --json-progress`).
"""

from __future__ import annotations

import json
import sys
import time

from autotune.config.objective import LABELS as OBJECTIVE_LABELS
from autotune.worker.phase import LABELS


def first_line(text: str | None, limit: int = 160) -> str:
    return ((text or "").splitlines() or [""])[0][:limit]


def _waiting_stale(i: dict) -> str:
    if i.get("heartbeats", True):
        return f"waiting for trial(s) {i['numbers']} of another run: failed once their heartbeat is {i['grace']} s old"
    return f"waiting up to {i['grace']} s for trial(s) {i['numbers']} of another worker to end"  # a journal file


def _confirmed(i: dict) -> str:
    cv = "-" if i["cv"] is None else f"{100 * i['cv']:.1f} %"
    runs = ", ".join("failed" if v is None else f"{v:.1f}" for v in i["runs"])
    return (f"  -> {runs} {OBJECTIVE_LABELS.get(i.get('metric'), 'decode tok/s')}; coefficient of variation {cv}: "
            + ("stable" if i["stable"] else "UNSTABLE (the preset is marked so)"))


def _worker_stopped(i: dict) -> str:
    failed = f"; its running trial(s) {i['failed']} failed and retried" if i["failed"] else ""
    return f"worker for gpu {i['gpu']} stopped (exit {i['code']}){failed}"


# event -> (line, dim): the events that print one line from their info alone
LINES = {
    "probe": (lambda i: f"inspecting the machine (--device {i['device']}) ...", False),
    "left_out": (lambda i: f"  left out {i['knob']}={i['value']}: {i['why']}", True),
    "stale": (lambda i: f"trial {i['number']} was left running by an orchestrator that stopped (no heartbeat "
                        "within the grace period): marked failed, retry enqueued", False),
    "waiting_stale": (_waiting_stale, True),
    "lost_tell": (lambda i: f"trial {i['number']} was finished elsewhere before its result was told "
                            f"({i['error']}); its measurement is kept in results/", False),
    "reconciled": (lambda i: f"imported the measurement of trial {i['number']} from results/ (reconcile)", False),
    "confirm": (lambda i: f"re-measuring the best configuration (trial {i['number']}) {i['runs']} times in fresh "
                          "processes ...", False),
    "confirmed": (_confirmed, False),
    "deleted": (lambda i: f"deleted the earlier study {i['study']!r} (--new-study)", False),
    "moved_aside": (lambda i: f"kept, moved aside: {i['path']}", False),
    # several workers on one study
    "waiting_baseline": (lambda i: f"trial {i['number']} waits for the study's baseline (measured by another "
                                   "worker)", True),
    "own_baseline": (lambda i: f"trial {i['number']}: this type of machine ({i['machine']}) has no baseline in the "
                               "study yet: measuring its own", True),
    "fetched_baseline": (lambda i: f"took the study's baseline reference from the storage into {i['path']}", True),
    "waiting_same": (lambda i: f"trial {i['number']} has the configuration trial {i['other']} is measuring now: "
                               "waiting to reuse its result", True),
    "storage_down": (lambda i: f"the storage cannot be reached: trial {i['number']}'s measurement is saved in "
                               "results/; telling the study again every few seconds", True),
    "worker_started": (lambda i: f"worker for gpu {i['gpu']} started (pid {i['pid']})", False),
    "budget_changed": (lambda i: f"the study's total budget changes from {i['before']} to {i['after']} trials",
                       False),
    "orphans_failed": (lambda i: f"trial(s) {i['failed']} were left running by workers of this host that are gone: "
                                 "failed and retried", False),
    "worker_stopped": (_worker_stopped, False),
    "overlap": (lambda i: f"{i['slots']} trials side by side: they load and compile at once, and measure one at a "
                          "time with the others paused", False),
}


class Progress:
    """Prints a line when a trial starts, when its worker changes phase (load, warm-up/compile, measure,
    compare, with the elapsed time and the best so far), when it ends, and for the events of LINES.
    `quiet` prints nothing."""

    def __init__(self, console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.started: dict[int, float] = {}
        self.tagged = False  # trials side by side: every phase and outcome line names its trial

    def elapsed(self, number: int) -> float:
        return time.perf_counter() - self.started.get(number, time.perf_counter())

    def __call__(self, event: str, **info) -> None:
        if self.quiet:
            return
        self.tagged = self.tagged or event == "overlap"
        if event in LINES:
            line, dim = LINES[event]
            self.console.print(line(info), style="dim" if dim else None)
        elif event == "worker_line":
            self.console.print(f"[gpu {info['gpu']}] {info['line']}", markup=False)
        elif event == "start":
            self.started[info["number"]] = time.perf_counter()
            self.console.print(f"[bold]trial {info['number']}[/bold] ({info['role']}) "
                               f"{info['candidate'].describe()} ...")
        elif event == "phase" and info["phase"] != "start":
            best = "-" if info["best"] is None else f"{info['best']:.1f} tok/s"
            self.console.print(f"  {self.tag(info)}{LABELS[info['phase']]} ... [{self.elapsed(info['number']):.1f} s, best so far "
                               f"{best}]", style="dim")
        elif event == "end":
            self.print_end(info)

    def tag(self, info: dict) -> str:
        return f"trial {info['number']}: " if self.tagged else ""

    def print_end(self, info: dict) -> None:
        m = info["measurement"]
        if info["duplicate_of"] is not None:
            note = f"same configuration as trial {info['duplicate_of']}: result reused"
        elif m.ok:
            agreement = f"top-1 agreement {m.top1_agreement:.3f}"
            if not m.equivalence_meaningful:
                agreement += " (random weights: not judged)"
            note = (f"{m.decode_tokens_per_s:.1f} decode tok/s, {agreement}, "
                    f"peak {m.peak_memory_bytes / 2**20:.0f} MiB")
        else:
            note = f"{m.status} ({m.failure_kind}): {first_line(m.message)}"
        best = "-" if info["best"] is None else f"{info['best']:.1f}"
        self.console.print(f"  {self.tag(info)}-> {note}  [{self.elapsed(info['number']):.1f} s, best so far {best} tok/s]")


class JsonProgress:
    """One JSON object per line on `stream` for every event: {"event": ..., "time": ..., ...}. Trial events
    carry `trial`, `role`, `config`, `elapsed_s` and `best` (decode tok/s of the best feasible trial so far);
    `phase` events the worker's phase; `end` events the outcome and its main figures."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.started: dict[int, float] = {}
        self.tagged = False  # trials side by side: every phase and outcome line names its trial

    def emit(self, record: dict) -> None:
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()

    def __call__(self, event: str, **info) -> None:
        record = {"event": event, "time": round(time.time(), 3)}
        number = info.get("number")
        if event == "start":
            self.started[number] = time.perf_counter()
        if number is not None and number in self.started:
            record["elapsed_s"] = round(time.perf_counter() - self.started[number], 3)
        for key, value in info.items():
            if key == "number":
                record["trial"] = value
            elif key == "candidate":
                record["config"] = value.describe()
            elif key == "measurement":
                record.update(status=value.status, failure_kind=value.failure_kind,
                              message=first_line(value.message, 300),
                              decode_tokens_per_s=value.decode_tokens_per_s,
                              peak_memory_bytes=value.peak_memory_bytes, top1_agreement=value.top1_agreement)
            else:
                record[key] = value
        self.emit(record)
