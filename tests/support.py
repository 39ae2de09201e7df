"""Helpers shared by the tests (imported as `support`; fixtures stay in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "examples" / "models" / "codelm-4m"
# Where the `real_model` fixture keeps the converted SmolLM2-135M-Instruct between runs
REAL_MODEL = Path(os.environ.get("AUTOTUNE_REAL_MODEL", Path.home() / ".cache" / "autotune" / "smollm2-135m-instruct"))
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


FOLDER_PROMPTS = ["def fib(n):", "import os\nclass Config:\n    def __init__(self):"]
FOLDER_NEW_TOKENS = 12
# A process that runs an exported model folder with plain transformers: any import of autotune in it fails.
PLAIN_TRANSFORMERS = f"""
import sys
sys.modules["autotune"] = None
import json
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, how = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
tokenizer.padding_side = "left"
inputs = tokenizer({FOLDER_PROMPTS!r}, return_tensors="pt", padding=True)
if how == "load":
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    out = model.generate(**inputs, max_new_tokens={FOLDER_NEW_TOKENS})
else:  # the folder's generation code asked for at the call
    model = AutoModelForCausalLM.from_pretrained(folder)
    out = model.generate(**inputs, max_new_tokens={FOLDER_NEW_TOKENS}, custom_generate=folder, trust_remote_code=True)
print(json.dumps({{"tokens": out[:, inputs["input_ids"].shape[1]:].tolist(),
                  "loop": hasattr(model, "autotune_decode_loop"),
                  "down_proj": type(model.model.layers[0].mlp.down_proj).__name__,
                  "attention": model.config._attn_implementation}}))
"""


def tokens_as_built(preset) -> list:
    """The greedy tokens of FOLDER_PROMPTS by the preset built as its trial was (autotune.runtime.build)."""
    from autotune.runtime.build import Recipe, build

    built = build(Recipe.of_preset(preset), "cpu")
    built.bind_generate()
    inputs = built.tokenize(FOLDER_PROMPTS)
    with built.runtime_context():
        out = built.model.generate(**inputs, generation_config=built.generation_config,
                                   max_new_tokens=FOLDER_NEW_TOKENS)  # as many as run_plain asks for
    return out[:, inputs["input_ids"].shape[1]:].tolist()


def run_plain(folder, how: str = "load") -> dict:
    """Run FOLDER_PROMPTS through an exported folder in a process without autotune (`how`: load it with
    trust_remote_code, or pass custom_generate at the call); its tokens, loop, int8 layer and attention."""
    run = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(folder), how], capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])
