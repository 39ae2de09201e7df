"""Benchmark every knob of the default space, one at a time, through autotune's own worker.

From a base configuration (static cache + compile), each knob is varied alone; every (configuration,
batch size) runs in a fresh worker process (`autotune.worker.launcher.launch`, which runs
`autotune.runtime.build` and `autotune.worker.measure`), exactly as a study's trial does, but measured only
(no equivalence check: job role "benchmark"). A short table comes last:

    config | tok/s b1 | tok/s b8 | peak GB | warm-up s | recompiles

On the GPU machine (torch 2.11, transformers 5.17; optuna, sqlalchemy and bitsandbytes from .gpu-site):

    export PYTHONPATH=$PWD/.gpu-site:$PWD
    python benchmarks/knobs.py                      # random:gemma-2b, bf16, batch 1 and 8, 32 + 128 tokens
    python benchmarks/knobs.py --quick              # 8 configurations, within 10 minutes
    python benchmarks/knobs.py --quick --out $OUT/knobs.json
    python benchmarks/knobs.py --loops --batch-sizes 1 8 --max-new-tokens 256   # the decode loops (issue 7)
    python benchmarks/knobs.py --base studies/g24.preset.json   # every knob varied from a study's best (issue 3)

Here, on CPU, to check that it works:

    python benchmarks/knobs.py --model examples/models/codelm-4m --device cpu --quick

A variation the machine cannot run (a knob value `autotune.tuner.machine.searched_space` leaves out, or an invalid
combination) is listed with its reason instead of being launched. With `--budget-s`, no configuration
starts once that many seconds have passed, so the table still comes out within a command's time limit.
tok/s is decode tokens per second (tokens after the first / (end-to-end time - time to first token)),
median of the repeats, summed over the batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

from autotune.config import models  # noqa: E402
from autotune.config.candidate import KNOBS, Candidate  # noqa: E402
from autotune.config.measurement import Measurement  # noqa: E402
from autotune.config.models import resolve_model  # noqa: E402
from autotune.config.space import SearchSpace  # noqa: E402
from autotune.config.workload import Workload, default_prompts  # noqa: E402
from autotune.tuner import machine  # noqa: E402
from autotune.worker.job import Job  # noqa: E402
from autotune.worker.launcher import launch  # noqa: E402


def base_candidate(device: str, dtype: str) -> Candidate:
    """Static cache + compile: on CUDA generate()'s own compile with transformers' default CompileConfig
    (reduce-overhead), on CPU the explicit torch.compile(model.forward) in the default mode."""
    if device == "cuda":
        return Candidate(dtype=dtype, attn_implementation="sdpa", cache_implementation="static",
                         compile="reduce-overhead", compile_api="generate")
    return Candidate(dtype=dtype, attn_implementation="sdpa", cache_implementation="static", compile="default",
                     compile_api="explicit")


def variations(base: Candidate, device: str) -> list[tuple[str, dict]]:
    """(label, changes to the base) for every knob value the default space holds, one knob at a time.
    A knob whose values need other knobs changed with it (bitsandbytes, a dynamic cache, prompt lookup
    without compile) says so in its label."""
    other_dtypes = [d for d in ("bfloat16", "float16", "float32") if d != base.dtype]
    rows: list[tuple[str, dict]] = [("base: " + base.describe(), {})]
    rows += [(f"dtype={d}", {"dtype": d}) for d in other_dtypes]
    rows += [(f"attn={a}", {"attn_implementation": a}) for a in ("eager", "flex_attention", "flash_attention_2")]
    rows += [(f"sdpa_backend={b}", {"sdpa_backend": b}) for b in ("flash", "efficient", "math", "cudnn")]
    rows += [("compile=off", {"compile": "off"}),
             ("dynamic cache, no compile (plain generate)", {"cache_implementation": "dynamic", "compile": "off"}),
             ("cache=offloaded_static", {"cache_implementation": "offloaded_static"})]
    rows += [(f"compile={m}", {"compile": m}) for m in ("default", "reduce-overhead", "max-autotune") if m != base.compile]
    rows += [(f"compile_fullgraph={not base.compile_fullgraph}", {"compile_fullgraph": not base.compile_fullgraph})]
    # the decode loops of issue 7: generate()'s compile with max-autotune, and autotune's static loop
    rows += [("generate compile max-autotune fullgraph", {"compile": "max-autotune", "compile_fullgraph": True})]
    loops = [(f"decode_loop=static_loop {m} fullgraph", {"decode_loop": "static_loop", "compile": m,
                                                          "compile_fullgraph": True})
             for m in (("reduce-overhead", "max-autotune") if device == "cuda" else ("default",))]
    # the graph loop: GRAPH_STEPS steps per CUDA graph, the step compiled without torch.compile's graphs
    if device == "cuda":
        loops += [(f"decode_loop=graph_loop {m} fullgraph", {"decode_loop": "graph_loop", "compile": m,
                                                             "compile_fullgraph": True})
                  for m in ("default", "max-autotune")]
    rows += loops
    # Inductor's coordinate descent tuning: with the base's compile, and in the static loop
    descent = {"compile_tuning": "coordinate_descent"}
    if base.compile in ("default", "reduce-overhead"):
        rows += [("compile_tuning=coordinate_descent", descent)]
    # Inductor's freezing (fused q/k/v and gate/up products): with the base's compile, and in the loops
    freezing = {"compile_freezing": True}
    rows += [("compile_freezing=True", freezing)]
    rows += [(f"{label}, freezing", {**changes, **freezing}) for label, changes in loops]
    # (max-autotune tunes by coordinate descent already: only the other modes get a row)
    untuned = [(label, changes) for label, changes in loops if changes["compile"] != "max-autotune"]
    rows += [(f"{label}, coordinate descent", {**changes, **descent}) for label, changes in untuned]
    # weight-only int8 (autotune.runtime.quant.quantize): with the base's compile, and in the static loop (with and
    # without coordinate descent)
    int8 = {"quantization": "int8_weight_only"}
    rows += [("quantization=int8_weight_only", int8)]
    rows += [(f"{label}, int8_weight_only", {**changes, **int8}) for label, changes in loops]
    rows += [(f"{label}, int8_weight_only, coordinate descent", {**changes, **int8, **descent})
             for label, changes in untuned]
    # autotune's Triton int8 kernel and stacked sibling projections (the int8_kernel and fuse_projections knobs:
    # 1.11x together in the thirteenth session's graph loop), and stacked siblings in bf16
    if device == "cuda":
        fast = {**int8, "int8_kernel": "triton", "fuse_projections": True}
        rows += [(f"{label}, int8_weight_only, triton kernel, fused", {**changes, **fast}) for label, changes in loops]
    rows += [(f"{label}, fused", {**changes, "fuse_projections": True}) for label, changes in loops]
    other_api = "explicit" if base.compile_api == "generate" else "generate"
    rows += [(f"compile_api={other_api}", {"compile_api": other_api})]
    rows += [(f"pad_to_multiple_of={n}", {"pad_to_multiple_of": n}) for n in (8, 16, 32, 64)]
    rows += [("bnb 8-bit (compile off)", {"quantization": "bnb_8bit", "compile": "off"}),
             ("bnb 4-bit nf4, bf16 compute (compile off)",
              {"quantization": "bnb_4bit", "bnb_4bit_compute_dtype": "bfloat16", "compile": "off"}),
             ("bnb 4-bit nf4, double quant (compile off)",
              {"quantization": "bnb_4bit", "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_use_double_quant": True,
               "compile": "off"}),
             ("bnb 4-bit fp4 (compile off)",
              {"quantization": "bnb_4bit", "bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": "bfloat16",
               "compile": "off"}),
             ("bnb 4-bit nf4 with compile (invalid where not compileable)",
              {"quantization": "bnb_4bit", "bnb_4bit_compute_dtype": "bfloat16"}),
             ("prompt lookup (dynamic cache, no compile)",
              {"decoding": "prompt_lookup", "prompt_lookup_num_tokens": 10, "cache_implementation": "dynamic",
               "compile": "off"})]
    return rows


def project(space: SearchSpace, fields: dict) -> Candidate:
    """The configuration `space.suggest` would build from these knob values: a knob whose `when` holds takes
    its value (its first value where the given one is not in the space), every other knob keeps the
    Candidate default."""
    chosen: dict = {}
    for knob in space.knobs:
        if knob.values and knob.applies(chosen):
            value = fields.get(knob.name)
            chosen[knob.name] = value if value in knob.values else knob.values[0]
    return Candidate(**chosen)


def needs(space: SearchSpace, fields: dict, name: str) -> dict | None:
    """`fields` with what knob `name`'s `when` condition needs (sdpa_backend needs attn_implementation=sdpa,
    a bitsandbytes option its quantization), the conditions of those knobs in turn; None where a needed
    value is not in the space on this machine (prompt lookup's options on random weights)."""
    fields = dict(fields)
    pending = [name]
    while pending:
        for other, allowed in space.knob(pending.pop()).when:
            if fields.get(other) not in allowed:
                usable = [v for v in allowed if v in space.knob(other).values]
                if not usable:
                    return None
                fields[other] = usable[0]
                pending.append(other)
    return fields


def repair(space: SearchSpace, candidate: Candidate, keep: set[str]) -> tuple[Candidate, list[str]]:
    """`candidate` made valid by changing knobs not in `keep` where an `invalid` rule of `space` matches
    it: the rule's other knob takes its first value outside the rule (compile off beside bitsandbytes where it
    is not compileable, generate() beside the offloaded cache, no freezing beside generate(), no padding
    beside the flash SDPA kernel), rule after rule. Also the reasons of the rules it met. A rule on knobs of
    `keep` alone, or one whose other knobs have no other value, leaves it invalid."""
    reasons: list[str] = []
    for _ in range(len(space.rules)):
        rule = next((r for r in space.rules if r.matches(candidate)), None)
        if rule is None:
            break
        change = next(((knob, usable[0]) for knob, ruled in rule.conditions if knob not in keep
                       for usable in [[v for v in space.knob(knob).values if v not in ruled]] if usable), None)
        if change is None:
            break
        reasons.append(rule.reason)
        candidate = project(space, {**asdict(candidate), change[0]: change[1]})
    return candidate, reasons


def per_knob(base: Candidate, space: SearchSpace) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    """(label, changes to the base) for every knob value of `space` (as filtered for this machine)
    that the base does not hold: that knob changed alone, with what its condition needs. A change that is
    an invalid combination with the base is made valid by `repair` (bitsandbytes with compile off where it is
    not compileable, generate() with no freezing), the other knobs it changed in its label and the rules' reasons
    as its note; one that builds the base again (compile_api beside a decode loop) or a row before it is left
    out. Values left out on this machine get a row with the reason, as `skip_reason` gives it. Also
    {label: note}. `base` is as `project` gives it."""
    base_fields = asdict(base)
    rows: list[tuple[str, dict]] = [("base: " + base.describe(), {})]
    notes: dict[str, str] = {}
    seen = {base.key()}
    for knob in space.knobs:
        for value in knob.values:
            if base_fields.get(knob.name) == value:
                continue
            fields = needs(space, {**base_fields, knob.name: value}, knob.name)
            if fields is None:
                continue
            wanted = project(space, fields)
            # the knob and what its condition needs stay; the other knobs may change to make it valid
            keep = {knob.name} | {f for f, v in fields.items() if v != base_fields.get(f)}
            candidate, reasons = repair(space, wanted, keep)
            if getattr(candidate, knob.name) != value or candidate.key() in seen:
                continue
            seen.add(candidate.key())
            label = f"{knob.name}={value}"
            # the other knobs changed from the base that still apply: what the knob's condition needs (compile
            # default for coordinate descent, which max-autotune does already) and what the repair changed
            # (compile=off needs no word on fullgraph, nor bnb_8bit on the threshold it brings)
            applies = {k.name for k in space.knobs if k.applies(asdict(candidate)) and k.applies(base_fields)}
            extra = [f for f in KNOBS if f != knob.name and f in applies and getattr(candidate, f) != base_fields[f]]
            if extra:
                label += " (" + ", ".join(f"{f}={getattr(candidate, f)}" for f in extra) + ")"
            if reasons:
                notes[label] = "; ".join(reasons)
            rows.append((label, {f: v for f, v in asdict(candidate).items() if base_fields[f] != v}))
    rows += [(f"{knob}={value}", {knob: value}) for knob, value, _ in space.left_out]
    return rows, notes


# --loops: the ways to decode with a static cache (the seed guide's options 1 to 3), against plain generate()
LOOPS = ("dynamic cache, no compile (plain generate)", "base: ", "generate compile max-autotune fullgraph",
         "decode_loop=static_loop", "decode_loop=graph_loop", "compile_tuning=", "compile_freezing=", "quantization=int8_weight_only")

QUICK = ("base: ", "dynamic cache, no compile (plain generate)", "compile=off",
         "bnb 4-bit nf4, bf16 compute (compile off)", "compile_api=", "dtype=float16", "sdpa_backend=math",
         "pad_to_multiple_of=64")


def quick(rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """8 configurations, the most telling first: the base, plain generate, compile off, bnb 4-bit, the other
    compile API, float16, the math SDPA kernel and padding to 64."""
    return [row for prefix in QUICK for row in rows if row[0].startswith(prefix)][:8]


def selects(prefix: str, label: str) -> bool:
    """--only: a label that starts with `prefix`, or is `prefix` without its trailing "$" (one row alone)."""
    return label == prefix[:-1] if prefix.endswith("$") else label.startswith(prefix)


def prompts_of_length(model: str, length: int, count: int) -> tuple[str, ...]:
    """`count` prompts that the model's tokenizer turns into exactly `length` tokens each (cut from the
    built-in code prompts and kept only when they tokenize back to `length`)."""
    from autotune.runtime.loading import load_tokenizer

    tokenizer = load_tokenizer(model)
    text = "\n".join(default_prompts()) * 50
    ids = tokenizer(text)["input_ids"]
    found: list[str] = []
    for start in range(0, len(ids) - length, 7):
        prompt = tokenizer.decode(ids[start:start + length])
        if prompt.strip() and len(tokenizer(prompt)["input_ids"]) == length and prompt not in found:
            found.append(prompt)
            if len(found) == count:
                return tuple(found)
    raise SystemExit(f"could not cut {count} prompts of {length} tokens from the built-in prompts")


def skip_reason(space: SearchSpace, candidate: Candidate) -> str | None:
    """Why the machine cannot run `candidate`: a left-out knob value, or an invalid combination."""
    effective = candidate.effective()
    for knob, value, why in space.left_out:
        if getattr(effective, knob) == value:
            return f"{knob}={value}: {why}"
    return space.invalid_reason(candidate)


# what must be the same for --resume to take an earlier call's runs (besides the model)
RESUME_SETTINGS = ("prompt_tokens", "max_new_tokens", "repeats", "warmup", "env", "early_stop")


def earlier_results(out: str | None, model: str, args) -> list[dict]:
    """The rows an earlier call wrote into `out`, when it measured the same model with the same workload
    settings (else none, with a note: its figures would not compare)."""
    if not out or not Path(out).is_file():
        return []
    data = json.loads(Path(out).read_text())
    same = data.get("model") == model and all(
        json.dumps(data.get("args", {}).get(name), default=str) == json.dumps(getattr(args, name), default=str)
        for name in RESUME_SETTINGS)
    if not same:
        print(f"note: {out} was measured with another model or workload; --resume starts over", flush=True)
        return []
    return data.get("results", [])


def earlier_runs(results: list[dict]) -> dict:
    """(candidate key, batch size) -> an earlier run that measured a result (ok, or stopped early): what
    --resume does not measure again. Keyed by the configuration, not the row's label: a label names a
    change from the base, and the base may differ between calls."""
    runs = {}
    for row in results:
        key = Candidate.from_dict(row["candidate"]).key()
        for batch_size, run in row.get("runs", {}).items():
            if run.get("status") in ("ok", "stopped"):
                runs[(key, int(batch_size))] = run
    return runs


def measure_one(model: str, candidate: Candidate, workload: Workload, device: str, workdir: Path, args,
                stop_below: float | None = None) -> Measurement:
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=workdir))
    job = Job(model=model, candidate=candidate, workload=workload, device=device, role="benchmark",
              reference_path=str(job_dir / "unused.pt"), result_path=str(job_dir / "result.json"),
              repeats=args.repeats, warmup=args.warmup, stop_below=stop_below)
    env = {"TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor-cache"), **dict(args.env)}
    return launch(job, job_dir, args.timeout, env=env)


def fmt(value, spec: str, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return format(value if scale == 1.0 else value / scale, spec)


def table(results: list[dict], batch_sizes: list[int]) -> str:
    headers = ["config"] + [f"tok/s b{b}" for b in batch_sizes] + [
        f"peak GB b{batch_sizes[-1]}", "warm-up s", "recompiles"]
    lines = []
    for row in results:
        ms = [row["runs"].get(b) for b in batch_sizes]
        if row.get("skipped"):
            lines.append([row["label"], f"skipped: {row['skipped']}"])
            continue
        cells = [row["label"]]
        for m in ms:
            if m is None:
                cells.append("-")
            elif m["status"] == "ok":
                cells.append(fmt(m["decode_tokens_per_s"], ".1f"))
            elif m["status"] == "stopped":  # early stop: the one pass it ran, under the threshold
                cells.append(f"{fmt(m['decode_tokens_per_s'], '.1f')} (stopped)")
            else:
                cells.append(f"{m['status']} ({(m.get('message') or '').splitlines()[0][:60]})" if m.get("message")
                             else m["status"])
        last = ms[-1] or {}
        cells.append(fmt(last.get("peak_memory_bytes"), ".2f", 1e9))
        cells.append("/".join(fmt((m or {}).get("warmup_s"), ".1f") for m in ms))
        cells.append("/".join(fmt((m or {}).get("recompiles"), "d") for m in ms))
        lines.append(cells)
    measured = [line for line in lines if len(line) == len(headers)]
    widths = [max(len(str(r[i])) for r in [headers] + measured) for i in range(len(headers))]
    widths[0] = max([widths[0]] + [len(line[0]) for line in lines])
    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths))]
    out.append("-|-".join("-" * w for w in widths))
    for cells in lines:
        if len(cells) == 2 and cells[1].startswith("skipped"):
            out.append(f"{cells[0].ljust(widths[0])} | {cells[1]}")
        else:
            out.append(" | ".join(str(c).ljust(w) for c, w in zip(cells, widths)))
    return "\n".join(out)


def base_from(text: str) -> Candidate:
    """The base of the table from --base: a preset file (the configuration a study exported) or a Candidate
    as JSON."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a long JSON text is no file name
        is_file = False
    if is_file:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Candidate.from_dict(data["measurement"]["candidate"])
    return Candidate.from_json(text)


def env_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--env takes KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:gemma-2b", help="model folder, hub id or random:<architecture>")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--base", default=None,
                        help="the configuration every knob is varied from: a preset file (a study's best, e.g. "
                             "studies/g24.preset.json) or a Candidate as JSON (default: static cache + compile)")
    parser.add_argument("--dtype", default=None, help="dtype of the base (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="8 configurations, --budget-s 420 and --timeout 240 unless given (a few minutes)")
    parser.add_argument("--loops", action="store_true",
                        help="only the decode loops: plain generate, generate() with a static cache and its compile "
                             "(reduce-overhead; max-autotune + fullgraph), autotune's static loop")
    parser.add_argument("--table", nargs="+", default=None, metavar="OUT",
                        help="only print one table of these --out files (parts of one table measured side by side)")
    parser.add_argument("--per-knob", action="store_true",
                        help="one row per knob value of the default space (as this machine filters it) that the base "
                             "does not hold, that knob changed alone (issue 3's per-knob table); an invalid "
                             "combination with the base is made valid by changing the other knob of each rule it "
                             "meets (bitsandbytes with compile off), the reasons under the table")
    parser.add_argument("--candidates-out", default=None, metavar="FILE",
                        help="write the configurations of the table to FILE as a JSON list of candidates and measure "
                             "nothing (studies_gpu.sh part q measures them as trials of a study, with equivalence)")
    parser.add_argument("--early-stop", type=float, default=0.0,
                        help="stop a configuration after its first timed pass when it runs under this fraction of the "
                             "base's decode tok/s at that batch size (as a study's --early-stop); 0: never")
    parser.add_argument("--only", nargs="+", default=None,
                        help="run only configurations whose label starts so, in the order of these prefixes; a prefix "
                             "ending in $ selects the label that is exactly the rest")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker before it is killed")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no worker after this many seconds (default: 420 with --quick)")
    parser.add_argument("--workdir", default=None, help="folder for worker logs and the inductor cache")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs an earlier call wrote into --out and measure only the others")
    parser.add_argument("--out", default=None, help="also write every measurement to this JSON file")
    parser.add_argument("--env", nargs="+", default=[], type=env_item, metavar="KEY=VALUE",
                        help="environment of every worker, e.g. TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 (Inductor's "
                             "coordinate-descent tuning of its kernels, as gpt-fast sets it)")
    args = parser.parse_args(argv)
    if args.quick:  # leave room for the last worker and the table within a 10-minute command
        args.budget_s = 420 if args.budget_s is None else args.budget_s
        args.timeout = min(args.timeout, 240)
    return args


def merged_table(paths: list[str]) -> str:
    """One table of the rows of several --out files (a table measured in parts, one per GPU): the base rows
    first, each configuration once (from the file that measured it at the most batch sizes, the first of
    those)."""
    rows, batch_sizes = {}, set()
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        batch_sizes.update(data["args"]["batch_sizes"])
        for row in data["results"]:
            key = Candidate.from_dict(row["candidate"]).key()
            row = {**row, "runs": {int(b): run for b, run in row.get("runs", {}).items()}}
            measured = sum(run.get("status") in ("ok", "stopped") for run in row["runs"].values())
            if key not in rows or measured > rows[key][0]:
                rows[key] = (measured, row)
    results = sorted((row for _, row in rows.values()), key=lambda row: not row["label"].startswith("base: "))
    return table(results, sorted(batch_sizes))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.table:
        print(merged_table(args.table))
        return 0
    started = time.perf_counter()
    model = resolve_model(args.model)
    env = machine.probe(args.device)
    device = env["device"]
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    base = base_from(args.base) if args.base else base_candidate(device, dtype)
    space = machine.searched_space(SearchSpace.load("default"), env,
                                   Workload(prompts=("x",) * min(args.batch_sizes), batch_size=min(args.batch_sizes)),
                                   None, model)
    notes: dict[str, str] = {}
    left_out = {f"{knob}={value}": f"{knob}={value}: {why}" for knob, value, why in space.left_out} \
        if args.per_knob else {}
    if args.per_knob:
        base = project(space, asdict(base))
        rows, notes = per_knob(base, space)
    else:
        rows = variations(base, device)
    if args.quick:
        rows = quick(rows)
    if args.loops:
        rows = [row for prefix in LOOPS for row in rows if row[0].startswith(prefix)]
    if args.only:
        # in the order of the prefixes: a budget that runs out leaves the last ones unmeasured
        chosen = [row for prefix in args.only for row in rows if selects(prefix, row[0])]
        rows = [row for i, row in enumerate(chosen) if row not in chosen[:i]]
    if args.candidates_out:
        candidates = [asdict(replace(base, **changes)) for label, changes in rows if label not in left_out]
        Path(args.candidates_out).write_text(json.dumps(candidates, indent=1) + "\n", encoding="utf-8")
        print(f"{len(candidates)} configurations written to {args.candidates_out}")
        return 0
    need = max(args.batch_sizes)
    prompts = prompts_of_length(model, args.prompt_tokens, need)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="autotune-knobs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{model} on {env.get('device_name')} ({device}); torch {env['torch']}, transformers {env['transformers']}; "
          f"worker environment {dict(args.env) or 'as is'}; "
          f"{args.prompt_tokens}-token prompts, {args.max_new_tokens} new tokens, batch sizes {args.batch_sizes}; "
          f"{len(rows)} configurations; worker logs under {workdir}", flush=True)
    if models.is_random(model):
        print(f"note: {models.describe(model)}", flush=True)

    previous = earlier_results(args.out, model, args) if args.resume else []
    earlier = earlier_runs(previous)
    selected = {replace(base, **changes).key() for _, changes in rows}
    # rows of the earlier file that this call does not select (another --only, another base) are kept
    kept = [row for row in previous if Candidate.from_dict(row["candidate"]).key() not in selected]

    def save() -> None:  # after every run, so a session that ends midway keeps what it measured
        if args.out:
            Path(args.out).write_text(json.dumps({"model": model, "environment": env, "args": vars(args),
                                                  "base": asdict(base), "results": results + kept},
                                                 indent=1, default=str))

    results: list[dict] = []
    base_runs: dict[int, dict] = {}  # the base's figures by batch size, for --early-stop
    for label, changes in rows:
        candidate = replace(base, **changes)
        row = {"label": label, "candidate": candidate.to_dict(), "runs": {}}
        results.append(row)
        reason = left_out.get(label) or skip_reason(space, candidate)
        if reason is not None:
            row["skipped"] = reason
            print(f"- {label}: skipped: {reason}", flush=True)
            continue
        for batch_size in args.batch_sizes:
            if batch_size > 1 and candidate.decoding != "standard":
                continue  # transformers runs prompt lookup and assisted decoding at batch size 1 only
            done = earlier.get((candidate.key(), batch_size))
            if done is not None:  # --resume: measured by an earlier call into the same --out
                row["runs"][batch_size] = done
                print(f"- {label} [batch {batch_size}]: {done.get('decode_tokens_per_s')} tok/s, from the earlier run",
                      flush=True)
                continue
            if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
                if not row["runs"]:
                    row["skipped"] = f"--budget-s {args.budget_s:g} s spent"
                print(f"- {label} [batch {batch_size}]: not started: --budget-s {args.budget_s:g} s spent", flush=True)
                continue
            workload = Workload(prompts=prompts[:batch_size], batch_size=batch_size,
                                max_new_tokens=args.max_new_tokens)
            t0 = time.perf_counter()
            stop_below = None
            if args.early_stop and candidate.key() != base.key():
                base_run = base_runs.get(batch_size) or earlier.get((base.key(), batch_size))
                if base_run and base_run.get("status") == "ok":
                    stop_below = args.early_stop * base_run["decode_tokens_per_s"]
                else:
                    print(f"note: no figure of the base at batch {batch_size} yet: {label} runs to the end", flush=True)
            m = measure_one(model, candidate, workload, device, workdir, args, stop_below)
            row["runs"][batch_size] = {k: v for k, v in m.to_dict().items() if k not in ("runs", "environment")}
            if candidate.key() == base.key():
                base_runs[batch_size] = row["runs"][batch_size]
            what = (f"{m.decode_tokens_per_s:.1f} tok/s{' (stopped after one pass)' if m.stopped else ''}, peak {fmt(m.peak_memory_bytes, '.2f', 1e9)} GB, "
                    f"warm-up {m.warmup_s:.1f} s, recompiles {fmt(m.recompiles, 'd')}" if m.ok or m.stopped
                    else f"{m.status} ({m.failure_kind}): {(m.message or '').splitlines()[0][:200] if m.message else ''}")
            print(f"- {label} [batch {batch_size}]: {what}  [{time.perf_counter() - t0:.0f} s]", flush=True)
            save()
    save()
    print(f"\nknobs varied one at a time from the base ({base.describe()}); {model}, {device}, "
          f"{args.prompt_tokens}+{args.max_new_tokens} tokens, median of {args.repeats}; "
          f"{time.perf_counter() - started:.0f} s in all")
    print(table(results, args.batch_sizes))
    for label, note in notes.items():
        print(f"{label}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
