"""R27: an export target that cannot be written (its parent is a file, it is a folder of other files, its
folder is on a read-only filesystem or not writable) is refused before the first trial, with one line and exit code 2, not
after every trial with a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest
from faultkit import run_search

from autotune.errors import InputError
from autotune.tuner.storage_guard import check_export_target


def refused_before_any_trial(workdir, out, match: str) -> None:
    run = run_search(workdir, 2, "-o", str(out), timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert match in run.stderr and "Traceback" not in run.stderr
    assert not (workdir / "studies").exists()  # checked before the study was even opened


def test_r27_parent_is_a_file(workdir):
    (workdir / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_export_target(workdir / "file" / "p.json")
    refused_before_any_trial(workdir, workdir / "file" / "deeper" / "p.json", "is a file")


def test_r27_target_is_a_folder_of_other_files(workdir):
    """A folder target gets a model folder: one that holds other files is never replaced by it."""
    (workdir / "out").mkdir()
    (workdir / "out" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds other files"):
        check_export_target(workdir / "out")
    refused_before_any_trial(workdir, f"{workdir / 'out'}/", "holds other files")
    assert (workdir / "out" / "notes.txt").read_text() == "mine"


def test_r27_a_new_or_empty_folder_is_a_model_folder_target(workdir):
    (workdir / "empty").mkdir()
    check_export_target(workdir / "empty")
    check_export_target(f"{workdir / 'new'}/")
    assert not (workdir / "new").exists()


def test_r27_a_missing_folder_is_fine(workdir):
    check_export_target(workdir / "new" / "deeper" / "p.json")  # made when the preset is written
    assert not (workdir / "new").exists()


def test_r27_unwritable_folder(workdir):
    """As root permissions do not stop a write: a read-only tmpfs does (CI runs as root); otherwise chmod."""
    target = workdir / "ro"
    target.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    else:
        target.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write in"):
            check_export_target(target / "p.json")
        refused_before_any_trial(workdir, target / "p.json", "cannot write in")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(target)], check=True)
        else:
            target.chmod(0o700)
