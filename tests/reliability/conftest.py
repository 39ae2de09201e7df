"""The fault tests' fixture: a working folder that no worker outlives."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import worker_processes


@pytest.fixture
def workdir(tmp_path) -> Path:
    yield tmp_path
    for proc in worker_processes(tmp_path):  # never leave a worker behind, whatever a test did
        proc.kill()
