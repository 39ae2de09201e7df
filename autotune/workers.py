"""Several workers on one study: `autotune study create`, `autotune worker`, `autotune search --gpus`.

A worker is the study's loop (autotune.study.Tuner) run by one process per GPU, on one host or many,
against one shared storage (../shared/RELIABILITY.md R12-R15):

- `create_study` makes the study once, with everything a worker needs recorded in it (settings, search
  space, workload, device) and the baseline and the seed recipe enqueued; workers need only its name and
  storage, and one that finds no study says to create it.
- `StudyWorker` joins it and runs trials until the study's total budget is reached over all workers
  (Optuna's `MaxTrialsCallback(n, states=None)` rule: every trial counts, whatever its state), with
  heartbeats on RDB storage so that a dead worker's trial is failed and retried by another.
- Each worker waits for the study's one baseline instead of measuring its own: the reference is shared
  through the study (a user attribute per machine), so a worker on another host fetches it; a candidate
  that another worker is measuring right now is waited for and reused (`duplicate_of`), not measured twice.
- `run_local_workers` starts one worker process per device on this host (each sees one device through
  CUDA_VISIBLE_DEVICES) and watches them: with a journal file there are no heartbeats, so a worker that
  dies has its running trial failed and retried by the parent, and is restarted.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from autotune.candidate import Candidate
from autotune.environment import fingerprint
from autotune.errors import InputError, StorageUnavailableError, SystemicFailureError, WorkerExitError
from autotune.interrupt import interruptible
from autotune.measurement import Measurement
from autotune.records import Records, counts_toward_trials
from autotune.space import SearchSpace
from autotune.storage import is_journal, is_shareable, storage_for
from autotune.study import CONFIG_ATTR, SearchSettings, Tuner

WORKER_ATTR = "worker"  # trial user attr: which worker runs it ({host, pid, gpu})
MACHINE_ATTR = "machine"  # trial user attr: the fingerprint of the machine type it ran on (autotune.environment)
REFERENCE_ATTR = "baseline_reference:"  # study user attr prefix, + machine fingerprint: the reference file, base64
POLL_S = 1.0
OUTAGE_RETRY_S = 2.0
CONFIG_EXIT_CODES = (2, 3, 4, 5)  # a worker that stopped for these would stop again: not restarted


# ---- the study, made once ------------------------------------------------------------------------

class StudyCreator(Tuner):
    """Makes the study and enqueues its seeds, once: of several `study create` started at the same time,
    only the one that made the study enqueues the baseline; the others find it, with the same settings."""

    created = False

    def create_or_load(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        try:
            study = optuna.create_study(study_name=self.settings.study_name, storage=storage,
                                        sampler=self.sampler(), direction="maximize")
            self.created = True
            return study
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=self.settings.study_name, storage=storage, sampler=self.sampler())


def create_study(settings: SearchSettings, report: Callable[..., None] | None = None) -> StudyCreator:
    """`autotune study create`: the study with its settings recorded and its seeds enqueued. Running it
    again with the same settings changes nothing; with other settings it is refused (StudyMismatchError)."""
    creator = StudyCreator(settings, report)
    creator.prepare()
    if creator.created or settings.new_study:
        creator.enqueue_seeds()
    else:
        record_budget(creator.study, settings.trials, report)
    return creator


def record_budget(study: optuna.Study, trials: int, report: Callable[..., None] | None = None) -> None:
    """A study made before with another --trials: the workers that join it from now on run to the new total
    (they read it from the study), as a resumed `autotune search` does. Before, `search --gpus` said "a
    total budget of 36" and its workers stopped at the 30 recorded."""
    attrs = study.user_attrs.get(CONFIG_ATTR) or {}
    before = attrs.get("settings", {}).get("trials")
    if before is None or before == trials:
        return
    study.set_user_attr(CONFIG_ATTR, {**attrs, "settings": {**attrs["settings"], "trials": trials}})
    if report is not None:
        report("budget_changed", before=before, after=trials)


def recorded_settings(study_name: str, storage_url: str, **changes) -> SearchSettings:
    """The settings a study was made with (by `study create` or `search`), for a worker that joins it."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_for(storage_url, heartbeat_interval=None))
    except KeyError:
        raise InputError(f"no study named {study_name!r} in {storage_url}: create it first with "
                         f"'autotune study create --study {study_name} --storage {storage_url} --model ...' "
                         "(and the search options), then start the workers") from None
    attrs = study.user_attrs.get(CONFIG_ATTR) or {}
    if "settings" not in attrs:
        raise InputError(f"study {study_name!r} in {storage_url} records no autotune settings (it was made by "
                         "another tool or an older autotune): create a new one with 'autotune study create'")
    return SearchSettings.from_dict(attrs["settings"], study_name=study_name, storage=storage_url,
                                    new_study=False, **changes)


# ---- one worker ----------------------------------------------------------------------------------

def boot_id() -> str | None:
    """This boot of this host (Linux), so that a worker of a host that was replaced or rebooted since, but
    has the same name (every lent GPU machine is called `vm`), is known to be gone."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def worker_identity(gpu: str | None = None) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "gpu": gpu, "boot": boot_id()}


def process_gone(who: dict) -> bool:
    """Whether the worker `who` (a trial's WORKER_ATTR) of this host runs no more: this host has booted
    since, or its pid is this process's, or no process has it, or the process that has it is no autotune
    worker (a fresh machine reuses the pids of the one it replaced). Another host's worker is not judged."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return False
    now = boot_id()
    if who.get("boot") and now and who["boot"] != now:
        return True
    try:
        pid = int(who["pid"])
        if pid == os.getpid():
            return True
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError, OverflowError):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # no /proc (not Linux): alive, as far as can be told
        return False
    return not (b"autotune.cli" in command and b"worker" in command)


class StudyWorker(Tuner):
    """A Tuner that joins a study made beforehand and shares it with other workers."""

    def __init__(self, settings: SearchSettings, report: Callable[..., None] | None = None,
                 gpu: str | None = None):
        super().__init__(settings, report)
        self.identity = worker_identity(gpu)
        self.recorded: dict = {}

    # ---- joining ---------------------------------------------------------------------------------

    def base_space(self) -> SearchSpace:
        """The space the study was made with (recorded in it), not a file that may exist on one host only."""
        study = optuna.load_study(study_name=self.settings.study_name,
                                  storage=storage_for(self.settings.storage_url, heartbeat_interval=None))
        self.recorded = study.user_attrs[CONFIG_ATTR]
        return SearchSpace.from_dict(self.recorded["space"])

    def create_or_load(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        return optuna.load_study(study_name=self.settings.study_name, storage=storage, sampler=self.sampler())

    def sampler(self) -> optuna.samplers.BaseSampler:
        """TPE with the constant liar (running trials count as bad ones, so parallel workers spread out),
        seeded differently in every worker: the same seed everywhere would propose the same points."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(constant_liar=True, seed=None)

    # ---- the loop --------------------------------------------------------------------------------

    def run(self) -> optuna.Study:
        """Run trials until the study's total budget is reached over all its workers; trials enqueued
        (retries) are still run, so none is left WAITING."""
        if self.study is None:
            self.prepare()
        self.reconcile()
        self.fail_stale_trials()
        while True:
            if self.budget_reached() and not self.waiting():
                self.fail_stale_trials(wait=True)  # a dead worker's trial: failed and its retry enqueued
                if not self.waiting():
                    return self.study
            self.step()

    def budget_reached(self) -> bool:
        """Optuna's MaxTrialsCallback(n, states=None) rule: every trial of the study counts, whichever
        worker runs it, but the sampler's invalid combinations (`counts_toward_trials`). Workers that check at the same moment may each start one more (at most n +
        workers - 1 in all)."""
        return sum(map(counts_toward_trials, self.study.get_trials(deepcopy=False))) >= self.settings.trials

    def waiting(self) -> list:
        return self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

    def run_trial(self, trial: optuna.Trial) -> Measurement:
        trial.set_user_attr(WORKER_ATTR, self.identity)
        trial.set_user_attr(MACHINE_ATTR, self.machine)
        return super().run_trial(trial)

    def check_same_study(self, existing: dict, attrs: dict) -> None:
        """As for one process, except the machine: a worker may run on another type of device than the
        one the study was made on (it then measures a baseline of its own, see wait_for_reference). Its
        knobs must be the same: a device that lacks one (bfloat16, say) is refused by the space check."""
        super().check_same_study(existing, {**attrs, "machine_fingerprint": existing.get("machine_fingerprint")})

    # ---- not measuring twice -------------------------------------------------------------------------

    def earlier_measurement(self, candidate: Candidate, trial: optuna.Trial | None = None
                            ) -> tuple[int | None, Measurement | None]:
        """As for one worker, and also: the same configuration running now in an earlier trial of another
        worker is waited for, then reused."""
        if trial is not None:
            role = trial.user_attrs.get("role", "search")
            trial.set_user_attr("candidate_key", candidate.key())  # seen by the other workers from now on
            if role != "baseline":
                # first the reference: a search trial of the baseline's configuration then reuses the
                # baseline's result instead of measuring it again
                self.wait_for_reference(trial.number)
            self.wait_for_same_running(candidate.key(), trial.number, role)
        return super().earlier_measurement(candidate, trial)

    def may_reuse(self, earlier: optuna.trial.FrozenTrial, role: str) -> bool:
        """A baseline reuses only a baseline of the same type of machine: its reference is made there."""
        return super().may_reuse(earlier, role) and (role != "baseline" or self.machine_of(earlier) == self.machine)

    def wait_for_same_running(self, key: str, number: int, role: str) -> None:
        deadline = time.monotonic() + self.settings.trial_timeout + self.settings.grace_period
        told = False
        while time.monotonic() < deadline:
            same = trials_to_wait_for(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)),
                                      key, number, role, self.machine)
            if not same:
                return
            if not told:
                told = True
                self.report("waiting_same", number=number, other=same[0])
            with interruptible():
                time.sleep(POLL_S)
            self.fail_stale_trials()  # a dead worker's trial is not waited for

    # ---- one baseline per type of machine ---------------------------------------------------------
    # Trial 0 is the study's baseline, measured once by whichever worker takes it. A worker on another
    # type of device (the machine fingerprint: device and its name) is not compared with it: it measures a
    # baseline of its own, once for all the workers of that type, and shares its reference the same way.

    @property
    def machine(self) -> str:
        return fingerprint(self.environment)

    def reference_path(self) -> Path:
        """The study's machine keeps baseline.pt; another type of machine has a file of its own (two types
        of GPU in one host share the study's folder)."""
        if self.machine == self.recorded.get("machine_fingerprint"):
            return super().reference_path()
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.machine)
        return self.settings.study_dir / f"baseline-{slug}.pt"

    def machine_of(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """The machine type a trial ran on; None for one not started yet (it may become anyone's). A
        finished trial that does not say (run by a single `search`) ran on the study's machine."""
        if MACHINE_ATTR in trial.user_attrs:
            return trial.user_attrs[MACHINE_ATTR]
        return None if trial.state in (TrialState.WAITING, TrialState.RUNNING) else self.recorded.get(
            "machine_fingerprint")

    def own_baselines(self) -> list:
        """The baseline trials that are, or may become, this machine type's."""
        return [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("role") == "baseline"
                and self.machine_of(t) in (None, self.machine)]

    def measure_own_baseline(self) -> Measurement:
        """A baseline trial for this type of machine, made and run here at once (not enqueued: a worker on
        another type could take it)."""
        storage = self.study._storage
        trial_id = storage.create_new_trial(self.study._study_id)  # RUNNING, this worker's
        storage.set_trial_system_attr(trial_id, "fixed_params", self.space.params_of(Candidate()))
        trial = optuna.Trial(self.study, trial_id)
        trial.set_user_attr("role", "baseline")
        self.report("own_baseline", number=trial.number, machine=self.machine)
        return self.judge(trial, self.run_trial(trial))

    def launch(self, number: int, role: str, candidate: Candidate, job_name: str | None = None) -> Measurement:
        if role != "baseline":
            self.wait_for_reference(number)
        return super().launch(number, role, candidate, job_name)

    def wait_for_reference(self, number: int) -> None:
        """A candidate is compared with the baseline of its type of machine: wait until it is measured (by
        whichever worker took it), taking its reference from the study when this host has no copy. Where
        the study has none for this type of machine, measure it here first."""
        deadline = time.monotonic() + self.settings.trial_timeout + self.settings.grace_period
        told = False
        while not self.reference_path().exists() and not self.fetch_reference():
            if not self.own_baselines():
                self.measure_own_baseline()
                deadline = time.monotonic() + self.settings.trial_timeout + self.settings.grace_period
                continue
            self.stop_if_baseline_failed()
            if time.monotonic() > deadline:
                return  # launch() records the missing reference as this trial's failure
            if not told:
                told = True
                self.report("waiting_baseline", number=number)
            with interruptible():
                time.sleep(POLL_S)
            self.fail_stale_trials()

    def fetch_reference(self) -> bool:
        encoded = self.study._storage.get_study_user_attrs(self.study._study_id).get(REFERENCE_ATTR + self.machine)
        if encoded is None:
            return False
        path = self.reference_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_bytes(base64.b64decode(encoded))
        partial.replace(path)
        self.report("fetched_baseline", path=str(path))
        return True

    def publish_reference(self) -> None:
        self.study.set_user_attr(REFERENCE_ATTR + self.machine,
                                 base64.b64encode(self.reference_path().read_bytes()).decode("ascii"))

    def baseline_pending(self) -> tuple[bool, list]:
        """Whether this machine type's baseline is still to come (enqueued, running, or measured with its
        reference on its way), and its baseline trials."""
        baselines = self.own_baselines()
        return any(t.state in (TrialState.WAITING, TrialState.RUNNING) or
                   (t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "ok") for t in baselines), baselines

    def stop_if_baseline_failed(self) -> None:
        pending, baselines = self.baseline_pending()
        if not pending:
            # a dead worker's baseline is failed first and its retry enqueued just after: look again
            with interruptible():
                time.sleep(2 * POLL_S)
            pending, baselines = self.baseline_pending()
        if pending:
            return
        last = baselines[-1] if baselines else None
        raise SystemicFailureError(
            "the study's baseline " + (f"(trial {last.number}) failed ({last.user_attrs.get('failure_kind')}: "
                                       f"{last.user_attrs.get('message')})" if last else "was never enqueued")
            + ", so nothing can be compared with it: check the model and device, then make the study again "
            "with 'autotune study create --new-study'")

    def record(self, trial: optuna.Trial, candidate: Candidate, m: Measurement, duplicate_of: int | None) -> None:
        """Write the measurement, then tell the study; a storage outage (a database server restarting) is
        outlasted: the result is on disk already, and the tell is tried again until the server is back."""
        outlast_outage(lambda: super(StudyWorker, self).record(trial, candidate, m, duplicate_of),
                       self.settings.trial_timeout, lambda: self.report("storage_down", number=trial.number))
        if trial.user_attrs.get("role") == "baseline" and m.ok and self.reference_path().exists():
            outlast_outage(self.publish_reference, self.settings.trial_timeout, lambda: None)


def trials_to_wait_for(running: list, key: str, number: int, role: str, machine: str) -> list[int]:
    """The running trials (earlier than `number`, same configuration) whose result a trial waits for and
    reuses. A baseline waits for baselines of its type of machine only: a search trial of the same
    configuration cannot finish before the baseline does (it is compared with the baseline's reference),
    so waiting for it would be a deadlock, and its result is no reference; nor is another machine's."""
    return [t.number for t in running if t.number < number and t.user_attrs.get("candidate_key") == key
            and (role != "baseline" or (t.user_attrs.get("role") == "baseline"
                                        and t.user_attrs.get(MACHINE_ATTR) == machine))]


def storage_unavailable(exc: BaseException) -> bool:
    """An error of a storage that cannot be reached (not a wrong request)."""
    import sqlalchemy.exc

    return isinstance(exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                            sqlalchemy.exc.InterfaceError))


def outlast_outage(action: Callable[[], None], limit_s: float, on_outage: Callable[[], None]) -> None:
    """Run `action`, again every few seconds while the storage cannot be reached, for at most `limit_s`;
    then StorageUnavailableError (the measurement is on disk: `autotune reconcile` imports it later)."""
    deadline = time.monotonic() + limit_s
    told = False
    while True:
        try:
            return action()
        except Exception as exc:
            if not storage_unavailable(exc):
                raise
            if time.monotonic() > deadline:
                raise StorageUnavailableError(
                    f"the storage could not be reached for {limit_s:g} s ({type(exc).__name__}); the measurement "
                    "is saved under the study's results/: once the storage is back, start the worker again or "
                    "run 'autotune reconcile' to import it") from None
            if not told:
                told = True
                on_outage()
            with interruptible():
                time.sleep(OUTAGE_RETRY_S)


def join_study(study_name: str, storage_url: str, root: str = "studies", gpu: str | None = None,
               report: Callable[..., None] | None = None, **changes) -> StudyWorker:
    """`autotune worker`: a worker for a study made by `autotune study create`."""
    settings = recorded_settings(study_name, storage_url, root=root, **changes)
    worker = StudyWorker(settings, report, gpu=gpu)
    worker.prepare()
    return worker


# ---- several workers on this host (search --gpus) ------------------------------------------------

def parse_gpus(text: str) -> tuple[str, ...]:
    gpus = tuple(part.strip() for part in text.split(",") if part.strip())
    if not gpus or len(set(gpus)) != len(gpus) or not all(g.isdigit() for g in gpus):
        raise InputError(f"--gpus takes distinct device indices separated by commas (0,1,2,3), got {text!r}")
    return gpus


def shared_storage_url(storage: str | None, root: str, study_name: str, workers: int) -> str:
    """Where the workers of `search --gpus` meet: the given PostgreSQL URL (or journal file), by default a
    journal file beside the study's folder. SQLite is refused for more than one worker."""
    url = storage or str(Path(root) / f"{study_name}.log")
    if workers > 1 and not is_shareable(url):
        raise InputError(f"{workers} workers cannot share the SQLite storage {url}: SQLite is not made for "
                         "parallel optimization (Optuna's own advice). Give a PostgreSQL URL "
                         "(--storage postgresql://user:password@host/db), or leave --storage out for a "
                         f"journal file ({Path(root) / (study_name + '.log')}) that workers on this host share")
    return url


@dataclass
class LocalWorker:
    gpu: str
    proc: subprocess.Popen
    restarts: int = 0


def worker_command(study_name: str, storage_url: str, root: str, gpu: str) -> list[str]:
    return [sys.executable, "-m", "autotune.cli", "worker", "--study", study_name, "--storage", storage_url,
            "--root", root, "--gpu", gpu]


def start_worker(study_name: str, storage_url: str, root: str, gpu: str,
                 report: Callable[..., None]) -> subprocess.Popen:
    """One worker process; its output comes back line by line as `worker_line` events."""
    proc = subprocess.Popen(worker_command(study_name, storage_url, root, gpu), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def forward():
        for line in proc.stdout:
            report("worker_line", gpu=gpu, line=line.rstrip("\n"))

    threading.Thread(target=forward, daemon=True, name=f"worker-{gpu}-output").start()
    report("worker_started", gpu=gpu, pid=proc.pid)
    return proc


def fail_trials_of(study: optuna.Study, pid: int, max_retry: int) -> list[int]:
    """Fail the RUNNING trials of a worker process of this host that died, and enqueue their retries (what
    heartbeats do on RDB storage; a journal file has none)."""
    host = socket.gethostname()
    return fail_running_trials(study, lambda who: who.get("host") == host and who.get("pid") == pid, max_retry)


def fail_orphaned_trials(study: optuna.Study, max_retry: int) -> list[int]:
    """Before workers start on a journal file (no heartbeats): fail and retry the RUNNING trials whose worker
    of this host is gone, with the parent that watched it (the machine was taken back mid-study: on the H200,
    two such trials stayed RUNNING in the journal, and a worker that drew one's configuration would have
    waited for it). RDB storage has heartbeats for this, and other hosts' workers are theirs to judge."""
    return fail_running_trials(study, process_gone, max_retry)


def fail_running_trials(study: optuna.Study, whose: Callable[[dict], bool], max_retry: int) -> list[int]:
    """Fail the RUNNING trials whose worker (WORKER_ATTR) `whose` accepts, and enqueue their retries."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get(WORKER_ATTR)
        if not who or not whose(who):
            continue
        try:  # it may have ended meanwhile
            study._storage.set_trial_user_attr(t._trial_id, "failure_kind", "worker_died")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, study._storage.get_trial(t._trial_id))
        failed.append(t.number)
    return failed


def run_local_workers(settings: SearchSettings, gpus: tuple[str, ...], report: Callable[..., None],
                      max_restarts: int = 2) -> None:
    """Start one worker per device on the study (made already), watch them until all have stopped. A worker
    that died has its trial failed and retried and is restarted (at most `max_restarts` times); one that
    stopped for its input or a systemic failure is not. Raises WorkerExitError if any stopped that way."""
    url, study_name, root = settings.storage_url, settings.study_name, settings.root
    study = optuna.load_study(study_name=study_name, storage=storage_for(url, heartbeat_interval=None))
    if is_journal(url):
        # results written but never told are recorded first, then what is left running by gone workers failed
        Records(study, settings.study_dir, settings.min_agreement, settings.max_retry, settings.grace_period,
                report).reconcile()
        orphans = fail_orphaned_trials(study, settings.max_retry)
        if orphans:
            report("orphans_failed", failed=orphans)
    workers = [LocalWorker(gpu, start_worker(study_name, url, root, gpu, report)) for gpu in gpus]
    stopped: dict[str, int] = {}
    try:
        while len(stopped) < len(workers):
            for w in workers:
                code = w.proc.poll()
                if code is None or w.gpu in stopped:
                    continue
                failed = fail_trials_of(study, w.proc.pid, settings.max_retry)
                report("worker_stopped", gpu=w.gpu, code=code, failed=failed)
                unfinished = sum(map(counts_toward_trials, study.get_trials(deepcopy=False))) < settings.trials or \
                    study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                if code not in (0, *CONFIG_EXIT_CODES) and unfinished and w.restarts < max_restarts:
                    w.proc, w.restarts = start_worker(study_name, url, root, w.gpu, report), w.restarts + 1
                else:
                    stopped[w.gpu] = code
            with interruptible():
                time.sleep(0.2)
    except BaseException:  # Ctrl-C, SIGTERM: the workers stop too (they mark their trials failed)
        stop_workers(workers)
        raise
    bad = {gpu: code for gpu, code in stopped.items() if code != 0}
    if bad:
        code = next((c for c in bad.values() if c in CONFIG_EXIT_CODES), 1)
        raise WorkerExitError(f"worker(s) stopped with an error: {', '.join(f'gpu {g}: exit {c}' for g, c in bad.items())}"
                              "; their output is above. Rerun the same command to resume the study", code)


def stop_workers(workers: list[LocalWorker], grace_s: float = 30.0) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
