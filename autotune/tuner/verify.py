"""`autotune verify`: a preset measured again on this machine, in fresh worker processes, and judged against what
it recorded.

The baseline (the model as `from_pretrained` loads it) runs first and makes the reference, as a study's trial 0
does; then the preset's configuration (`measurement.candidate`) runs `runs` times, each in a fresh process,
compared with that reference, on the workload the preset records. Two checks: speed (the median decode tok/s
against the recorded figure; more than `threshold` below it fails) and equivalence (the run furthest from the
preset's gate, autotune.config.gate, by its rule `study.gate` and bar `study.min_agreement`).

A preset is data: its schema (autotune.config.preset_schema) checks it before anything starts, and its
candidate must be the configuration its `load_kwargs`, `generation_config` and `runtime` describe, so that what
is measured is what a user of the preset loads. Nothing a preset names is imported in this process.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from autotune.config import models
from autotune.config.candidate import Candidate
from autotune.config.gate import Gate
from autotune.config.measurement import Measurement
from autotune.config.objective import DEFAULT_METRIC, LABELS, metric_of
from autotune.config.preset import Preset
from autotune.config.settings import SearchSettings, default
from autotune.config.workload import Workload
from autotune.errors import CandidateError, InputError, PresetError, SystemicFailureError
from autotune.tuner import machine
from autotune.tuner.confirm import STABLE_CV
from autotune.tuner.launching import TrialLauncher

AGAIN = "export the preset again (autotune export --study NAME)"


@dataclass(frozen=True)
class Check:
    """One verdict: `name` ("speed" or "equivalence"), whether it passed, a line that says why, its figures."""

    name: str
    passed: bool
    summary: str
    figures: dict

    def line(self) -> str:
        return f"{self.name}: {'PASS' if self.passed else 'FAIL'}: {self.summary}"


@dataclass(frozen=True)
class Verification:
    """What `verify` found: the checks, each run's figures, the baseline measured here, and where."""

    preset: str
    model: str
    device: str
    device_name: str | None
    recorded_device_name: str | None
    baseline_tokens_per_s: float
    checks: tuple[Check, ...]
    runs: tuple[dict, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failure(self) -> str:
        """One line naming the failed checks and why ('' when every check passed)."""
        failed = [check for check in self.checks if not check.passed]
        return "; ".join(f"{check.name}: {check.summary}" for check in failed)

    def to_dict(self) -> dict:
        """JSON-ready, for `autotune verify --json`."""
        return {**asdict(self), "passed": self.passed, "checks": [asdict(check) for check in self.checks],
                "runs": list(self.runs)}


def plain(value):
    """`value` as JSON gives it back (tuples become lists), so a candidate's parts compare with a preset's."""
    return json.loads(json.dumps(value))


def preset_candidate(preset: Preset) -> Candidate:
    """The configuration the preset was measured as (`measurement.candidate`), once it is the one its load
    kwargs, runtime hints and GenerationConfig describe (PresetError otherwise)."""
    data = preset.measurement.get("candidate")
    if not isinstance(data, dict):
        raise PresetError(f"the preset's measurement.candidate is missing, so there is no configuration to measure; {AGAIN}")
    try:
        candidate = Candidate.from_dict(data)
    except (CandidateError, TypeError, ValueError) as exc:
        raise PresetError(f"the preset's measurement.candidate is not a configuration of this autotune ({exc}); "
                          f"{AGAIN}") from None
    generation = plain(candidate.generation_kwargs())
    for field, same in (("load_kwargs", plain(candidate.load_kwargs()) == preset.load_kwargs),
                        ("runtime", plain(candidate.runtime()) == preset.runtime),
                        ("generation_config", all(preset.generation_config.get(k) == v for k, v in generation.items()))):
        if not same:
            raise PresetError(f"the preset's {field} is not what its measurement.candidate was measured with, so "
                              f"verifying would measure another configuration; {AGAIN}")
    return candidate


def recorded_workload(preset: Preset, prompts: str | None) -> Workload:
    """The workload the preset was measured on, its prompts from the preset or from the file `prompts`."""
    if not preset.workload:
        raise PresetError(f"the preset records no workload (prompts, batch size, new tokens), so it cannot be "
                          f"measured again as it was; {AGAIN}")
    return Workload.from_record(preset.workload, prompts, model=preset.model)


def recorded_speed(measurement: dict, metric: str = DEFAULT_METRIC) -> tuple[float, str]:
    """The figure of the study's objective (`metric`, decode tok/s unless it was --objective e2e) the preset
    records, and what it is: the median of its confirmations where it has them (the steadier figure), else its
    trial's measurement."""
    stability = measurement.get("stability") or {}
    median, runs = stability.get("median"), [v for v in stability.get("runs") or [] if v is not None]
    if isinstance(median, (int, float)) and not isinstance(median, bool) and median > 0:
        return float(median), f"the median of its {len(runs)} confirmation(s)"
    value = measurement.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value), "its trial's measurement"
    raise PresetError(f"the preset's measurement records no {metric} to compare with; {AGAIN}")


def why_none(measured: list[Measurement]) -> str:
    failed = next((m for m in measured if not m.ok), None)
    return f"{failed.status}: {(failed.message or '').splitlines()[0] if failed.message else ''}" if failed else ""


def speed_check(measured: list[Measurement], recorded: float, source: str, threshold: float,
                metric: str = DEFAULT_METRIC) -> Check:
    """The median of the runs' `metric` (the objective the preset was chosen by), and their spread, against the
    recorded figure."""
    values = [getattr(m, metric) for m in measured if m.ok and getattr(m, metric)]
    if not values:
        return Check("speed", False, f"no run measured ({why_none(measured)})", {"recorded": recorded, "runs": []})
    median = statistics.median(values)
    cv = statistics.pstdev(values) / statistics.fmean(values) if len(values) >= 2 else None
    below = 1 - median / recorded
    where = f"{below:.1%} below" if below > 0 else f"{-below:.1%} above"
    spread = f"CV {cv:.1%}, " if cv is not None else ""
    summary = (f"median {median:.1f} {LABELS[metric]} over {len(values)} of {len(measured)} runs ({spread}"
               f"{min(values):.1f}-{max(values):.1f}), {where} the recorded {recorded:.1f} ({source}); "
               f"more than {threshold:.0%} below fails")
    if cv is not None and cv >= STABLE_CV:
        summary += (f"; the runs spread more than {STABLE_CV:.0%} (another load on this machine?): judge with more "
                    "--runs")
    figures = {"metric": metric, "median": median, "cv": cv, "runs": values, "recorded": recorded,
               "recorded_from": source,
               "below": below, "threshold": threshold}
    return Check("speed", below <= threshold, summary, figures)


def equivalence_check(measured: list[Measurement], gate: Gate, recorded: dict) -> Check:
    """The run furthest from the preset's gate (its rule and bar, `study.gate` and `study.min_agreement`),
    scored against the baseline and the float32 reference rebuilt here."""
    ok = [m for m in measured if m.ok and m.top1_agreement is not None]
    if not ok:
        return Check("equivalence", False, f"no run compared ({why_none(measured)})",
                     {"bar": gate.min_agreement, "gate": gate.rule})
    worst = max(ok, key=gate.gap)
    low, kl = min(m.top1_agreement for m in ok), max((m.mean_kl or 0.0) for m in ok)
    was = recorded.get("top1_agreement")
    summary = (f"top-1 agreement with the baseline {low:.3f} (the lowest of {len(ok)} runs"
               + (f"; recorded {was:.3f}" if isinstance(was, (int, float)) else "") + f"), mean KL {kl:.3g}")
    if gate.rule != "baseline" and gate.floor_known(worst):
        summary += (f"; against float32 top-1 {worst.float32_top1_agreement:.3f}, mean KL "
                    f"{worst.float32_mean_kl:.3g}")
    summary += f"; the gate: {gate.describe(worst)}"
    meaningful = all(m.equivalence_meaningful for m in ok)
    if not meaningful:
        summary += ": not judged (random weights give degenerate text; judge equivalence on a trained model)"
    figures = {"top1_agreement": low, "mean_kl": kl, "bar": gate.min_agreement, "gate": gate.rule,
               "gap": gate.gap(worst), "float32_top1_agreement": worst.float32_top1_agreement,
               "float32_mean_kl": worst.float32_mean_kl, "floor_top1_agreement": worst.floor_top1_agreement,
               "floor_mean_kl": worst.floor_mean_kl, "recorded_top1_agreement": was, "meaningful": meaningful}
    return Check("equivalence", gate.passes(worst) or not meaningful, summary, figures)


def preset_gate(preset) -> Gate:
    """The gate a preset was judged by; InputError naming the field where it is not one."""
    try:
        return Gate.of_attrs(preset.study)
    except (ValueError, TypeError) as exc:
        raise InputError(f"preset field study.gate or study.min_agreement: {exc}") from None


def check_verify_options(runs, threshold, repeats, warmup, trial_timeout) -> None:
    checks = ((isinstance(runs, int) and runs >= 1, f"--runs must be at least 1, got {runs!r}"),
              (isinstance(threshold, (int, float)) and 0 <= threshold < 1,
               f"--threshold is a fraction of the recorded speed from 0 to below 1, got {threshold!r}"))
    for holds, message in checks:
        if not holds:
            raise InputError(message)
    # --repeats, --warmup and --trial-timeout are checked where a study's settings are
    SearchSettings(model="-", workload=Workload(prompts=("-",)), study_name="verify", repeats=repeats,
                   warmup=warmup, trial_timeout=trial_timeout)


def verify_preset(path: str | Path, device: str = default("device"), runs: int = default("runs"),
                  threshold: float = default("threshold"), prompts: str | None = None,
                  repeats: int = default("repeats"), warmup: int = default("warmup"),
                  trial_timeout: float = default("trial_timeout"), say: Callable[[str], None] | None = None
                  ) -> Verification:
    """Measure a preset again here and judge it (see the module's docstring).

    Args:
        path: a preset file, or a model folder holding one (PRESET_IN_FOLDER).
        device, runs, threshold, prompts, repeats, warmup, trial_timeout: as `autotune verify` takes them.
        say: receives a line per step (the baseline, each run); none by default.

    Returns:
        The Verification. Raises PresetError for a preset of the wrong shape (before any process starts),
        WorkloadError where its prompts are not at hand, SystemicFailureError where the baseline fails here.
    """
    say = say or (lambda line: None)
    check_verify_options(runs, threshold, repeats, warmup, trial_timeout)
    preset = Preset.read_in(path)
    candidate = preset_candidate(preset)
    gate = preset_gate(preset)
    workload = recorded_workload(preset, prompts)
    metric = metric_of(preset.study)
    recorded, source = recorded_speed(preset.measurement, metric)
    model = models.resolve_model(preset.model)
    env = machine.probe(device)
    with tempfile.TemporaryDirectory(prefix="autotune-verify-") as root:
        settings = SearchSettings(model=model, workload=workload, study_name="verify", device=env["device"],
                                  root=root, repeats=repeats, warmup=warmup, trial_timeout=trial_timeout)
        reference = settings.study_dir / "baseline.pt"
        launcher = TrialLauncher(settings, model, env["device"], lambda: reference, lambda: None, lambda *a, **k: None)
        say(f"baseline: {model} as from_pretrained loads it, on {env['device']} ({env.get('device_name')})")
        baseline = launcher.run(0, "baseline", Candidate())
        if not baseline.ok:
            raise SystemicFailureError(f"the baseline (the model as from_pretrained loads it) failed here: "
                                       f"{why_none([baseline])}")
        say(f"  {baseline.decode_tokens_per_s:.1f} decode tok/s")
        measured = []
        for i in range(runs):
            say(f"run {i + 1} of {runs}: {candidate.describe()}")
            measured.append(launcher.run(1, "verify", candidate, job_name=f"run-{i}"))
            m = measured[-1]
            say(f"  {m.decode_tokens_per_s:.1f} decode tok/s, top-1 agreement {m.top1_agreement:.3f}" if m.ok
                else f"  {why_none([m])}")
    return Verification(
        preset=str(path), model=model, device=env["device"], device_name=env.get("device_name"),
        recorded_device_name=preset.environment.get("device_name"),
        baseline_tokens_per_s=baseline.decode_tokens_per_s,
        checks=(speed_check(measured, recorded, source, threshold, metric),
                equivalence_check(measured, gate, preset.measurement)),
        runs=tuple({k: getattr(m, k) for k in ("status", "decode_tokens_per_s", "top1_agreement", "mean_kl",
                                               "prefix_match", "message")} for m in measured))
