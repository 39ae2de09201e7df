"""The rules that keep the layout easy to live in (docs/architecture.md): the layers above the runtime import no
torch, the orchestrator never initialises CUDA, Optuna's internals are reached in one module only, and no
module, class or function outgrows its room."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest
from support import BUNDLED_MODEL, ROOT

PACKAGE = ROOT / "autotune"
# the layers that run in the orchestrator (and `memory`, which it calls before any trial)
TORCH_FREE = ("autotune.config", "autotune.memory", "autotune.tuner", "autotune.present", "autotune.cli")
LIMITS = {"module": 400, "class": 200, "function": 60}


def modules_of(package: str) -> list[str]:
    """Every module of a package, by its dotted name."""
    names = []
    for path in sorted(ROOT.joinpath(*package.split(".")).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__main__":
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_a_layer_above_the_runtime_imports_no_torch(layer):
    names = modules_of(layer)
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], f"importing {layer} imports torch"


HOOK = """
import json, sys
import torch

calls = []
real_lazy_init = torch.cuda._lazy_init


def lazy_init(*args, **kwargs):  # every path that initialises CUDA goes through it
    calls.append("torch.cuda._lazy_init")
    return real_lazy_init(*args, **kwargs)


torch.cuda._lazy_init = lazy_init
from autotune.cli import main

try:
    main(sys.argv[2:], standalone_mode=False)
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(calls, f)
"""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs CUDA")])])
def test_the_orchestrator_never_initialises_cuda(tmp_path, device):
    """A whole search (probe, estimates, trials, confirmation, export) with the orchestrator's CUDA
    initialisation watched: nothing in it asks for CUDA; only the workers, other processes, touch a device."""
    if device == "cuda":
        import torch

        if torch.cuda.is_initialized():  # an earlier test of this process made a CUDA context
            pytest.skip("run it in a pytest process of its own: this one holds a CUDA context, which the "
                        "worker's contention check rightly counts as another process on the GPU")
    hook, calls = tmp_path / "hook.py", tmp_path / "calls.json"
    hook.write_text(HOOK)
    done = subprocess.run([sys.executable, str(hook), str(calls), "search", "--model", str(BUNDLED_MODEL),
                           "--device", device, "--trials", "2", "--max-new-tokens", "4", "--repeats", "1",
                           "--confirm", "1", "--study", "c", "--root", str(tmp_path / "studies"), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "studies" / "c.preset.json").is_file()
    assert json.loads(calls.read_text()) == []


def test_optunas_internals_are_reached_in_one_module():
    """`study._storage`, `trial._trial_id`, `study._study_id` nowhere; the `optuna.Trial` constructor and the
    "fixed_params" system attribute only in autotune/tuner/handle.py, which says why."""
    private = re.compile(r"\._(storage|trial_id|study_id)\b")
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "tuner/handle.py":  # names them in its docstring, uses none
            continue
        text = path.read_text()
        assert not private.search(text), f"{path} uses Optuna's private attributes"
        assert "optuna.Trial(" not in text and '"fixed_params"' not in text, path


def exceptions() -> set[str]:
    """The sizes docs/architecture.md allows, each with its reason: lines `- size exception: NAME ...`."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    return set(re.findall(r"^- size exception: `([^`]+)`", text, flags=re.M))


def oversized() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(ROOT))
        source = path.read_text()
        if len(source.splitlines()) > LIMITS["module"]:
            found.append(f"{name} ({len(source.splitlines())} lines)")
        for node in ast.walk(ast.parse(source)):
            kind = "class" if isinstance(node, ast.ClassDef) else \
                "function" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if kind and node.end_lineno - node.lineno + 1 > LIMITS[kind]:
                found.append(f"{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return found


def test_no_module_class_or_function_outgrows_its_room():
    allowed = exceptions()
    over = [item for item in oversized() if item.split(" (")[0] not in allowed]
    assert over == [], f"over {LIMITS} lines and not explained in docs/architecture.md: {over}"
