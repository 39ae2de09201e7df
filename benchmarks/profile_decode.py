"""Where a decode step's time goes: build one configuration as the worker does, warm it up, then profile
one generation with torch.profiler and print the kernels by their device time, with the device time per
generated token against the wall time per token. (Issue 7: the static loop's step took about 2.2 ms on the
H200 for gemma-2b against 1.18 ms to read the weights, and halving the weight bytes with int8 did not
shorten it: this shows which kernels take the rest.)

    python benchmarks/profile_decode.py --model random:gemma-2b --device cuda \\
        --candidate '{"cache_implementation": "static", "compile": "max-autotune", "compile_fullgraph": true,
                      "decode_loop": "static_loop", "quantization": "int8_weight_only"}'

`--candidate` takes a Candidate as JSON or a preset file (its measured candidate). Runs in this process
(not a worker): give it a fresh one per configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from knobs import base_from, prompts_of_length  # noqa: E402

from autotune.config.models import resolve_model  # noqa: E402
from autotune.config.workload import Workload  # noqa: E402


def device_time_us(event) -> float:
    """An averaged event's own device (CUDA) time in microseconds, across torch versions' names."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def profile(model: str, candidate, batch_size: int, prompt_tokens: int, new_tokens: int, device: str, top: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity

    from autotune.runtime.build import Recipe, build
    from autotune.worker.measure import run_pass

    workload = Workload(prompts=prompts_of_length(model, prompt_tokens, batch_size), batch_size=batch_size,
                        max_new_tokens=new_tokens)
    built = build(Recipe.of_candidate(model, candidate), device, workload)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with built.runtime_context():
        for _ in range(2):  # compile, capture, then one pass as measured
            run_pass(built, workload)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run_pass(built, workload)
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        with torch.profiler.profile(activities=activities) as prof:
            run_pass(built, workload)
            if device == "cuda":
                torch.cuda.synchronize()
    events = prof.key_averages()
    # device-side events only (kernels, copies): an operator's own row repeats its kernels' time
    on_device = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    kernels = sorted(((e.key, device_time_us(e), e.count) for e in on_device if device_time_us(e) > 0),
                     key=lambda row: -row[1])
    total_us = sum(t for _, t, _ in kernels)
    tokens = new_tokens * batch_size
    return {"candidate": candidate.describe(), "wall_ms_per_step": 1000 * wall / new_tokens,
            "device_ms_per_step": total_us / 1000 / new_tokens, "tokens": tokens,
            "kernels": [{"name": name, "ms_per_step": t / 1000 / new_tokens, "share": t / total_us if total_us else 0,
                         "calls_per_step": count / new_tokens} for name, t, count in kernels[:top]],
            "cpu_table": None if device == "cuda" else events.table(sort_by="self_cpu_time_total", row_limit=top)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:gemma-2b")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--candidate", required=True, help="a Candidate as JSON, or a preset file")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--top", type=int, default=25, help="kernels to list")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    model = resolve_model(args.model)
    result = profile(model, base_from(args.candidate), args.batch_size, args.prompt_tokens, args.max_new_tokens,
                     args.device, args.top)
    print(f"{result['candidate']}, batch {args.batch_size}: wall {result['wall_ms_per_step']:.3f} ms per step, "
          f"device {result['device_ms_per_step']:.3f} ms per step (kernels' own time, summed)")
    if result["cpu_table"]:
        print(result["cpu_table"])
    else:
        print(f"{'ms/step':>8s} {'share':>6s} {'calls/step':>10s}  kernel")
        for k in result["kernels"]:
            print(f"{k['ms_per_step']:8.4f} {100 * k['share']:5.1f}% {k['calls_per_step']:10.1f}  {k['name'][:110]}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
