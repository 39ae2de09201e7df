"""The fault tests' fixture: a working folder that no worker outlives."""

from __future__ import annotations

import os
import shlex
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from faultkit import worker_processes


@pytest.fixture
def workdir(tmp_path) -> Path:
    yield tmp_path
    for proc in worker_processes(tmp_path):  # never leave a worker behind, whatever a test did
        proc.kill()


def postgres_setting(name: str) -> str:
    """An environment variable that .ci/run exports for the PostgreSQL tests: without it they are skipped
    here, and fail in CI (CI=true), where the server must be there."""
    value = os.environ.get(name)
    if not value:
        message = f"{name} is not set: .ci/run installs PostgreSQL and sets it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return value


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the test server (AUTOTUNE_TEST_POSTGRES_URL), dropped afterwards."""
    import psycopg

    admin = postgres_setting("AUTOTUNE_TEST_POSTGRES_URL")
    name = f"autotune_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(admin)._replace(path="/" + name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_control() -> list[str]:
    """The command that stops and starts the test server (AUTOTUNE_TEST_POSTGRES_CTL + stop/start)."""
    return shlex.split(postgres_setting("AUTOTUNE_TEST_POSTGRES_CTL"))
