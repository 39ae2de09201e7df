"""A preset's decode speed three ways, each run in a fresh process, side by side: through
`autotune.load_preset`, through its exported model folder with plain transformers (a process where autotune
cannot be imported), and transformers' best native configuration of the same weights (the folder loaded
without its code: static cache + `CompileConfig(mode="max-autotune", fullgraph=True)`).

    python benchmarks/folder_speed.py --preset P.preset.json --folder /tmp/p-folder \\
        --prompts benchmarks/data/one-prompt.jsonl --batch-size 1 --max-new-tokens 256 --runs 2 --out $OUT/f.json

The folder is exported first (`autotune.tuner.export.write_folder`, as `autotune export --folder` does) unless
it holds this preset already. The runs alternate between the three ways, so that a drift of the machine
touches all alike; each run times `--repeats` passes after a warm-up pass (preset_speed.time_passes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_speed import (ROOT, add_workload_arguments, batched_inputs, environment, medians_of,  # noqa: E402
                          read_prompts, time_passes)

# load_preset_saved: load_preset of the same preset with its model read from the folder's saved weights (for a
# `random:` model, the weights it builds, saved): what separates the two loading paths from the two generates
WAYS = ("load_preset", "folder", "native", "load_preset_saved")
PRESET_IN_FOLDER = "autotune_preset.json"


def load_way(way: str, preset_path: str, folder: str, device: str):
    """(model, GenerationConfig, tokenizer, pad_to_multiple_of) as `way` loads the preset."""
    preset = json.loads(Path(preset_path).read_text(encoding="utf-8"))
    pad = (preset.get("runtime") or {}).get("pad_to_multiple_of")
    if way in ("load_preset", "load_preset_saved"):
        import autotune
        from autotune.runtime.loading import load_tokenizer

        if way == "load_preset_saved":
            preset.update(model=str(Path(folder).resolve()), note=None)
            preset_path = str(Path(folder).with_name(f"{Path(folder).name}-saved.preset.json"))
            Path(preset_path).write_text(json.dumps(preset), encoding="utf-8")
        model, gen = autotune.load_preset(preset_path, device=device)
        return model, gen, load_tokenizer(preset["model"]), pad
    sys.modules["autotune"] = None  # the folder's ways run where autotune cannot be imported
    from transformers import AutoModelForCausalLM, AutoTokenizer, CompileConfig

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if way == "folder":
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, device_map=device)
        return model, model.generation_config, tokenizer, pad
    model = AutoModelForCausalLM.from_pretrained(folder, device_map=device)
    gen = model.generation_config
    gen.cache_implementation = "static"
    gen.compile_config = CompileConfig(mode="max-autotune", fullgraph=True)
    return model, gen, tokenizer, None


def child(args) -> int:
    started = time.perf_counter()
    model, gen, tokenizer, pad = load_way(args.way, args.preset, args.folder, args.device)
    load_s = time.perf_counter() - started
    gen.max_new_tokens = gen.min_new_tokens = args.max_new_tokens
    inputs = batched_inputs(tokenizer, read_prompts(args.prompts), args.batch_size, pad, model.device)
    figures = time_passes(model, gen, inputs, args.repeats)
    print(json.dumps({**figures, "load_s": load_s, "way": args.way}))
    return 0


def export_if_needed(preset_path: str, folder: str) -> float | None:
    """Export the preset as a folder unless the folder holds it already; the seconds it took, or None."""
    held = Path(folder) / PRESET_IN_FOLDER
    if held.is_file() and held.read_text(encoding="utf-8") == Path(preset_path).read_text(encoding="utf-8"):
        return None
    from autotune.config.preset import Preset
    from autotune.tuner.export import write_folder

    started = time.perf_counter()
    write_folder(Preset.read(preset_path), folder)
    return time.perf_counter() - started


def parent(args) -> int:
    export_s = export_if_needed(args.preset, args.folder)
    runs: dict[str, list] = {way: [] for way in args.ways}
    for index in range(args.runs):
        for way in args.ways:
            command = [sys.executable, __file__, "child", "--way", way, "--preset", args.preset, "--folder",
                       args.folder, "--prompts", args.prompts, "--batch-size", str(args.batch_size),
                       "--max-new-tokens", str(args.max_new_tokens), "--repeats", str(args.repeats),
                       "--device", args.device]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                      filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
            if proc.returncode != 0:
                print(f"{way} run {index} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                runs[way].append(None)
                continue
            runs[way].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{way} run {index}: {runs[way][-1]['decode_tokens_per_s']:.1f} decode tok/s", flush=True)
    medians = medians_of(runs)
    ratios = {f"{way}/load_preset": medians[way] / medians["load_preset"]
              for way in args.ways if way != "load_preset" and medians.get(way) and medians.get("load_preset")}
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.3f}")
    result = {"preset": args.preset, "folder": args.folder, "export_s": export_s, "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "prompts": args.prompts, "repeats": args.repeats,
              "runs": runs, "medians": medians, "ratios": ratios, "environment": environment(),
              "command": " ".join(sys.argv)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if all(medians.values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="parent", choices=["parent", "child"])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--folder", required=True, help="the preset's model folder (exported here if needed)")
    parser.add_argument("--way", choices=WAYS, help="(child) how to load")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    add_workload_arguments(parser)
    parser.add_argument("--runs", type=int, default=2, help="fresh processes per way")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    return child(args) if args.mode == "child" else parent(args)


if __name__ == "__main__":
    sys.exit(main())
