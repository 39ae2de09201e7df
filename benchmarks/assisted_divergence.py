"""How far assisted decoding follows plain greedy decoding of the same model (issue 3's fixture contrast).

Teacher-forced agreement cannot see assisted decoding: it scores the target model's own forward, which an
assistant does not change, so it is 1.000 by construction. What changes is the generated text: the target
verifies several draft tokens in one forward, whose other shapes round differently in a 16-bit dtype, and a
near-tie then goes the other way. This prints, per dtype and number of assistant tokens, the share of the
greedy continuation that assisted decoding reproduces before its first differing token (autotune's
`prefix_match`), prompt by prompt.

    python benchmarks/assisted_divergence.py --model ../shared/fixtures/codelm-12m \\
        --assistant ../shared/fixtures/codelm-4m-draft [--device cpu] [--out divergence.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autotune.config.workload import read_prompts_jsonl  # noqa: E402


def prefix_share(reference: list[int], other: list[int]) -> float:
    """Share of `reference` that `other` reproduces before the first differing token."""
    same = next((i for i, (a, b) in enumerate(zip(reference, other)) if a != b), min(len(reference), len(other)))
    return same / len(reference) if reference else 1.0


def measure(model_path: str, assistant_path: str, prompts: list[str], dtype_name: str, tokens: list[int],
            new_tokens: int, device: str) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype_name)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    assistant = AutoModelForCausalLM.from_pretrained(assistant_path, dtype=dtype).to(device).eval()
    greedy = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    rows = []
    inputs = [tokenizer(p, return_tensors="pt").to(device) for p in prompts]
    with torch.inference_mode():
        plain = [model.generate(**x, **greedy)[0, x["input_ids"].shape[1]:].tolist() for x in inputs]
        for n in tokens:
            assistant.generation_config.num_assistant_tokens = n
            assistant.generation_config.num_assistant_tokens_schedule = "constant"
            shares = [prefix_share(p, model.generate(**x, **greedy, assistant_model=assistant)[0, x["input_ids"].shape[1]:].tolist())
                      for x, p in zip(inputs, plain)]
            rows.append({"dtype": dtype_name, "assistant_tokens": n, "prefix_match": shares,
                         "mean": statistics.fmean(shares)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--assistant", required=True)
    parser.add_argument("--prompts", default=str(ROOT / "benchmarks" / "data" / "four-prompts.jsonl"))
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--assistant-tokens", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    prompts = list(read_prompts_jsonl(args.prompts)[0])
    rows = [row for dtype in args.dtypes for row in measure(args.model, args.assistant, prompts, dtype,
                                                            args.assistant_tokens, args.new_tokens, args.device)]
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1), encoding="utf-8")
    print(f"assisted decoding against greedy decoding of {args.model} ({len(prompts)} prompts, {args.new_tokens} "
          f"new tokens, {args.device}): prefix match by prompt")
    print(f"{'dtype':<10} | {'assistant tokens':>16} | {'mean':>5} | by prompt")
    for row in rows:
        print(f"{row['dtype']:<10} | {row['assistant_tokens']:>16} | {row['mean']:.3f} | "
              + ", ".join(f"{s:.3f}" for s in row["prefix_match"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
