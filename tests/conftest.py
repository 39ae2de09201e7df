"""Shared fixtures: the bundled model and the trained fixture models (../shared/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import BUNDLED_MODEL, SHARED_FIXTURES


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    return BUNDLED_MODEL


@pytest.fixture(scope="session")
def fixture_models() -> Path:
    if not (SHARED_FIXTURES / "codelm-12m" / "config.json").is_file():
        pytest.skip(f"trained fixture models not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
