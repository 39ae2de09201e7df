"""Progress of a running search: which trial, which phase, how long, the best so far.

The Tuner reports events (`report(event, **info)`); `Progress` prints them as lines for people,
`JsonProgress` as one JSON object per line for scripts (`autotune search --json-progress`).
"""

from __future__ import annotations

import json
import sys
import time

from autotune.worker.phase import LABELS


def first_line(text: str | None, limit: int = 160) -> str:
    return ((text or "").splitlines() or [""])[0][:limit]


class Progress:
    """Prints a line when a trial starts, when its worker changes phase (load, warm-up/compile, measure,
    compare, with the elapsed time and the best so far), and when it ends. `quiet` prints nothing."""

    def __init__(self, console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.started: dict[int, float] = {}

    def elapsed(self, number: int) -> float:
        return time.perf_counter() - self.started.get(number, time.perf_counter())

    def __call__(self, event: str, **info) -> None:
        if self.quiet:
            return
        print_ = self.console.print
        if event == "probe":
            print_(f"inspecting the machine (--device {info['device']}) ...")
        elif event == "left_out":
            print_(f"  left out {info['knob']}={info['value']}: {info['why']}", style="dim")
        elif event == "stale":
            print_(f"trial {info['number']} was left running by an orchestrator that stopped "
                   "(no heartbeat within the grace period): marked failed, retry enqueued")
        elif event == "waiting_stale":
            if info.get("heartbeats", True):
                print_(f"waiting for trial(s) {info['numbers']} of another run: failed once their heartbeat is "
                       f"{info['grace']} s old", style="dim")
            else:  # a journal file keeps no heartbeats
                print_(f"waiting up to {info['grace']} s for trial(s) {info['numbers']} of another worker to end",
                       style="dim")
        elif event == "lost_tell":
            print_(f"trial {info['number']} was finished elsewhere before its result was told "
                   f"({info['error']}); its measurement is kept in results/")
        elif event == "reconciled":
            print_(f"imported the measurement of trial {info['number']} from results/ (reconcile)")
        elif event == "confirm":
            print_(f"re-measuring the best configuration (trial {info['number']}) {info['runs']} times "
                   "in fresh processes ...")
        elif event == "confirmed":
            cv = "-" if info["cv"] is None else f"{100 * info['cv']:.1f} %"
            runs = ", ".join("failed" if v is None else f"{v:.1f}" for v in info["runs"])
            print_(f"  -> {runs} decode tok/s; coefficient of variation {cv}: "
                   + ("stable" if info["stable"] else "UNSTABLE (the preset is marked so)"))
        elif event == "deleted":
            print_(f"deleted the earlier study {info['study']!r} (--new-study)")
        elif event == "moved_aside":
            print_(f"its results and logs were moved to {info['path']}")
        elif event == "start":
            self.started[info["number"]] = time.perf_counter()
            print_(f"[bold]trial {info['number']}[/bold] ({info['role']}) {info['candidate'].describe()} ...")
        elif event == "phase" and info["phase"] != "start":
            best = "-" if info["best"] is None else f"{info['best']:.1f} tok/s"
            print_(f"  {LABELS[info['phase']]} ... [{self.elapsed(info['number']):.1f} s, best so far {best}]",
                   style="dim")
        elif event == "end":
            self.print_end(info)

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
        self.console.print(f"  -> {note}  [{self.elapsed(info['number']):.1f} s, best so far {best} tok/s]")


class JsonProgress:
    """One JSON object per line on `stream` for every event: {"event": ..., "time": ..., ...}. Trial events
    carry `trial`, `role`, `config`, `elapsed_s` and `best` (decode tok/s of the best feasible trial so far);
    `phase` events the worker's phase; `end` events the outcome and its main figures."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.started: dict[int, float] = {}

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
