"""Helpers shared by the tests (imported as `support`; fixtures stay in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "examples" / "models" / "codelm-4m"
SHARED_FIXTURES = Path(os.environ.get("AUTOTUNE_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SMALL_PROMPTS = ROOT / "tests" / "data" / "prompts.jsonl"
# Workers measured for their speed run one torch thread: with another process on this 2-core machine, two
# spinning threads made one run of the bundled model 15 times slower than the next.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package); benchmarks/ is put on sys.path
    so that one script may import another (profile_decode imports knobs)."""
    import importlib.util

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the installed `autotune` command as a user would, in `cwd`."""
    return subprocess.run([sys.executable, "-m", "autotune.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def graph_recorder(graphs: list):
    """A torch.compile backend that keeps each FX graph it gets in `graphs` and runs it as it is."""
    def recording(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    return recording


def space_for(space, device: str, *, batch_size: int = 1, assistant: str | None = None, random_weights: bool = False,
              **machine):
    """`space` as a study searches it on a machine of `device` with the capabilities `machine` names
    (autotune.config.availability)."""
    from autotune.config.availability import Machine, for_machine

    return for_machine(space, Machine(device, **machine), batch_size=batch_size, assistant=assistant,
                       random_weights=random_weights)


def build_candidate(model: str, candidate, workload, device: str = "cpu"):
    """A Candidate built as a trial's worker builds it (autotune.runtime.build)."""
    from autotune.runtime.build import Recipe, build

    return build(Recipe.of_candidate(str(model), candidate), device, workload)
