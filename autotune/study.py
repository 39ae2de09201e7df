"""The study: an Optuna study over Candidates, each measured in a fresh worker process.

    settings -> open (or resume) the study -> enqueue the baseline and the seed recipe ->
    loop: ask -> suggest a Candidate -> reject invalid / reuse duplicates / launch a worker ->
          write the Measurement under studies/<study>/results/ -> tell Optuna -> export the best.

Trial states: `ok` -> COMPLETE with the decode tokens/s as value; infeasible (`oom`, `unsupported`, an
invalid combination) -> COMPLETE with value 0 and a violated constraint, so the sampler learns from it;
`error`, `timeout`, `crash` -> FAIL with a `failure_kind`. A failed baseline stops the study.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune import __version__
from autotune.candidate import Candidate
from autotune.errors import InputError, StudyMismatchError, SystemicFailureError
from autotune.measurement import METRIC_FIELDS, Measurement, write_atomic
from autotune.memory import over_budget_message
from autotune.preset import Preset, best_feasible_trial, preset_from_trial
from autotune.space import SearchSpace
from autotune.worker.job import Job
from autotune.worker.launcher import launch
from autotune.workload import Workload

OBJECTIVE = "decode_tokens_per_s"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
CONFIG_ATTR = "autotune"


@dataclass(frozen=True)
class SearchSettings:
    model: str
    workload: Workload
    study_name: str
    trials: int = 20
    space: str = "default"
    device: str = "auto"
    storage: str | None = None
    root: str = "studies"
    assistant: str | None = None
    min_agreement: float = 0.99
    seed: int = 0
    trial_timeout: float = 900.0
    repeats: int = 3
    warmup: int = 1
    max_consecutive_failures: int = 3
    new_study: bool = False
    command: str | None = None
    vram: int | None = None  # memory budget in bytes (--vram); None: no budget
    # Test-only: trial number -> fault name (autotune.worker.faults); honoured by a worker only when its
    # environment has AUTOTUNE_ALLOW_FAULTS=1.
    faults: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.trials, int) or self.trials < 1:
            raise InputError(f"--trials must be at least 1, got {self.trials}")
        if not 0 <= self.min_agreement <= 1:
            raise InputError(f"--min-agreement is a share between 0 and 1, got {self.min_agreement}")
        if self.trial_timeout <= 0:
            raise InputError(f"--trial-timeout must be positive, got {self.trial_timeout}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError("--repeats must be at least 1 and --warmup at least 0")
        if not self.study_name or "/" in self.study_name:
            raise InputError(f"--study must be a plain name (no '/'), got {self.study_name!r}")
        if self.vram is not None and (not isinstance(self.vram, int) or self.vram <= 0):
            raise InputError(f"--vram must be a positive number of bytes, got {self.vram!r}")

    @property
    def study_dir(self) -> Path:
        return Path(self.root) / self.study_name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.root) / (self.study_name + '.db')}"


def default_study_name(model: str) -> str:
    return Path(model.rstrip("/")).name or "study"


def resolve_model(model: str) -> str:
    """A local model folder becomes an absolute path (so workers and presets find it from anywhere); a hub id
    is kept. A path that does not exist or holds no config.json is an input error."""
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1
    if not looks_local:
        return model
    if not path.is_dir():
        raise InputError(f"model path {model!r} does not exist: give a folder with config.json and weights, "
                         "or a Hugging Face hub id like google/gemma-2b")
    if not (path / "config.json").is_file():
        raise InputError(f"model folder {model!r} has no config.json: is it a transformers model folder?")
    return str(path.resolve())


def storage_for(url: str) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage; SQLite gets a long busy timeout so optuna-dashboard can read alongside."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


def seed_recipe(space: SearchSpace) -> Candidate | None:
    """The seed guide's recipe — a static cache plus torch.compile of the forward — in the closest form
    this space holds (reduce-overhead + fullgraph on CUDA, the default mode on CPU)."""
    for mode in ("reduce-overhead", "default"):
        for fullgraph in (True, False):
            candidate = Candidate(cache_implementation="static", compile=mode, compile_fullgraph=fullgraph,
                                  compile_api="explicit")
            if space.contains(candidate) and space.invalid_reason(candidate) is None:
                return candidate
    return None


class Tuner:
    """Runs one study. `report(event, **info)` receives progress events (see `cli.py`)."""

    def __init__(self, settings: SearchSettings, report: Callable[..., None] | None = None):
        self.settings = settings
        self.report = report or (lambda event, **info: None)
        self.model = resolve_model(settings.model)
        self.assistant = resolve_model(settings.assistant) if settings.assistant else None
        self.environment: dict = {}
        self.space: SearchSpace | None = None
        self.study: optuna.Study | None = None
        self.estimator = None  # autotune.memory.Estimator, set by prepare()

    # ---- setup -----------------------------------------------------------------------------------

    def prepare(self) -> optuna.Study:
        from autotune import environment

        s = self.settings
        base_space = SearchSpace.load(s.space)  # fails fast on a bad file, before anything starts
        self.report("probe", device=s.device)
        self.environment = environment.probe(s.device)
        self.space = base_space.for_environment(
            self.environment["device"], batch_size=s.workload.batch_size, assistant=self.assistant,
            has_bf16=self.environment["has_bf16"], has_flash_attn=self.environment["has_flash_attn"],
            has_flex_attention=self.environment["has_flex_attention"])
        self.estimator = self.memory_estimator()
        self.study = self.open_study()
        return self.study

    def study_attrs(self) -> dict:
        from autotune.environment import fingerprint

        s = self.settings
        return {
            "autotune_version": __version__,
            "study_name": s.study_name,
            "model": self.model,
            "assistant": self.assistant,
            "workload": s.workload.to_dict(),
            "workload_fingerprint": s.workload.fingerprint(),
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "device": self.environment["device"],
            "machine_fingerprint": fingerprint(self.environment),
            "min_agreement": s.min_agreement,
            "vram": s.vram,
            "objective": OBJECTIVE,
            "command": s.command,
        }

    def open_study(self) -> optuna.Study:
        s = self.settings
        storage = storage_for(s.storage_url)
        if s.new_study:
            try:
                optuna.delete_study(study_name=s.study_name, storage=storage)
                self.report("deleted", study=s.study_name)
            except KeyError:
                pass
        sampler = optuna.samplers.TPESampler(seed=s.seed)
        study = optuna.create_study(study_name=s.study_name, storage=storage, sampler=sampler,
                                    direction="maximize", load_if_exists=True)
        attrs = self.study_attrs()
        existing = study.user_attrs.get(CONFIG_ATTR)
        if existing is None:
            with warnings.catch_warnings():  # set_metric_names is marked experimental; it is what the dashboard reads
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([OBJECTIVE])
            study.set_user_attr(CONFIG_ATTR, attrs)
            for knob, value, why in self.space.left_out:
                self.report("left_out", knob=knob, value=value, why=why)
        else:
            self.check_same_study(existing, attrs)
        return study

    def check_same_study(self, existing: dict, attrs: dict) -> None:
        checks = [("model", "model"), ("workload_fingerprint", "workload (prompts, batch size, new tokens)"),
                  ("space_fingerprint", "search space"), ("machine_fingerprint", "machine (device)"),
                  ("min_agreement", "--min-agreement"), ("assistant", "--assistant"), ("vram", "--vram")]
        for key, what in checks:
            if existing.get(key) != attrs.get(key):
                raise StudyMismatchError(
                    f"study {self.settings.study_name!r} was created with another {what} "
                    f"({existing.get(key)!r}, now {attrs.get(key)!r}): resume it with the same settings, "
                    "choose another --study name, or pass --new-study to start it over")

    def fail_stale_trials(self) -> None:
        """A RUNNING trial left by an orchestrator that was killed is failed, so its budget is not lost
        and it does not block the study (one orchestrator per study on this storage)."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study._storage.set_trial_user_attr(trial._trial_id, "failure_kind", "interrupted")
            self.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            self.report("stale", number=trial.number)

    def enqueue_seeds(self) -> None:
        """Trial 0 is the baseline, trial 1 the seed recipe. Idempotent: enqueued only when missing."""
        trials = self.study.get_trials(deepcopy=False)
        roles = {(t.user_attrs.get("role"), t.state) for t in trials}
        has_baseline = any(role == "baseline" and state in (TrialState.COMPLETE, TrialState.WAITING,
                                                              TrialState.RUNNING) for role, state in roles)
        if not has_baseline:
            self.study.enqueue_trial(self.space.params_of(Candidate()), user_attrs={"role": "baseline"})
        if not trials:
            recipe = seed_recipe(self.space)
            if recipe is not None:
                self.study.enqueue_trial(self.space.params_of(recipe), user_attrs={"role": "seed-recipe"})

    # ---- the loop --------------------------------------------------------------------------------

    def finished_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def run(self) -> optuna.Study:
        if self.study is None:
            self.prepare()
        self.fail_stale_trials()
        self.enqueue_seeds()
        consecutive_failures = 0
        while self.finished_count() < self.settings.trials:
            trial = self.study.ask()
            measurement = self.run_trial(trial)
            if measurement.status == "oom" and trial.user_attrs.get("role") == "baseline" \
                    and not self.reference_path().exists():
                where = "the --vram budget" if self.settings.vram else "memory"
                raise SystemicFailureError(
                    f"the baseline (trial {trial.number}) does not fit in {where}: {measurement.message}. "
                    "Every trial is compared with it, so it must run" + (": raise --vram" if self.settings.vram else ""))
            if measurement.status in ("error", "timeout", "crash"):
                consecutive_failures += 1
                if trial.user_attrs.get("role") == "baseline":
                    raise SystemicFailureError(
                        f"the baseline (trial {trial.number}) failed, so nothing can be compared with it: "
                        f"{measurement.failure_kind}: {measurement.message}. Check the model and device; "
                        f"the worker log is {self.trial_dir(trial.number) / 'worker.log'}")
                if consecutive_failures >= self.settings.max_consecutive_failures:
                    raise SystemicFailureError(
                        f"{consecutive_failures} trials in a row failed (last: {measurement.failure_kind}: "
                        f"{measurement.message}); stopping instead of spending more time. Worker logs are "
                        f"under {self.settings.study_dir / 'trials'}")
            else:
                consecutive_failures = 0
        return self.study

    def trial_dir(self, number: int) -> Path:
        return self.settings.study_dir / "trials" / f"{number:05d}"

    def result_path(self, number: int) -> Path:
        return self.settings.study_dir / "results" / f"trial-{number:05d}.json"

    def reference_path(self) -> Path:
        return self.settings.study_dir / "baseline.pt"

    def run_trial(self, trial: optuna.Trial) -> Measurement:
        s = self.settings
        role = trial.user_attrs.get("role", "search")
        if role == "search":
            trial.set_user_attr("role", role)
        candidate = self.space.suggest(trial)
        if candidate.decoding == "assisted":
            candidate = replace(candidate, assistant=self.assistant)
        self.report("start", number=trial.number, total=s.trials, role=role, candidate=candidate)
        duplicate_of = None
        estimate = self.estimate_memory(candidate)
        reason = self.space.invalid_reason(candidate)
        if reason is not None:
            measurement = Measurement.failed("unsupported", "invalid_combination", reason)
        elif self.over_budget(estimate) and role != "baseline":
            measurement = Measurement.failed("oom", "over_budget", over_budget_message(estimate, s.vram))
        else:
            duplicate_of, measurement = self.earlier_measurement(candidate)
            if measurement is None:
                measurement = self.launch(trial.number, role, candidate)
        if estimate is not None:
            measurement = replace(measurement, estimated_memory_bytes=estimate.total,
                                  memory_estimate=estimate.to_dict())
        self.record(trial, candidate, measurement, duplicate_of)
        self.report("end", number=trial.number, total=s.trials, role=role, candidate=candidate,
                    measurement=measurement, duplicate_of=duplicate_of, best=self.best_value())
        return measurement

    def launch(self, number: int, role: str, candidate: Candidate) -> Measurement:
        s = self.settings
        job = Job(model=self.model, candidate=candidate, workload=s.workload, device=self.environment["device"],
                  role="baseline" if role == "baseline" else "candidate",
                  reference_path=str(self.reference_path().resolve()),
                  result_path=str(self.trial_dir(number).resolve() / "result.json"),
                  repeats=s.repeats, warmup=s.warmup, trial_number=number, fault=s.faults.get(number),
                  budget_bytes=s.vram)
        if role != "baseline" and not self.reference_path().exists():
            return Measurement.failed("error", "no_baseline", f"the baseline reference {self.reference_path()} "
                                      "is missing; start the study over with --new-study")
        env = {"TORCHINDUCTOR_CACHE_DIR": str((s.study_dir / "inductor-cache").resolve())}
        return launch(job, self.trial_dir(number), s.trial_timeout, env=env)

    # ---- the memory budget (autotune.memory) -------------------------------------------------------
    # Every trial gets a pre-launch estimate; with --vram, a candidate estimated over the budget is recorded
    # as infeasible (oom / over_budget) without a process. The baseline is always launched: it is the
    # reference every trial is compared with, so a real measurement decides (a baseline that runs out of
    # memory stops the study, see run()).

    def memory_estimator(self):
        from autotune.memory import Estimator

        try:
            estimator = Estimator.for_model(self.model, self.settings.workload, assistant=self.assistant)
            estimator(Candidate(), self.environment["device"])  # sizes the model now: fail here, not mid-study
            return estimator
        except InputError:
            if self.settings.vram is not None:
                raise  # a budget that cannot be estimated cannot be honoured
            return None  # no budget: the estimate is informative only

    def estimate_memory(self, candidate: Candidate):
        if self.estimator is None:
            return None
        try:
            return self.estimator(candidate, self.environment["device"])
        except InputError:
            if self.settings.vram is not None:
                raise
            return None

    def over_budget(self, estimate) -> bool:
        return self.settings.vram is not None and estimate is not None and estimate.total > self.settings.vram

    def earlier_measurement(self, candidate: Candidate) -> tuple[int | None, Measurement | None]:
        """A finished trial of the same effective configuration, whose result is reused (not re-measured)."""
        key = candidate.key()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("candidate_key") == key and t.user_attrs.get("duplicate_of") is None:
                path = self.result_path(t.number)
                if path.exists():
                    return t.number, Measurement.from_json(path.read_text(encoding="utf-8"))
        return None, None

    def record(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Write the measurement to disk first, then tell Optuna (value, constraints, user attrs)."""
        record = {"trial": trial.number, "candidate": candidate.to_dict(), "duplicate_of": duplicate_of,
                  **m.to_dict()}
        write_atomic(self.result_path(trial.number), json.dumps(record, sort_keys=True, indent=1))
        attrs = {
            "status": m.status, "failure_kind": m.failure_kind, "message": m.message,
            "candidate": candidate.to_json(), "candidate_key": candidate.key(), "config": candidate.describe(),
            "duplicate_of": duplicate_of, "equivalence_meaningful": m.equivalence_meaningful,
            "peak_memory_kind": m.peak_memory_kind,
            **{name: getattr(m, name) for name in METRIC_FIELDS},
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if m.ok:
            trial.set_constraint("top1_agreement", self.settings.min_agreement - (m.top1_agreement or 0.0))
            trial.set_constraint("runs", 0.0)
            self.study.tell(trial, m.decode_tokens_per_s or 0.0)
        elif m.infeasible:
            trial.set_constraint("top1_agreement", self.settings.min_agreement)
            trial.set_constraint("runs", 1.0)
            self.study.tell(trial, 0.0)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def best_value(self) -> float | None:
        try:
            return best_feasible_trial(self.study.get_trials(deepcopy=False)).value
        except Exception:
            return None

    # ---- export ----------------------------------------------------------------------------------

    def export(self, out: str | Path | None = None) -> Path:
        return export_study(self.study, out or default_preset_path(self.settings.root, self.settings.study_name),
                            self.settings.study_dir)


def default_preset_path(root: str | Path, study_name: str) -> Path:
    return Path(root) / f"{study_name}.preset.json"


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage_for(storage_url))
    except KeyError:
        raise InputError(f"no study named {study_name!r} in {storage_url}: run 'autotune search' first, "
                         "or give the right --study / --storage") from None


def export_study(study: optuna.Study, out: str | Path, study_dir: str | Path) -> Path:
    """Export the study's best feasible trial as a Preset (atomically). Raises NoFeasibleTrialError."""
    attrs = study.user_attrs.get(CONFIG_ATTR)
    if attrs is None:
        raise InputError(f"study {study.study_name!r} was not made by autotune (it has no '{CONFIG_ATTR}' attribute)")
    best = best_feasible_trial(study.get_trials(deepcopy=False))
    number = best.user_attrs.get("duplicate_of")
    number = best.number if number is None else number
    path = Path(study_dir) / "results" / f"trial-{number:05d}.json"
    measurement = json.loads(path.read_text(encoding="utf-8")) if path.exists() else dict(best.user_attrs)
    return preset_from_trial(best, attrs, measurement).write(out)

