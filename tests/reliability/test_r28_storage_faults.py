"""R28: storage faults mid-run. A full disk while a trial runs (a real, small tmpfs the test mounts), the study
database removed while a search runs, a read-only study folder on resume: each stops the tool with one line
that says what happened and what to do (exit code 6, or 2 for a folder it cannot write); no measurement that
reached disk is lost; and a run never writes over the results of a study its storage does not have."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import optuna
import sqlalchemy.exc
from faultkit import load, run_search, running_trial_worker, start_search, worker_processes
from optuna.trial import TrialState

from autotune.config.settings import SearchSettings
from autotune.config.workload import Workload
from autotune.errors import StorageFaultError, StudyMismatchError
from autotune.tuner.storage_guard import storage_faults
from autotune.tuner.study import refuse_lost_study, start_over
from support import run_cli


def one_line_error(output: str) -> str:
    assert "Traceback" not in output, output
    return output


@pytest.fixture
def small_fs(workdir) -> Path:
    """`workdir/studies` on a tmpfs of 4 MiB that the test mounts (root only: CI runs as root)."""
    studies = workdir / "studies"
    studies.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(studies)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield studies
    for proc in worker_processes(workdir):
        proc.kill()
    subprocess.run(["umount", "-l", str(studies)], check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` to its last byte (unbuffered writes, smaller and smaller)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_r28_disk_full_while_a_trial_runs(workdir, small_fs):
    proc = start_search(workdir, 3, "--trial-timeout", "120", faults="1:slow8")
    running_trial_worker(workdir, 1)
    baseline = (small_fs / "r" / "results" / "trial-00000.json").read_bytes()
    filler = fill(small_fs)
    output = one_line_error(proc.communicate(timeout=300)[0])
    assert proc.returncode == 6, output
    assert "No space left on device" in output or "disk is full" in output, output
    assert "rerun the same command" in output
    assert (small_fs / "r" / "results" / "trial-00000.json").read_bytes() == baseline  # kept whole
    filler.unlink()
    resumed = run_search(workdir, 3)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = load(workdir).trials
    assert trials[0].state == TrialState.COMPLETE and json.loads(baseline)["status"] == "ok"
    assert all(t.state.is_finished() for t in trials)  # the interrupted trial ended too, none RUNNING
    assert [t.number for t in trials if t.params == trials[0].params and t.state == TrialState.COMPLETE] == [0]
    # the same studies folder, read-only (a read-only bind mount of it): a resume says so and how to go on
    readonly_root = workdir / "readonly"
    readonly_root.mkdir()
    subprocess.run(["mount", "--bind", str(small_fs), str(readonly_root)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly_root)], check=True)
        readonly = run_search(workdir, 4, "--root", "readonly", timeout=120)
    finally:
        subprocess.run(["umount", str(readonly_root)], check=False)
    assert readonly.returncode == 2, readonly.stdout + readonly.stderr
    assert "cannot write in" in one_line_error(readonly.stderr) and "Read-only file system" in readonly.stderr


@pytest.mark.slow
def test_r28_database_removed_while_a_search_runs(workdir):
    proc = start_search(workdir, 3, "--trial-timeout", "120", faults="1:slow8")
    running_trial_worker(workdir, 1)
    results = workdir / "studies" / "r" / "results"
    baseline = (results / "trial-00000.json").read_bytes()
    for path in (workdir / "studies").glob("r.db*"):
        path.unlink()
    output = one_line_error(proc.communicate(timeout=300)[0])
    assert proc.returncode == 6, output
    assert "restore the storage" in output and "studies/r/results" in output
    kept = sorted(p.name for p in results.iterdir())
    assert "trial-00000.json" in kept
    # a later run finds no such study in the (new) database: it refuses, and writes over nothing
    again = run_search(workdir, 3, timeout=120)
    assert again.returncode == 5, again.stdout + again.stderr
    assert "--new-study" in one_line_error(again.stderr) and "put that database back" in again.stderr
    assert sorted(p.name for p in results.iterdir()) == kept
    assert (results / "trial-00000.json").read_bytes() == baseline
    # starting over keeps the old folder aside
    fresh = run_search(workdir, 1, "--new-study")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    aside = [p for p in (workdir / "studies").iterdir() if p.name.startswith("r.replaced-")]
    assert len(aside) == 1 and (aside[0] / "results" / "trial-00000.json").read_bytes() == baseline


@pytest.mark.parametrize("fault,message", [
    (OSError(28, "No space left on device", "studies/r/results/trial-00003.json"), "No space left on device"),
    (OSError(30, "Read-only file system", "studies/r.db"), "Read-only file system"),
    (sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database or disk is full")), "disk is full"),
    (optuna.exceptions.StorageInternalError("attempt to write a readonly database"), "readonly database"),
])
def test_r28_storage_faults_become_one_line_with_what_to_do(fault, message):
    with pytest.raises(StorageFaultError) as stopped:
        with storage_faults("sqlite:///studies/r.db", "studies/r"):
            raise fault
    text = str(stopped.value)
    assert message in text and "rerun the same command" in text and "\n" not in text
    assert stopped.value.exit_code == 6
    with pytest.raises(ValueError):  # anything else is not a storage fault: it stays what it is
        with storage_faults("sqlite:///studies/r.db", "studies/r"):
            raise ValueError("a bug")


def test_r28_a_storage_without_the_study_never_gets_its_folder(tmp_path):
    settings = SearchSettings(model="m", workload=Workload(prompts=("p",)), study_name="r", root=str(tmp_path))
    results = tmp_path / "r" / "results"
    results.mkdir(parents=True)
    (results / "trial-00000.json").write_text("{}")
    (tmp_path / "r.preset.json").write_text("{}")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/r.db")
    with pytest.raises(StudyMismatchError, match="put that database back"):
        refuse_lost_study(settings, storage)
    start_over(settings, storage, lambda *a, **k: None)  # --new-study: both moved aside, nothing deleted
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "r" not in names and "r.preset.json" not in names
    assert any(n.startswith("r.replaced-") and n.endswith(".preset.json") for n in names)
    refuse_lost_study(settings, storage)  # an empty folder: nothing to protect


def test_r28_export_to_a_target_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli("export", "--study", "r", "-o", str(tmp_path / "file" / "p.json"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr
