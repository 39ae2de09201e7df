"""`autotune estimate`: the estimated peak memory of every candidate a search would run (autotune.tuner.estimates)."""

from __future__ import annotations

import json

import click

from autotune.cli.guard import guarded
from autotune.cli.options import option, options
from autotune.cli.output import console
from autotune.config.settings import workload_from_options

TERM_COLUMNS = ("weights", "KV cache", "assistant", "activations", "context/process", "kernels", "allocator",
                "compile")


def mib(n) -> str:
    return "-" if not n else f"{n / 2**20:,.1f}"


def estimate_table(result, model: str):
    from rich.table import Table

    table = Table(title=f"memory estimates for {model} on {result.device} (MiB)")
    for column in ("#", "config", "dtype", *TERM_COLUMNS, "total", "fits"):
        table.add_column(column, justify="left" if column in ("config", "dtype", "fits") else "right")
    for number, (c, e) in enumerate(result.rows):
        fits = {None: "-", True: "yes", False: "[red]no[/red]"}[e.fits(result.budget)]
        table.add_row(str(number), c.describe(), e.dtype, mib(e.weights), mib(e.kv_cache), mib(e.assistant),
                      mib(e.activations), mib(e.cuda_context or e.process_baseline), mib(e.kernel_cache),
                      mib(e.allocator_overhead), mib(e.compile_workspace), mib(e.total), fits)
    return table


@click.command(help="Estimate the peak memory of every candidate `autotune search` would run with the same "
                    "options on this machine, without loading weights.\n\n"
                    "Sizes come from the model's config (parameters counted on the meta device), the workload's "
                    "prompt lengths and the candidate's knobs; each term is shown, and whether it fits --vram.")
@option("model", help="Model folder, hub id or random:<architecture> (its config is all that is read).")
@options("vram", "space")
@option("device", help="Device to estimate for (cuda works on a machine without one: its packages are this "
                       "machine's).")
@options("prompts", "batch_size", "max_new_tokens", "assistant")
@option("as_json", help="Print a JSON list (candidate, config, estimate_bytes, terms, fits, budget_bytes, device, "
                        "dtype, max_cache_len).")
@guarded
def estimate(model, vram, space, device, prompts, batch_size, max_new_tokens, assistant, as_json):
    from autotune.memory import format_bytes
    from autotune.tuner.estimates import estimate_space

    workload = workload_from_options(dict(prompts=prompts, batch_size=batch_size, max_new_tokens=max_new_tokens))
    result = estimate_space(model, space, device, workload, assistant, vram)
    if as_json:
        click.echo(json.dumps(result.to_json_rows(), indent=1))
        return
    console.print(estimate_table(result, model))
    lengths = "tokenizer" if result.lengths_from == "tokenizer" else "UTF-8 bytes (an upper bound: no tokenizer)"
    longest = max((e.max_cache_len for _, e in result.rows), default=0)
    console.print(f"{len(result.rows)} candidates ({result.invalid} invalid combinations left out); prompt lengths "
                  f"from {lengths}; KV cache length up to {longest} tokens")
    if result.budget is not None:
        fitting = sum(bool(e.fits(result.budget)) for _, e in result.rows)
        console.print(f"{fitting} of {len(result.rows)} fit in {format_bytes(result.budget)} ({vram})")
