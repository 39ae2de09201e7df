"""The study: an Optuna study over Candidates, each measured in a fresh worker process.

    settings -> open (or resume) the study -> enqueue the baseline and the seed recipe ->
    loop: ask -> suggest a Candidate -> reject invalid / reuse duplicates / launch a worker ->
          write the Measurement under studies/<study>/results/ -> tell Optuna -> export the best.

Trial states (../shared/RELIABILITY.md):
- `ok` -> COMPLETE with the decode tokens/s as value and the agreement constraint;
- infeasible (`oom`, `unsupported`, an invalid combination) -> COMPLETE with value 0 and a violated
  constraint, so the sampler learns to avoid it;
- transient (`error`, `timeout`, `crash`, a CUDA error, an interrupted trial) -> FAIL with a
  `failure_kind`, retried once with identical params (`retry_history`, Optuna's retry callback);
- systemic (the baseline fails, or the first K trials after it all fail) -> the study stops
  (SystemicFailureError).

Nothing is lost: each Measurement is written under studies/<study>/results/ before Optuna is told, and
`reconcile` imports a measurement whose tell never happened (an orchestrator killed in between, a trial
failed from another handle). A heartbeat thread marks the running trial alive while its worker runs.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from autotune import __version__, models
from autotune.candidate import KNOBS, Candidate
from autotune.errors import CandidateError, InputError, SpaceError, StudyMismatchError, SystemicFailureError
from autotune.interrupt import check as check_interrupt, interruptible
from autotune.measurement import Measurement
from autotune.memory import over_budget_message
from autotune.preset import best_feasible_trial, preset_from_trial
from autotune.records import Records, counts_toward_trials, result_path
from autotune.space import SearchSpace
from autotune.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, Heartbeat, storage_for
from autotune.worker import faults
from autotune.worker.faults import fault_for
from autotune.worker.job import Job
from autotune.worker.launcher import launch
from autotune.workload import Workload

OBJECTIVE = "decode_tokens_per_s"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# Invalid combinations do not count toward --trials; this many drawn in a row means the space has (almost)
# no valid configuration left to draw, and the study stops rather than draw forever.
MAX_INVALID_IN_A_ROW = 100
CONFIG_ATTR = "autotune"
STABILITY_ATTR = "stability"
FOLDER_FILE = "STORAGE"  # in a study's folder: which storage's study the folder serves (one per folder)
TRANSIENT = ("error", "timeout", "crash")
STABLE_CV = 0.05
EARLY_STOP = 0.5  # a trial under half the best so far cannot beat it, whatever noise its measurement has  # coefficient of variation of re-measured decode tok/s under which a preset is stable


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
    max_initial_failures: int = 3
    max_retry: int = 1
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S
    confirm: int = 3
    new_study: bool = False
    command: str | None = None
    vram: int | None = None  # memory budget in bytes (--vram); None: no budget
    # Early stopping: a trial whose first timed pass runs under this fraction of the best feasible decode
    # tok/s so far stops there (PRUNED, status "stopped"); 0 never stops a trial.
    early_stop: float = EARLY_STOP
    # Covering trials (autotune.coverage) after the seeds, up to half of --trials, until every knob value of
    # the space has been measured; False: the sampler draws every trial.
    cover: bool = True
    # Test-only: (selector, fault) pairs (autotune.worker.faults); honoured by a worker only when its
    # environment has AUTOTUNE_ALLOW_FAULTS=1.
    faults: tuple = ()

    def __post_init__(self):
        if not isinstance(self.trials, int) or self.trials < 1:
            raise InputError(f"--trials must be at least 1, got {self.trials}")
        if not 0 <= self.min_agreement <= 1:
            raise InputError(f"--min-agreement is a share between 0 and 1, got {self.min_agreement}")
        if self.trial_timeout <= 0:
            raise InputError(f"--trial-timeout must be positive, got {self.trial_timeout}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError("--repeats must be at least 1 and --warmup at least 0")
        if self.max_retry < 0 or self.max_initial_failures < 1 or self.confirm < 0:
            raise InputError("--max-retry and --confirm must be at least 0, --max-initial-failures at least 1")
        if self.heartbeat_interval < 1 or self.grace_period < self.heartbeat_interval:
            raise InputError("--heartbeat-interval must be at least 1 s and --grace-period at least as long")
        if not self.study_name or "/" in self.study_name:
            raise InputError(f"--study must be a plain name (no '/'), got {self.study_name!r}")
        if not 0 <= self.early_stop < 1:
            raise InputError(f"--early-stop is a fraction of the best tok/s from 0 (never) to below 1, "
                             f"got {self.early_stop}")
        if self.vram is not None and (not isinstance(self.vram, int) or self.vram <= 0):
            raise InputError(f"--vram must be a positive number of bytes, got {self.vram!r}")

    def to_dict(self) -> dict:
        """JSON-ready: recorded in the study (`study create`), so that workers need only its name and storage."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["workload"] = self.workload.to_dict()
        data["faults"] = [list(item) for item in self.faults]
        return data

    @classmethod
    def from_dict(cls, data: dict, **changes) -> "SearchSettings":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["workload"] = Workload.from_dict(values["workload"])
        values["faults"] = tuple(tuple(item) for item in values.get("faults", ()))
        return cls(**{**values, **changes})

    @property
    def study_dir(self) -> Path:
        return Path(self.root) / self.study_name

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(self.root, self.study_name)


def default_storage_url(root: str | Path, study_name: str) -> str:
    return f"sqlite:///{Path(root) / (study_name + '.db')}"


def storage_label(url: str) -> str:
    """A storage as a study's folder records it: its kind and file name (or, for a server, its database)."""
    from autotune.storage import is_journal, is_sqlite, sqlite_path

    if is_journal(url):
        return f"journal file {Path(url).name}"
    if is_sqlite(url):
        return f"sqlite file {sqlite_path(url).name}"
    return f"database {url.rsplit('/', 1)[-1]} on a server"


def existing_study_url(storage: str | None, root: str | Path, study_name: str) -> str:
    """The storage URL of a study that must exist already (export, reconcile): a missing default SQLite
    file is an input error, not a new empty database."""
    from autotune.storage import sqlite_path

    url = storage or default_storage_url(root, study_name)
    if url.startswith("sqlite:///") and not sqlite_path(url).exists():
        raise InputError(f"no study database at {sqlite_path(url)}: run 'autotune search' first, "
                         "or give --storage / --root")
    return url


def default_study_name(model: str) -> str:
    if models.is_random(model):
        return "random-" + models.random_name(model)
    return Path(model.rstrip("/")).name or "study"


def resolve_model(model: str) -> str:
    """A local model folder becomes an absolute path (so workers and presets find it from anywhere); a hub id
    is kept; a `random:<architecture>` id (autotune.models) is kept once its architecture is known. A path
    that does not exist or holds no config.json is an input error."""
    if models.is_random(model):
        models.random_name(model)  # an unknown architecture is an input error here, before anything starts
        return model
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


def untold_candidate(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> Candidate | None:
    """The configuration of a trial not told yet (enqueued or running: its candidate is recorded only when it
    ends), from its enqueued (`fixed_params`) and drawn params; None where they make none of `space` (not
    drawn yet, or params of another space)."""
    params = {**(trial.system_attrs.get("fixed_params") or {}), **trial.params}
    try:
        with warnings.catch_warnings():  # FixedTrial warns of a value outside the space (enqueued from outside)
            warnings.simplefilter("ignore")
            return space.suggest(optuna.trial.FixedTrial(params))
    except Exception:  # nothing known about it
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
        self.invalid_in_a_row = 0  # invalid combinations drawn one after the other (stop_if_nothing_valid)
        self.cover_pool: list[Candidate] | None = None  # configurations the covering trials are chosen from

    # ---- setup -----------------------------------------------------------------------------------

    def prepare(self) -> optuna.Study:
        from autotune import environment

        s = self.settings
        base_space = self.base_space()  # fails fast on a bad file, before anything starts
        self.report("probe", device=s.device)
        self.environment = environment.probe(s.device)
        self.space = base_space.for_environment(
            self.environment["device"], batch_size=s.workload.batch_size, assistant=self.assistant,
            has_bf16=self.environment["has_bf16"], has_flash_attn=self.environment["has_flash_attn"],
            has_flex_attention=self.environment["has_flex_attention"],
            has_triton=self.environment.get("has_triton", False),
            has_bitsandbytes=self.environment.get("has_bitsandbytes", False),
            bnb_compileable=self.environment.get("bnb_compileable", False), random_weights=models.is_random(self.model))
        self.estimator = self.memory_estimator()
        self.study = self.open_study()
        return self.study

    def base_space(self) -> SearchSpace:
        return SearchSpace.load(self.settings.space)

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
            "settings": s.to_dict(),
        }

    def open_study(self) -> optuna.Study:
        s = self.settings
        storage = storage_for(s.storage_url, s.heartbeat_interval, s.grace_period, s.max_retry)
        if s.new_study:
            try:
                optuna.delete_study(study_name=s.study_name, storage=storage)
                self.report("deleted", study=s.study_name)
            except KeyError:
                pass
            if s.study_dir.exists():  # keep the old results, out of the new study's way
                aside = s.study_dir.with_name(f"{s.study_name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
                s.study_dir.rename(aside)
                self.report("moved_aside", path=str(aside))
        study = self.create_or_load(storage)
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
        self.claim_folder(study)
        return study

    def claim_folder(self, study: optuna.Study) -> None:
        """The study's folder (results by trial number, worker logs, the baseline reference) serves one study.
        Two studies of one name in other storages (a SQLite file and the journal file of `search --gpus`)
        would overwrite each other's results there, trial by trial (it happened on the H200): refused. The
        folder records its storage by kind and file name (not by path, so that a studies folder may move)."""
        folder = self.settings.study_dir
        mine = storage_label(self.settings.storage_url)
        marker = folder / FOLDER_FILE
        if marker.is_file():
            theirs = marker.read_text(encoding="utf-8").strip()
            if theirs != mine:
                raise InputError(
                    f"the folder {folder} holds the results of the study {self.settings.study_name!r} in another "
                    f"storage ({theirs}; this one is {mine}): resume that study with its own --storage, or give "
                    "another --study name or --root. If that storage was only renamed or moved, write "
                    f"'{mine}' into {marker}")
            return
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(mine + "\n", encoding="utf-8")

    def create_or_load(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        s = self.settings
        return optuna.create_study(study_name=s.study_name, storage=storage, sampler=self.sampler(),
                                   direction="maximize", load_if_exists=True)

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=self.settings.seed)

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

    def fail_stale_trials(self, wait: bool = False) -> None:
        """Fail RUNNING trials whose heartbeat stopped longer than the grace period ago (their
        orchestrator died) and enqueue their retry. With `wait`, first wait out the grace period of
        RUNNING trials that are not this process's, so none is left RUNNING."""
        deadline = time.monotonic() + self.settings.grace_period + self.settings.heartbeat_interval + 1
        told = False
        while True:
            before = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            optuna.storages.fail_stale_trials(self.study)
            running = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            for number in sorted(before - running):
                self.report("stale", number=number)
            if not wait or not running or time.monotonic() > deadline:
                return
            if not told:
                told = True
                from autotune.storage import is_journal

                self.report("waiting_stale", numbers=sorted(running), grace=self.settings.grace_period,
                            heartbeats=not is_journal(self.settings.storage_url))
            with interruptible():
                time.sleep(1)

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
        """Finished trials that count toward `--trials` (not the sampler's invalid combinations)."""
        return sum(map(counts_toward_trials, self.study.get_trials(deepcopy=False, states=FINISHED)))

    def run(self) -> optuna.Study:
        if self.study is None:
            self.prepare()
        self.reconcile()
        self.fail_stale_trials()
        self.enqueue_seeds()
        while self.finished_count() < self.settings.trials:
            self.step()
        self.fail_stale_trials(wait=True)
        return self.study

    def stop_if_nothing_valid(self, measurement: Measurement) -> None:
        """Invalid combinations cost nothing and do not count toward --trials; but a space whose rules leave
        (almost) nothing valid would have the sampler draw forever: stop after MAX_INVALID_IN_A_ROW."""
        self.invalid_in_a_row = self.invalid_in_a_row + 1 if measurement.failure_kind == "invalid_combination" else 0
        if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW:
            raise SpaceError(
                f"the sampler drew {self.invalid_in_a_row} invalid combinations in a row: the rules of the search "
                f"space {self.settings.space!r} leave (almost) no valid configuration; loosen its `invalid` rules "
                "or its knobs' values (`autotune estimate --space ...` lists the valid ones)")

    def enqueue_cover(self) -> None:
        """With nothing else queued, make the next trial a covering one (autotune.coverage) while knob values
        are unmeasured, and covering trials are fewer than half of --trials."""
        from autotune import coverage

        s = self.settings
        if not s.cover:
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return
        if sum(t.user_attrs.get("role") == "cover" for t in trials) >= s.trials // 2:
            return
        measured, failed = coverage.tally(self.space, coverage.ran_trials(trials))
        tried = {t.user_attrs.get("candidate_key") or Candidate.from_json(t.user_attrs["candidate"]).key()
                 for t in trials if t.user_attrs.get("candidate")}
        running = self.running_candidates(trials)
        tried |= {c.key() for c in running}
        if self.cover_pool is None:
            self.cover_pool = coverage.pool(self.space, s.seed, self.assistant)
        candidate = coverage.next_cover(self.space, self.cover_pool, measured, failed, tried,
                                        fits=lambda c: not self.over_budget(self.estimate_memory(c)),
                                        pending=running)
        if candidate is not None:
            self.study.enqueue_trial(self.space.params_of(candidate), user_attrs={"role": "cover"})

    def running_candidates(self, trials: list[optuna.trial.FrozenTrial]) -> list[Candidate]:
        """The configurations of the study's RUNNING trials (other workers' ones; their candidate is recorded
        only when they end), from their drawn and enqueued params."""
        running = (untold_candidate(self.space, t) for t in trials if t.state == TrialState.RUNNING)
        return [self.with_assistant(candidate) for candidate in running if candidate is not None]

    def with_assistant(self, candidate: Candidate) -> Candidate:
        """The configuration as this study runs it: assisted decoding with the study's assistant model."""
        return replace(candidate, assistant=self.assistant) if candidate.decoding == "assisted" else candidate

    def step(self) -> Measurement:
        """Ask for one trial, run it, and stop the study if it shows that nothing can progress."""
        check_interrupt()  # a Ctrl-C / SIGTERM noted between trials stops here, before a trial is asked for
        self.enqueue_cover()
        trial = self.study.ask()
        measurement = self.judge(trial, self.run_trial(trial))
        self.stop_if_nothing_valid(measurement)
        return measurement

    def judge(self, trial: optuna.Trial, measurement: Measurement) -> Measurement:
        """Stop the study (SystemicFailureError) where this trial's result shows that nothing can progress."""
        if measurement.status == "oom" and trial.user_attrs.get("role") == "baseline" \
                and not self.reference_path().exists():
            where = "the --vram budget" if self.settings.vram else "memory"
            raise SystemicFailureError(
                f"the baseline (trial {trial.number}) does not fit in {where}: {measurement.message}. "
                "Every trial is compared with it, so it must run" + (": raise --vram" if self.settings.vram else ""))
        if measurement.status in TRANSIENT:
            self.stop_if_systemic(trial, measurement)
        return measurement

    def stop_if_systemic(self, trial: optuna.Trial, measurement: Measurement) -> None:
        """The study cannot make progress when its baseline fails, or when the first
        `--max-initial-failures` configurations launched after it all failed (nothing has run at all). A
        retry of a configuration is not a configuration of its own: the seed recipe crashing and crashing
        again on its retry says nothing about the others (seen on the H200)."""
        if trial.user_attrs.get("role") == "baseline":
            raise SystemicFailureError(
                f"the baseline (trial {trial.number}) failed, so nothing can be compared with it: "
                f"{measurement.failure_kind}: {measurement.message}. Check the model and device; "
                f"the worker log is {self.trial_dir(trial.number) / 'worker.log'}")
        others = [t for t in self.study.get_trials(deepcopy=False, states=FINISHED)
                  if t.user_attrs.get("role") != "baseline"]
        if any(t.user_attrs.get("status") in ("ok", "oom", "unsupported") for t in others):
            return
        failed = {t.user_attrs.get("candidate_key") or t.number for t in others if t.state == TrialState.FAIL}
        if len(failed) >= self.settings.max_initial_failures:
            raise SystemicFailureError(
                f"the first {len(failed)} configurations after the baseline all failed (last: "
                f"{measurement.failure_kind}: {measurement.message}); stopping instead of spending more time. "
                f"Worker logs are under {self.settings.study_dir / 'trials'}")

    def trial_dir(self, number: int) -> Path:
        return self.settings.study_dir / "trials" / f"{number:05d}"

    def result_path(self, number: int) -> Path:
        return result_path(self.settings.study_dir, number)

    def reference_path(self) -> Path:
        return self.settings.study_dir / "baseline.pt"

    def run_trial(self, trial: optuna.Trial) -> Measurement:
        s = self.settings
        role = trial.user_attrs.get("role", "search")
        if role == "search":
            trial.set_user_attr("role", role)
        candidate, outside = self.suggest(trial)
        candidate = self.with_assistant(candidate)
        self.report("start", number=trial.number, total=s.trials, role=role, candidate=candidate)
        duplicate_of = None
        estimate = self.estimate_memory(candidate)
        with Heartbeat(self.study._storage, trial._trial_id):
            reason = outside or self.space.invalid_reason(candidate)
            if reason is not None:
                measurement = Measurement.failed("unsupported", "invalid_combination", reason)
            elif self.over_budget(estimate) and role != "baseline":
                measurement = Measurement.failed("oom", "over_budget", over_budget_message(estimate, s.vram))
            else:
                duplicate_of, measurement = self.earlier_measurement(candidate, trial)
                if measurement is None:
                    try:
                        measurement = self.launch(trial.number, role, candidate)
                    except (KeyboardInterrupt, SystemExit) as stop:
                        # Ctrl-C / SIGTERM: the launcher killed the worker; mark the trial and stop.
                        how = "SIGTERM" if isinstance(stop, SystemExit) else "Ctrl-C"
                        self.record(trial, candidate, Measurement.failed(
                            "error", "interrupted", f"the study was stopped ({how}) during this trial"), None)
                        raise
            if estimate is not None:
                measurement = replace(measurement, estimated_memory_bytes=estimate.total,
                                      memory_estimate=estimate.to_dict())
            self.record(trial, candidate, measurement, duplicate_of)
        self.report("end", number=trial.number, total=s.trials, role=role, candidate=candidate,
                    measurement=measurement, duplicate_of=duplicate_of, best=self.best_value())
        return measurement

    def suggest(self, trial: optuna.Trial) -> tuple[Candidate, str | None]:
        """The trial's Candidate, and why it cannot run where a trial enqueued from outside (optuna's
        enqueue_trial) fixes values that this study's space does not take on this machine: a value it does
        not hold, or one of a knob whose condition does not hold. That trial is recorded as an invalid
        combination (it costs nothing and does not count), neither a crash of the study nor silently another
        configuration."""
        fixed = self.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params") or {}
        try:
            candidate = self.space.suggest(trial)
        except ValueError as error:
            if not fixed:
                raise
            try:
                candidate = Candidate(**{k: v for k, v in fixed.items() if k in KNOBS})
            except (TypeError, ValueError, CandidateError):
                candidate = Candidate()
            left_out = "; ".join(f"{knob}={value}: {why}" for knob, value, why in self.space.left_out
                                 if fixed.get(knob) == value)
            return candidate, (f"an enqueued value is not in this study's search space ({error})"
                               + (f"; left out on this machine: {left_out}" if left_out else ""))
        ignored = {k: v for k, v in fixed.items() if k in KNOBS and getattr(candidate, k) != v}
        if ignored:
            return candidate, ("enqueued values that this study's search space does not take here (a knob whose "
                               f"condition does not hold): {ignored}")
        return candidate, None

    def launch(self, number: int, role: str, candidate: Candidate, job_name: str | None = None) -> Measurement:
        s = self.settings
        job_dir = s.study_dir / "trials" / job_name if job_name else self.trial_dir(number)
        job = Job(model=self.model, candidate=candidate, workload=s.workload, device=self.environment["device"],
                  role="baseline" if role == "baseline" else "candidate",
                  reference_path=str(self.reference_path().resolve()),
                  result_path=str(job_dir.resolve() / "result.json"),
                  repeats=s.repeats, warmup=s.warmup, trial_number=number,
                  fault=None if job_name else fault_for(s.faults, number, candidate), budget_bytes=s.vram,
                  stop_below=None if job_name or role == "baseline" else self.stop_below())
        if role != "baseline" and not self.reference_path().exists():
            return Measurement.failed("error", "no_baseline", f"the baseline reference {self.reference_path()} "
                                      "is missing; start the study over with --new-study")
        env = {"TORCHINDUCTOR_CACHE_DIR": str((s.study_dir / "inductor-cache").resolve())}

        def on_phase(phase: str) -> None:
            self.report("phase", number=number, role=role, phase=phase, best=self.best_value())

        # phases of trials only: a confirmation run (job_name) is reported as a whole by confirm_best
        return launch(job, job_dir, s.trial_timeout, env=env, on_phase=None if job_name else on_phase)

    def stop_below(self) -> float | None:
        """Decode tok/s under which a trial stops early: `--early-stop` times the best so far (None: no
        best yet, or early stopping off). Confirmation runs and the baseline always run to the end."""
        best = self.best_value()
        if not self.settings.early_stop or not best:
            return None
        return self.settings.early_stop * best

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
        if faults.prescreen_disabled():  # tests only: let a real out-of-memory error happen in the worker
            return False
        return self.settings.vram is not None and estimate is not None and estimate.total > self.settings.vram

    def earlier_measurement(self, candidate: Candidate, trial: optuna.Trial | None = None
                            ) -> tuple[int | None, Measurement | None]:
        """A finished trial of the same effective configuration, whose result is reused (not re-measured):
        a COMPLETE one (or one stopped early: PRUNED), or the last FAIL of a configuration that has used up its retries. Its result file,
        or, where another host measured it, the figures recorded in the trial."""
        key = candidate.key()
        same = [t for t in self.study.get_trials(deepcopy=False, states=FINISHED)
                if t.user_attrs.get("candidate_key") == key and t.user_attrs.get("duplicate_of") is None]
        if trial is not None:
            same = [t for t in same if self.may_reuse(t, trial.user_attrs.get("role", "search"))]
        complete = [t for t in same if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        failed = [t for t in same if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "interrupted"]
        earlier = complete[:1] or (failed[-1:] if len(failed) > self.settings.max_retry else [])
        for t in earlier:
            record = self.records().load(t.number) or (t.user_attrs if "status" in t.user_attrs else None)
            if record is not None:
                return t.number, Measurement.from_dict(record)
        return None, None

    def may_reuse(self, earlier: optuna.trial.FrozenTrial, role: str) -> bool:
        """Whether a trial of this role may take the result of `earlier` (same configuration): a baseline
        only a baseline's, which made the reference."""
        return role != "baseline" or earlier.user_attrs.get("role") == "baseline"

    def record(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Write the measurement to disk first, then tell Optuna. A trial failed meanwhile from elsewhere
        cannot be told: its measurement stays on disk and is reconciled at once."""
        records = self.records()
        records.save(trial.number, candidate, m, duplicate_of, trial.params)
        try:
            records.tell(trial, candidate, m, duplicate_of)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
            if self.study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                raise
            self.report("lost_tell", number=trial.number, error=f"{type(exc).__name__}: {exc}")
            records.reconcile()

    def records(self) -> Records:
        s = self.settings
        return Records(self.study, s.study_dir, s.min_agreement, s.max_retry, s.grace_period, self.report)

    def reconcile(self) -> list[int]:
        return self.records().reconcile()

    # ---- the best configuration, confirmed ---------------------------------------------------------

    def confirm_best(self) -> dict | None:
        """Re-measure the best feasible configuration `--confirm` times in fresh processes; the
        coefficient of variation of decode tok/s says whether the measurement is stable (R23). Kept in the
        study after every run (reused while the best trial stays the same: a study stopped during its
        confirmations resumes them where they stopped) and carried into the preset."""
        n = self.settings.confirm
        try:
            best = best_feasible_trial(self.study.get_trials(deepcopy=False))
        except Exception:
            return None
        earlier = self.study.user_attrs.get(STABILITY_ATTR)
        same = bool(earlier) and earlier.get("trial") == best.number
        if n == 0 or (same and len(earlier.get("runs", [])) >= n):
            return earlier
        candidate = Candidate.from_json(best.user_attrs["candidate"])
        values = list(earlier["runs"]) if same else []
        self.report("confirm", number=best.number, runs=n - len(values))
        for i in range(len(values), n):
            m = self.launch(best.number, "confirm", candidate, job_name=f"confirm-{best.number:05d}-{i}")
            values.append(m.decode_tokens_per_s if m.ok else None)
            stability = self.stability(best, values, n)
            self.study.set_user_attr(STABILITY_ATTR, stability)
        self.report("confirmed", **stability)
        return stability

    @staticmethod
    def stability(best, values: list[float | None], n: int) -> dict:
        """The confirmations so far of trial `best` out of `n`: their median and coefficient of variation;
        stable once all `n` ran with a CV under STABLE_CV."""
        measured = [v for v in values if v is not None]
        cv = statistics.pstdev(measured) / statistics.fmean(measured) if len(measured) >= 2 else None
        return {"trial": best.number, "runs": values, "recorded": best.value,
                "median": statistics.median(measured) if measured else None, "cv": cv,
                "stable": cv is not None and cv < STABLE_CV and len(measured) == n}

    def best_value(self) -> float | None:
        try:
            return best_feasible_trial(self.study.get_trials(deepcopy=False)).value
        except Exception:
            return None

    # ---- export ----------------------------------------------------------------------------------

    def confirm_and_export(self, out: str | Path | None = None) -> Path:
        """The preset, then the confirmations (`confirm_best`), then the preset again with their stability:
        a session that ends during the confirmations keeps a preset, and a rerun resumes them."""
        if self.settings.confirm:
            self.export(out)
            self.confirm_best()
        return self.export(out)

    def export(self, out: str | Path | None = None) -> Path:
        return export_study(self.study, out or default_preset_path(self.settings.root, self.settings.study_name),
                            self.settings.study_dir)


def reconcile_study(study_name: str, storage_url: str, root: str | Path, grace_period: int = 60,
                    report: Callable[..., None] | None = None) -> list[int]:
    """`autotune reconcile`: import results that were written but never told, without running anything."""
    study = load_study(study_name, storage_url)
    attrs = study.user_attrs.get(CONFIG_ATTR)
    if attrs is None:
        raise InputError(f"study {study_name!r} was not made by autotune")
    return Records(study, Path(root) / study_name, attrs["min_agreement"], 0, grace_period, report).reconcile()


def default_preset_path(root: str | Path, study_name: str) -> Path:
    return Path(root) / f"{study_name}.preset.json"


def load_study(study_name: str, storage_url: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage_for(storage_url, heartbeat_interval=None))
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
    measurement = Records.read(study_dir, number) or dict(best.user_attrs)
    stability = study.user_attrs.get(STABILITY_ATTR)
    if stability and stability.get("trial") in (best.number, number):
        measurement["stability"] = stability
    return preset_from_trial(best, attrs, measurement).write(out)

