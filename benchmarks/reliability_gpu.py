"""Real CUDA faults on the GPU machine (R1, R2, R3, R22, R23 of ../shared/RELIABILITY.md).

Each scenario is a real `autotune search` through the CLI, on the trained fixture model, with a fault
that happens for real on the GPU:

- R1  a real out-of-memory error in a trial's worker (the worker allocates more than the card holds):
      the trial is COMPLETE + infeasible (`failure_kind=oom`), the study goes on;
- R2  a real device-side assert (an embedding index out of range): the trial FAILs as `cuda_error`,
      and the next trial on the same GPU succeeds in a fresh process;
- R3  a real hang inside a CUDA synchronize (a kernel that spins for hours): the trial FAILs as
      `timeout` within the timeout + kill grace, no worker is left and the GPU's memory is back;
- R22 another process takes the GPU during a trial's measurement: the trial is flagged `contended`;
- R23 the best configuration re-measured three times in fresh processes: coefficient of variation.

    export PYTHONPATH=$PWD/.gpu-site:$PWD
    python benchmarks/reliability_gpu.py --model .fixtures/codelm-12m

Prints one row per scenario, last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "cuda"
SPACE = """
knobs:
  dtype: {values: [auto, float32, bfloat16]}
  attn_implementation: {values: [auto, sdpa, eager]}
"""


def gpu_memory_used_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[0])


def search(workdir: Path, model: str, study: str, trials: int, faults: str = "", extra=(), background=False,
           space_text: str = SPACE, prompts_text: str | None = None, env_extra=None):
    space = workdir / "space.yaml"
    space.write_text(space_text)
    prompts = workdir / "prompts.jsonl"
    prompts.write_text(prompts_text or json.dumps(
        {"prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"}) + "\n")
    command = [sys.executable, "-m", "autotune.cli", "search", "--model", model, "--device", DEVICE,
               "--study", study, "--trials", str(trials), "--space", str(space), "--prompts", str(prompts),
               "--max-new-tokens", "32", "--repeats", "1", "--warmup", "0", "--confirm", "0", *extra]
    env = {**os.environ, "AUTOTUNE_ALLOW_FAULTS": "1", "AUTOTUNE_TEST_FAULTS": faults, **(env_extra or {})}
    if background:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def trials_of(workdir: Path, study: str):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{workdir}/studies/{study}.db").trials


def summary(t) -> str:
    a = t.user_attrs
    return f"#{t.number} {t.state.name} {a.get('status')}/{a.get('failure_kind')}"


def r1(workdir, model):
    run = search(workdir, model, "r1", 3, faults="1:cuda_oom")
    trials = trials_of(workdir, "r1")
    oom = trials[1]
    ok = (run.returncode == 0 and oom.state.name == "COMPLETE" and oom.user_attrs["failure_kind"] == "oom"
          and max(oom.constraints.values()) > 0 and trials[2].user_attrs["status"] == "ok")
    return ok, "; ".join(summary(t) for t in trials) + f"; message: {oom.user_attrs['message'][:80]}"


R1W_SPACE = """
knobs:
  dtype: {values: [auto, float32]}
  cache_implementation: {values: [dynamic, static]}
"""


def r1w(workdir, model, model_w="random:gemma-2b", vram="12GB", batch=64, new_tokens=1024):
    """R1 from the workload itself: under a 12 GB cap, random gemma-2b in float32 (10 GB of weights) with a
    static cache for 64 sequences x 1024 new tokens does not fit, while the bf16 baseline does. The
    pre-launch estimate would record it as over_budget without a process; a test-only switch turns that
    off so the worker runs into the real allocator limit."""
    prompts = "".join(json.dumps({"prompt": f"def function_{i}(values):\n    total = {i}\n"}) + "\n"
                      for i in range(batch))
    common = dict(space_text=R1W_SPACE, prompts_text=prompts, env_extra={"AUTOTUNE_TEST_NO_PRESCREEN": "1"},
                  extra=("--vram", vram, "--batch-size", str(batch), "--max-new-tokens", str(new_tokens)))
    first = search(workdir, model_w, "r1w", 1, **common)
    if first.returncode != 0:
        return False, "baseline: " + first.stderr[-400:]
    study = optuna.load_study(study_name="r1w", storage=f"sqlite:///{workdir}/studies/r1w.db")
    study.enqueue_trial({"dtype": "float32", "cache_implementation": "static"})
    study.enqueue_trial({"dtype": "auto", "cache_implementation": "static"})
    run = search(workdir, model_w, "r1w", 3, **common)
    trials = trials_of(workdir, "r1w")
    oom = trials[1]
    a = oom.user_attrs
    ok = (run.returncode == 0 and oom.state.name == "COMPLETE" and a.get("failure_kind") == "oom"
          and max(oom.constraints.values()) > 0 and trials[2].user_attrs.get("status") == "ok")
    gib = 2 ** 30
    return ok, ("; ".join(summary(t) for t in trials)
                + f"; #1 estimated {a.get('estimated_memory_bytes', 0) / gib:.1f} GiB against the {vram} cap"
                + f"; baseline peak {trials[0].user_attrs.get('peak_memory_bytes', 0) / gib:.1f} GiB"
                + f"; message: {str(a.get('message'))[:120]}" + ("" if ok else run.stderr[-300:]))


def r2(workdir, model):
    run = search(workdir, model, "r2", 3, faults="1:cuda_assert")
    trials = trials_of(workdir, "r2")
    bad, after = trials[1], trials[2]
    ok = (run.returncode == 0 and bad.state.name == "FAIL" and bad.user_attrs["failure_kind"] == "cuda_error"
          and after.user_attrs["status"] == "ok")
    return ok, "; ".join(summary(t) for t in trials) + f"; message: {bad.user_attrs['message'][:80]}"


def r3(workdir, model):
    before = gpu_memory_used_mib()
    started = time.perf_counter()
    run = search(workdir, model, "r3", 3, faults="1:cuda_hang", extra=("--trial-timeout", "30"))
    trials = trials_of(workdir, "r3")
    hung = trials[1]
    result = json.loads((workdir / "studies/r3/results/trial-00001.json").read_text())
    leftover = subprocess.run(["pgrep", "-f", "autotune.worker"], capture_output=True, text=True).stdout.split()
    after = gpu_memory_used_mib()
    ok = (run.returncode == 0 and hung.state.name == "FAIL" and hung.user_attrs["failure_kind"] == "timeout"
          and result["wall_s"] < 30 + 15 and not leftover and after <= before + 64)
    return ok, (f"{summary(hung)} after {result['wall_s']:.1f} s (timeout 30 s); workers left: {len(leftover)}; "
                f"GPU memory used before {before} MiB, after {after} MiB; study {time.perf_counter() - started:.0f} s")


def r22(workdir, model):
    proc = search(workdir, model, "r22", 2, faults="", background=True,
                  extra=("--repeats", "20", "--max-new-tokens", "256"))
    job = workdir / "studies/r22/trials/00001/worker.log"
    deadline = time.time() + 300
    while not job.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(12)  # into the measured passes (20 x 256 tokens)
    hog = subprocess.Popen([sys.executable, "-c", "import torch, time; x = torch.empty(4 * 2**30, dtype=torch.uint8, "
                            "device='cuda'); y = torch.randn(8192, 8192, device='cuda');\n"
                            "t = time.time()\nwhile time.time() - t < 15: y @ y"])
    output = proc.communicate(timeout=900)[0]
    hog.wait()
    trials = trials_of(workdir, "r22")
    flagged = trials[1]
    ok = flagged.state.name == "FAIL" and flagged.user_attrs.get("failure_kind") == "contended"
    return ok, f"{summary(flagged)}: {flagged.user_attrs.get('message')}" + ("" if ok else output[-300:])


def r23(workdir, model):
    run = search(workdir, model, "r23", 3, extra=("--confirm", "3", "--repeats", "3", "--warmup", "1", "--max-new-tokens", "64"))
    preset = json.loads((workdir / "studies/r23.preset.json").read_text()) if run.returncode == 0 else {}
    stability = preset.get("measurement", {}).get("stability", {})
    ok = bool(stability) and stability["cv"] is not None and stability["cv"] < 0.05
    runs = ", ".join(f"{v:.1f}" for v in stability.get("runs", []) if v)
    cv = stability.get("cv")
    return ok, (f"best trial {stability.get('trial')} recorded {stability.get('recorded', 0):.1f} tok/s; "
                f"re-measured {runs}; CV {100 * cv:.2f} %" if cv is not None else run.stderr[-300:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / ".fixtures" / "codelm-12m"))
    parser.add_argument("--only", nargs="*", default=["r1", "r1w", "r2", "r3", "r22", "r23"])
    parser.add_argument("--device", default="cuda", help="cpu only to check this script's plumbing (r23)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    args.model = str(Path(args.model).resolve())
    print("| fault | result | seconds | what happened |\n| --- | --- | --- | --- |", flush=True)
    for name in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            try:
                ok, detail = globals()[name](Path(tmp), args.model)
            except Exception as exc:  # report and go on to the next scenario
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            row = (name.upper(), "pass" if ok else "FAIL", f"{time.perf_counter() - started:.0f}", detail)
            print("| " + " | ".join(row).replace("\n", " ") + " |", flush=True)  # each row as it is known


if __name__ == "__main__":
    main()
