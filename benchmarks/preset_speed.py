"""Decode speed of presets through `autotune.load_preset`, each run in a fresh process, for one or several
source trees of autotune side by side (before and after a change: the same preset, the same timing code).

    python benchmarks/preset_speed.py --preset P.preset.json --prompts benchmarks/data/one-prompt.jsonl \
        --batch-size 1 --max-new-tokens 256 --runs 3 --tree before=.before --tree after=. --out $OUT/speed.json

Each run of each tree is one process: it imports autotune from that tree (PYTHONPATH), loads the preset with
`load_preset`, generates once per batch to warm up (compilation happens here), then times `--repeats` passes
over the prompts with `model.generate(**inputs, generation_config=gen)`, every call generating exactly
`--max-new-tokens` tokens per sequence. Decode tok/s = tokens after the first / (end-to-end time - time to first
token), as a study's trials measure it; a run's figure is the median of its passes. The runs alternate between
the trees (before, after, before, after, ...), so that a drift of the machine touches both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_prompts(path: str) -> list[str]:
    return [json.loads(line)["prompt"] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def tokenizer_for(model_id: str):
    """The tokenizer of the preset's model, as the tree being measured loads it (either layout)."""
    try:
        from autotune.runtime.loading import load_tokenizer
    except ImportError:  # the flat layout before the redesign
        from autotune.worker.build import load_tokenizer
    return load_tokenizer(model_id)


class FirstToken:
    """A streamer that notes when the first new tokens reach the host."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:  # the first put is the prompt
            self.first = time.perf_counter()

    def end(self):
        pass


def batched_inputs(tokenizer, prompts: list[str], batch_size: int, pad: int | None, device) -> list[dict]:
    """The prompts in full batches of `batch_size`, left-padded (to a multiple of `pad` where given)."""
    batches = [prompts[i:i + batch_size] for i in range(0, len(prompts) // batch_size * batch_size, batch_size)]
    return [tokenizer(b, return_tensors="pt", padding=True, pad_to_multiple_of=pad).to(device) for b in batches]


def time_passes(model, gen, inputs: list[dict], repeats: int) -> dict:
    """One warm-up pass (compilation happens here), then `repeats` timed passes over the batches with
    `model.generate(**batch, generation_config=gen)`: decode tok/s per pass, their median, the warm-up's s."""
    import torch

    def run_pass() -> float:
        decode_tokens = decode_s = 0.0
        for batch in inputs:
            clock = FirstToken()
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            start = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**batch, generation_config=gen, streamer=clock)
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            end = time.perf_counter()
            new = out.shape[1] - batch["input_ids"].shape[1]
            decode_tokens += (new - 1) * out.shape[0]
            decode_s += end - (clock.first or start)
        return decode_tokens / decode_s

    started = time.perf_counter()
    run_pass()
    warmup_s = time.perf_counter() - started
    passes = [run_pass() for _ in range(repeats)]
    return {"decode_tokens_per_s": statistics.median(passes), "passes": passes, "warmup_s": warmup_s}


def child(args) -> int:
    """One run: load the preset, warm up, time the passes; print the figures as JSON."""
    import autotune

    preset = json.loads(Path(args.preset).read_text(encoding="utf-8"))
    started = time.perf_counter()
    model, gen = autotune.load_preset(args.preset)
    load_s = time.perf_counter() - started
    gen.max_new_tokens = gen.min_new_tokens = args.max_new_tokens
    pad = (preset.get("runtime") or {}).get("pad_to_multiple_of")
    inputs = batched_inputs(tokenizer_for(preset["model"]), read_prompts(args.prompts), args.batch_size, pad,
                            model.device)
    figures = time_passes(model, gen, inputs, args.repeats)
    print(json.dumps({**figures, "load_s": load_s, "autotune_file": autotune.__file__}))
    return 0


def environment() -> dict:
    import platform

    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(0)
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       cwd=ROOT).stdout.strip() or None
    except OSError:
        env["commit"] = None
    return env


def parent(args) -> int:
    trees = dict(item.split("=", 1) for item in args.tree)
    runs: dict[str, list] = {name: [] for name in trees}
    for index in range(args.runs):
        for name, tree in trees.items():
            path = os.pathsep.join([str(Path(tree).resolve()), *filter(None, [os.environ.get("PYTHONPATH")])])
            command = [sys.executable, __file__, "child", "--preset", args.preset, "--prompts", args.prompts,
                       "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                       "--repeats", str(args.repeats)]
            proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
                                  timeout=args.timeout)
            if proc.returncode != 0:
                print(f"{name} run {index} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                runs[name].append(None)
                continue
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{name} run {index}: {runs[name][-1]['decode_tokens_per_s']:.1f} decode tok/s", flush=True)
    medians = medians_of(runs)
    result = {"preset": args.preset, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
              "prompts": args.prompts, "repeats": args.repeats, "trees": trees, "runs": runs, "medians": medians,
              "environment": environment(), "command": " ".join(sys.argv)}
    names = list(trees)
    if len(names) == 2 and all(medians.values()):
        result["ratio"] = medians[names[1]] / medians[names[0]]
        print(f"{names[1]} / {names[0]}: {result['ratio']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if all(medians.values()) else 1


def medians_of(runs: dict[str, list]) -> dict:
    """Per name, the median decode tok/s of its runs that finished (None where none did)."""
    return {name: statistics.median([r["decode_tokens_per_s"] for r in rs if r]) if any(rs) else None
            for name, rs in runs.items()}


def add_workload_arguments(parser) -> None:
    """What a run measures: the prompts, their batch size, the new tokens and the timed passes."""
    parser.add_argument("--prompts", default=str(ROOT / "benchmarks" / "data" / "one-prompt.jsonl"))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per run (median)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="parent", choices=["parent", "child"])
    parser.add_argument("--preset", required=True)
    add_workload_arguments(parser)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per tree")
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH of an autotune source tree")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.mode == "child":
        return child(args)
    if not args.tree:
        args.tree = [f"current={ROOT}"]
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
