"""Shared fixtures: the bundled model and the trained fixture models (../shared/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import BUNDLED_MODEL, SHARED_FIXTURES

# The suite compiles the same code (a model class's forward, the decode loops' step) for many models in one
# process, each model with its own module types (float, int8, stacked siblings): dynamo keeps a compiled
# entry per kind, and its default limit of 8 per code object was reached with fullgraph=True, a hard error.
# A worker or a loaded preset compiles one model per process.
torch._dynamo.config.recompile_limit = 64


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    return BUNDLED_MODEL


@pytest.fixture(scope="session")
def fixture_models() -> Path:
    if not (SHARED_FIXTURES / "codelm-12m" / "config.json").is_file():
        pytest.skip(f"trained fixture models not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
