"""The weight-only int8 product of a decode step, alone: autotune's Triton kernel
(autotune.runtime.quant.int8_gemv) against torch forms Inductor compiles (the quantized layers'
`grouped_product`, a sum per group then over the groups, with its products in the input's dtype or in float32,
and `scaled_product` below, one sum of the scaled products) and against cuBLAS on bf16 weights, for the linear
layers of gemma-2b at 1 and 8 rows, and for the products that stacked siblings make (the fuse_projections knob,
autotune.runtime.quant.fusion: q + k + v, gate + up). Prints microseconds per call and the weight bytes read per
second.

    python benchmarks/int8_gemv.py [--out FILE.json]

CUDA only. After a warm-up (which compiles and autotunes), 100 calls of a product are captured in one CUDA
graph and replayed between CUDA events: device time, without launch overhead (the first version timed the
calls from Python: 14-90 us per call whatever the product, launch-bound). A row's figure is the median of 5
replays. The input is a fresh tensor of the layer's input width, as a
decode step gives it (in a model, Inductor may fuse the producer of that input into its own reduction,
which this benchmark does not show: profile_decode.py does).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

# (layer, out features, in features) of gemma-2b (hidden 2048, 8 heads of 256, 1 KV head, MLP 16384, vocab 256000)
SHAPES = [("q / o projection", 2048, 2048), ("k / v projection", 256, 2048), ("q + k + v stacked", 2560, 2048),
          ("gate / up projection", 16384, 2048), ("gate + up stacked", 32768, 2048), ("down projection", 2048, 16384),
          ("head", 256000, 2048)]
FORMS = ("triton", "grouped", "float32", "scaled", "cublas_bf16")


def time_us(fn, calls: int = 100, runs: int = 5) -> float:
    """Device microseconds per call: `calls` calls captured in one CUDA graph (no launch overhead, as in
    the graph loop), the graph replayed `runs` times between CUDA events; the median."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # compiles, autotunes
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return statistics.median(times)


def scaled_product(x, weight, scales):
    """The same product as `grouped_product` in one reduction: each product, in float32, times its group's
    scale, summed over all input features. Compiled, one kernel per product; eager, it would hold an
    (out x in) float32 copy. Measured slower than the grouped form (docs/results.md), so only this benchmark
    keeps it."""
    import torch

    products = x.unsqueeze(-2) * weight.to(x.dtype)  # (..., out, in)
    scaled = products.unflatten(-1, (scales.shape[1], -1)).to(torch.float32) * scales.unsqueeze(-1)
    return scaled.sum(dim=(-2, -1)).to(x.dtype)


def measure(rows_list: list[int], mode: str, groups: list[int]) -> list[dict]:
    import torch

    from autotune.runtime.quant import int8_gemv
    from autotune.runtime.quant.quantize import GROUP_SIZE, group_size, grouped_product, quantize_rows

    results = []
    for name, n, k in SHAPES:
        weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        # groups as this width takes them (one that does not divide it is the whole row): each once
        for group in dict.fromkeys(group_size(k, group) for group in groups):
            q, scales = quantize_rows(weight, group=group)
            for rows in rows_list:
                x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
                torch._dynamo.reset()  # a compilation per shape, as in a model (no recompile limit to hit)
                grouped = torch.compile(grouped_product, fullgraph=True, dynamic=False, mode=mode)
                float32 = torch.compile(functools.partial(grouped_product, compute=torch.float32), fullgraph=True,
                                        dynamic=False, mode=mode)
                scaled = torch.compile(scaled_product, fullgraph=True, dynamic=False, mode=mode)
                figures = {"layer": name, "out": n, "in": k, "rows": rows, "mode": mode, "group": group,
                           # the kernel takes groups of GROUP_SIZE only
                           "triton_us": time_us(lambda: int8_gemv.int8_weight_only_mm(x, q, scales))
                           if group == GROUP_SIZE else None,
                           "grouped_us": time_us(lambda: grouped(x, q, scales)),
                           "float32_us": time_us(lambda: float32(x, q, scales)),
                           "scaled_us": time_us(lambda: scaled(x, q, scales)),
                           "cublas_bf16_us": time_us(lambda: torch.nn.functional.linear(x, weight))}
                for form in FORMS:
                    weight_bytes = (2 if form == "cublas_bf16" else 1) * n * k
                    us = figures[f"{form}_us"]
                    figures[f"{form}_tb_s"] = None if us is None else weight_bytes / us / 1e6
                results.append(figures)
    return results


def table(results: list[dict]) -> str:
    lines = ["| layer | rows | group | int8, autotune's kernel | int8, Inductor, grouped | int8, Inductor, grouped in "
             "float32 | int8, Inductor, scaled | bf16, cuBLAS |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        cells = " | ".join("-" if r[f"{form}_us"] is None else f"{r[f'{form}_us']:.1f} us, {r[f'{form}_tb_s']:.2f} TB/s"
                           for form in FORMS)
        lines.append(f"| {r['layer']} ({r['out']} x {r['in']}) | {r['rows']} | {r['group']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--mode", default=None, choices=[None, "max-autotune-no-cudagraphs"],
                        help="torch.compile mode of the two Inductor forms (max-autotune-no-cudagraphs: as the "
                             "study's best compiles, without the CUDA graphs that this script captures itself)")
    parser.add_argument("--groups", type=int, nargs="+", default=[128],
                        help="input features per scale to quantize with (the model's layers take 128; larger groups "
                             "make fewer, longer per-group sums, and a group as wide as the row is one scale per row)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    import torch

    from autotune.runtime.quant import int8_gemv
    if not torch.cuda.is_available() or int8_gemv.triton is None:
        print("int8_gemv.py needs CUDA and Triton", file=sys.stderr)
        return 2
    results = measure(args.rows, args.mode, args.groups)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
