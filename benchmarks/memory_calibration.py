"""Compare autotune's memory estimates with measured peaks, to calibrate autotune.memory.

    python benchmarks/memory_calibration.py --model examples/models/codelm-4m --device cpu --limit 12
    python benchmarks/memory_calibration.py --model random:gemma-2b --device cuda --space default --limit 40

Runs the baseline, then candidates of the space (all of them, or a seeded sample of --limit), each in a
fresh worker exactly as a study does (no budget, so nothing is capped), and writes one JSON line per trial
with the estimate's terms and the measured peaks of each phase (`memory_phases`: load_and_warmup,
measured, scoring; allocated / reserved / device-in-use bytes on CUDA, RSS on CPU). The table shows the
estimate against the whole-trial peak: the largest RSS on CPU; on CUDA the largest reserved bytes plus the
CUDA context constant (the context itself is `device_used_now - reserved`, also recorded).

Constants to fit from the output (autotune.memory): CPU_PROCESS_BASELINE_BYTES and the CPU_LOWP_* kernel
terms on CPU; on CUDA CUDA_CONTEXT_BYTES (device_used_now - reserved of a trial), the allocator fractions
(reserved / allocated), CUDA_COMPILE_FIXED_BYTES and CUDA_GRAPH_POOL_ACTIVATION_COPIES (load_and_warmup
peaks of compiled candidates against the same candidate without compile).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.config.availability import Machine, for_machine  # noqa: E402
from autotune.config.candidate import Candidate  # noqa: E402
from autotune.config.space import SearchSpace  # noqa: E402
from autotune.config.workload import Workload  # noqa: E402
from autotune.memory import CUDA_CONTEXT_BYTES, Estimator  # noqa: E402
from autotune.runtime.environment import triton_imports  # noqa: E402
from autotune.worker.job import Job  # noqa: E402
from autotune.worker.launcher import launch  # noqa: E402


def measured_peak(phases: dict, device: str) -> int | None:
    if not phases:
        return None
    if device == "cpu":
        return max(p.get("rss", 0) for p in phases.values())
    return max(p.get("reserved", 0) for p in phases.values()) + CUDA_CONTEXT_BYTES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--space", default="default")
    parser.add_argument("--prompts")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--assistant")
    parser.add_argument("--limit", type=int, help="measure a seeded random sample of this many candidates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default="memory_calibration.jsonl")
    args = parser.parse_args()

    kw = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    workload = Workload.from_file(args.prompts, **kw) if args.prompts else Workload.default(**kw)
    model = args.model if args.model.startswith("random:") else str(Path(args.model).resolve())
    estimator = Estimator.for_model(model, workload, assistant=args.assistant)
    space = for_machine(SearchSpace.load(args.space), Machine(args.device, has_flex_attention=True,
                                                              has_triton=triton_imports()),
                        batch_size=args.batch_size, assistant=args.assistant)
    candidates = []
    for c in space.valid_candidates(args.assistant):
        if c != Candidate():
            candidates.append(c)
    if args.limit and args.limit < len(candidates):
        candidates = random.Random(args.seed).sample(candidates, args.limit)

    work = Path(tempfile.mkdtemp(prefix="autotune-memcal-"))
    print(f"{'config':70s} {'estimate':>10s} {'measured':>10s} {'ratio':>6s}  (MiB; work dir {work})")
    with open(args.out, "w", encoding="utf-8") as out:
        for index, candidate in enumerate([Candidate(), *candidates]):
            estimate = estimator(candidate, args.device)
            job = Job(model=model, candidate=candidate, workload=workload, device=args.device,
                      role="baseline" if index == 0 else "candidate", reference_path=str(work / "reference.pt"),
                      result_path=str(work / f"{index:05d}" / "result.json"), repeats=args.repeats,
                      warmup=args.warmup, trial_number=index)
            started = time.perf_counter()
            m = launch(job, work / f"{index:05d}", args.timeout,
                       env={"TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache")})
            peak = measured_peak(m.memory_phases, args.device)
            ratio = f"{estimate.total / peak:.2f}" if peak else "-"
            shown = f"{peak / 2**20:10.1f}" if peak else f"{m.status:>10s}"
            print(f"{candidate.describe()[:70]:70s} {estimate.total / 2**20:10.1f} {shown} {ratio:>6s}", flush=True)
            out.write(json.dumps({"candidate": candidate.to_dict(), "config": candidate.describe(),
                                  "estimate": estimate.to_dict(), "status": m.status, "failure_kind": m.failure_kind,
                                  "message": (m.message or "")[-600:], "warmup_s": m.warmup_s, "load_s": m.load_s,
                                  "measured_peak_bytes": peak, "peak_memory_bytes": m.peak_memory_bytes,
                                  "memory_phases": m.memory_phases, "environment": m.environment,
                                  "wall_s": time.perf_counter() - started}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
