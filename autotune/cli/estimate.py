"""`autotune estimate`: what the candidates a search would run cost in memory (autotune.tuner.estimates): by
default a summary grouped by what drives memory, `--all` or `--json` every candidate."""

from __future__ import annotations

import json

import click

from autotune.cli.guard import guarded
from autotune.cli.options import option, options
from autotune.cli.output import console
from autotune.config.settings import workload_from_options

TERM_COLUMNS = ("weights", "KV cache", "assistant", "activations", "context/process", "kernels", "allocator",
                "compile")
# How far the memory model is from measured peaks, as docs/memory.md ("Calibration status") records it.
CALIBRATION = {
    "cpu": "CPU constants measured on a 2-core Xeon (torch 2.13): estimates 3-16 % above measured peaks",
    "cuda": "CUDA constants calibrated on an H200 (torch 2.11): estimates 0.96-1.09x the measured device memory",
}


def mib(n) -> str:
    return "-" if not n else f"{n / 2**20:,.1f}"


def fits_cell(fits) -> str:
    return {None: "-", True: "yes", False: "[red]no[/red]"}[fits]


def estimate_table(result, model: str):
    """Every candidate, term by term (`--all`)."""
    from rich.table import Table

    table = Table(title=f"memory estimates for {model} on {result.device} (MiB)")
    for column in ("#", "config", "dtype", *TERM_COLUMNS, "total", "fits"):
        table.add_column(column, justify="left" if column in ("config", "dtype", "fits") else "right")
    for number, (c, e) in enumerate(result.rows):
        table.add_row(str(number), c.describe(), e.dtype, mib(e.weights), mib(e.kv_cache), mib(e.assistant),
                      mib(e.activations), mib(e.cuda_context or e.process_baseline), mib(e.kernel_cache),
                      mib(e.allocator_overhead), mib(e.compile_workspace), mib(e.total), fits_cell(e.fits(result.budget)))
    return table


def summary_table(result, model: str, batch_size: int):
    """The candidates grouped by what drives their memory, with the range of each group and how many fit."""
    from rich.table import Table

    table = Table(title=f"memory of the candidates for {model} on {result.device}, batch {batch_size} (MiB)")
    for column in ("dtype", "quantization", "cache", "decoding", "candidates", "weights", "KV cache", "total",
                   "fit"):
        table.add_column(column, justify="left" if column in ("dtype", "quantization", "cache", "decoding")
                         else "right")
    for group in result.groups():
        low, high = group.total_range
        total = mib(low) if low == high else f"{mib(low)} - {mib(high)}"
        fit = "-" if result.budget is None else f"{group.fitting(result.budget)} of {group.count}"
        table.add_row(*group.key, str(group.count), mib(group.weights), mib(group.kv_cache), total, fit)
    return table


@click.command(help="Estimate the peak memory of the candidates `autotune search` would run with the same "
                    "options on this machine, without loading weights.\n\n"
                    "By default a summary: the candidates grouped by what drives their memory (dtype, "
                    "quantization, cache, decoding; the batch is the workload's), with the range of each group "
                    "and how many fit --vram. --all lists every candidate term by term.")
@option("model", help="Model folder, hub id or random:<architecture> (its config is all that is read).")
@options("vram", "space")
@option("device", help="Device to estimate for (cuda works on a machine without one: its packages are this "
                       "machine's).")
@options("prompts", "batch_size", "max_new_tokens", "assistant")
@click.option("--all", "show_all", is_flag=True, help="Every candidate, term by term, instead of the summary.")
@option("as_json", help="Print a JSON list of every candidate (candidate, config, estimate_bytes, terms, fits, "
                        "budget_bytes, device, dtype, max_cache_len).")
@guarded
def estimate(model, vram, space, device, prompts, batch_size, max_new_tokens, assistant, show_all, as_json):
    from autotune.memory import format_bytes
    from autotune.tuner.estimates import estimate_space

    workload = workload_from_options(dict(model=model, prompts=prompts, batch_size=batch_size,
                                          max_new_tokens=max_new_tokens))
    result = estimate_space(model, space, device, workload, assistant, vram)
    if as_json:
        click.echo(json.dumps(result.to_json_rows(), indent=1))
        return
    console.print(estimate_table(result, model) if show_all else summary_table(result, model, batch_size))
    lengths = "tokenizer" if result.lengths_from == "tokenizer" else "UTF-8 bytes (an upper bound: no tokenizer)"
    longest = max((e.max_cache_len for _, e in result.rows), default=0)
    console.print(f"{len(result.rows)} candidates ({result.invalid} invalid combinations left out); prompt lengths "
                  f"from {lengths}; KV cache length up to {longest} tokens")
    if result.budget is not None:
        fitting = sum(bool(e.fits(result.budget)) for _, e in result.rows)
        console.print(f"{fitting} of {len(result.rows)} fit in {format_bytes(result.budget)} ({vram})")
    console.print(f"{CALIBRATION[result.device]} (docs/memory.md)" +
                  ("" if show_all else "; every candidate: --all or --json"), style="dim")
