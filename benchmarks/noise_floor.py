"""Equivalence against the baseline and against a float32 reference, side by side (issue 28's noise floor).

autotune's gate scores a candidate against the baseline (the model as stored, often bf16). On a real model the
baseline is itself some distance from the model's exact outputs, and a configuration closer to them (float32)
can score under the bar. This scores the baseline and each candidate against both references on one workload:
teacher-forced top-1 agreement and mean KL on each reference's own greedy continuation, as a trial scores them
(autotune.worker.equivalence), and the greedy prefix share.

    python benchmarks/noise_floor.py --model MODEL_DIR [--prompts chat] [--max-new-tokens 32] \\
        [--candidates '{"dtype": "float32"}' '{"quantization": "int8_weight_only"}' ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from autotune.config.candidate import Candidate  # noqa: E402
from autotune.config.workload import Workload  # noqa: E402

DEFAULT_CANDIDATES = ('{}', '{"dtype": "float32"}', '{"dtype": "float16"}', '{"quantization": "int8_weight_only"}',
                      '{"quantization": "torchao_int8_weight_only"}')


def reference_of(model: str, candidate: Candidate, workload: Workload, device: str):
    """A configuration's greedy continuations and its teacher-forced reference (as the baseline trial builds it)."""
    from autotune.runtime.build import Recipe, build
    from autotune.worker import equivalence
    from autotune.worker.measure import run_pass

    built = build(Recipe.of_candidate(model, candidate), device, workload)
    continuations, _ = run_pass(built, workload)
    return built, continuations, equivalence.build_reference(built.model, built.tokenizer, workload.prompts,
                                                             continuations, device)


def score(reference: dict, built, continuations, device: str) -> dict:
    from autotune.worker import equivalence

    scores = equivalence.compare(reference, built.model, continuations, device)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in scores.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", default="chat", help="a prompt file or a built-in set (code, chat)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES, help="Candidate fields as JSON")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import torch
    import transformers

    workload = Workload.from_file(args.prompts, model=args.model, max_new_tokens=args.max_new_tokens)
    base, base_cont, base_ref = reference_of(args.model, Candidate(), workload, args.device)
    exact, exact_cont, exact_ref = reference_of(args.model, Candidate(dtype="float32"), workload, args.device)
    rows = []
    for fields in args.candidates:
        candidate = Candidate.from_json(json.dumps(json.loads(fields)))
        started = time.perf_counter()
        if candidate == Candidate():
            built, continuations = base, base_cont
        elif candidate == Candidate(dtype="float32"):
            built, continuations = exact, exact_cont
        else:
            built, continuations, _ = reference_of(args.model, candidate, workload, args.device)
        row = {"candidate": candidate.describe(), "vs_baseline": score(base_ref, built, continuations, args.device),
               "vs_float32": score(exact_ref, built, continuations, args.device),
               "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(f"{row['candidate']:<45} baseline top-1 {row['vs_baseline']['top1_agreement']:.4f} "
              f"KL {row['vs_baseline']['mean_kl']:.5f} | float32 top-1 {row['vs_float32']['top1_agreement']:.4f} "
              f"KL {row['vs_float32']['mean_kl']:.5f}", flush=True)
    result = {"model": args.model, "prompts": args.prompts, "prompt_count": len(workload.prompts),
              "chat": workload.chat, "max_new_tokens": args.max_new_tokens, "device": args.device,
              "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
