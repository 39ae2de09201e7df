"""Whether `attn_implementation="flex_attention"` can run a model on this machine, and with which Inductor
kernel options (issue 3). On the H200, random gemma-2b (head_dim 256) failed with flex attention in every
study trial: Inductor found no kernel configuration ("NoValidChoicesError: No choices exist for backend").
This tries greedy generation with a static cache and transformers' flex attention, once per set of
`kernel_options` below (given to transformers' flex attention function: generate() refuses them as model
kwargs), each in a fresh process, and prints a table: whether it ran (the finding), tok/s of one timed
generation after a warm-up one (prefill included, the model itself not compiled), and whether its tokens
are the sdpa model's.

    python benchmarks/flex_probe.py --model random:gemma-2b --device cuda [--out probe.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPTIONS = {  # label: kernel_options for torch's flex_attention (None: its own choice)
    "default": None,
    "blocks 32, 1 stage": {"BLOCK_M": 32, "BLOCK_N": 32, "num_stages": 1, "num_warps": 4},
    "blocks 16, 1 stage": {"BLOCK_M": 16, "BLOCK_N": 16, "num_stages": 1, "num_warps": 4},
    "no decoding kernel, blocks 32": {"FORCE_USE_FLEX_ATTENTION": True, "BLOCK_M": 32, "BLOCK_N": 32,
                                      "num_stages": 1, "num_warps": 4},
}


@contextmanager
def flex_kernel_options(kernel_options: dict | None):
    """transformers' flex attention with these `kernel_options` meanwhile (generate() refuses unknown model
    kwargs, so they are given to the attention function itself)."""
    if not kernel_options:
        yield
        return
    from transformers import AttentionInterface
    from transformers.integrations import flex_attention

    before = AttentionInterface._global_mapping["flex_attention"]

    def flex_with_options(*args, **kwargs):
        return flex_attention.flex_attention_forward(*args, **{**kwargs, "kernel_options": kernel_options})

    AttentionInterface.register("flex_attention", flex_with_options)
    try:
        yield
    finally:
        AttentionInterface.register("flex_attention", before)


def generate_tokens(model_id: str, device: str, attn: str, kernel_options: dict | None, new_tokens: int) -> dict:
    """Load the model with `attn`, generate greedily with a static cache twice (warm-up, then timed); the
    tokens and tok/s (prefill included)."""
    import torch

    from autotune.config import models
    from autotune.runtime.random_weights import load_random_model

    load = {"dtype": "bfloat16" if device == "cuda" else "float32", "attn_implementation": attn}
    if models.is_random(model_id):
        model = load_random_model(model_id, load, device)
    else:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(model_id, **load).to(device).eval()
    vocab = model.config.vocab_size
    prompt = torch.arange(32, device=device).remainder(vocab - 10).add(5).unsqueeze(0)

    def run():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, cache_implementation="static")

    with torch.inference_mode(), flex_kernel_options(kernel_options):
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"tokens": out[0, prompt.shape[1]:].tolist(), "tokens_per_s": new_tokens / seconds}


def child(args) -> int:
    """One try in this process: print one JSON line."""
    options = json.loads(args.options) if args.options else None
    try:
        result = generate_tokens(args.model, args.device, args.attn, options, args.new_tokens)
        print(json.dumps({"ok": True, **result}))
    except Exception as exc:  # noqa: BLE001 - the error is the finding
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}))
    return 0


def try_in_process(args, attn: str, options: dict | None) -> dict:
    command = [sys.executable, __file__, "--child", "--model", args.model, "--device", args.device, "--attn", attn,
               "--new-tokens", str(args.new_tokens), "--options", json.dumps(options) if options else ""]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {args.timeout} s", "seconds": time.perf_counter() - started}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": f"exit {done.returncode}: "
                                                                           f"{done.stderr.strip()[-600:]}"}
    return {**result, "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:gemma-2b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--only", nargs="*", help="labels of OPTIONS to try (all unless given)")
    parser.add_argument("--out", help="write the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--attn", default="flex_attention", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    reference = try_in_process(args, "sdpa", None)
    rows = []
    for label, options in OPTIONS.items():
        if args.only and label not in args.only:
            continue
        result = try_in_process(args, "flex_attention", options)
        result["same_tokens_as_sdpa"] = result.get("ok") and reference.get("ok") and \
            result["tokens"] == reference["tokens"]
        rows.append({"label": label, "kernel_options": options, **result})
        print(f"- {label}: {'ran' if result['ok'] else result['error']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "sdpa": reference, "rows": rows}, indent=1))
    print(f"\n{args.model} on {args.device}; sdpa: "
          + (f"{reference['tokens_per_s']:.1f} tok/s" if reference.get("ok") else reference.get("error", "")))
    print(f"{'kernel options':<32} | {'ran':<3} | {'tok/s':>7} | {'= sdpa':<6} | {'s':>5} | error")
    for row in rows:
        speed = f"{row['tokens_per_s']:.1f}" if row.get("ok") else "-"
        print(f"{row['label']:<32} | {'yes' if row['ok'] else 'no':<3} | {speed:>7} | "
              f"{'yes' if row['same_tokens_as_sdpa'] else 'no':<6} | {row['seconds']:5.1f} | "
              f"{'' if row['ok'] else row['error'][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
