"""autotune.runtime.quant.int8_gemv: the Triton kernel of weight-only int8 decode steps.

On CPU every tile the autotuner can pick runs in Triton's interpreter (TRITON_INTERPRET=1, set before
Triton is imported, so in a child process); on CUDA the autotuned custom op runs eagerly, compiled with
fullgraph and inside a captured CUDA graph, and the quantized linear layer takes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from autotune.config.preset import check_weight_hints
from autotune.runtime.quant import apply_weight_hints, int8_gemv
from autotune.config.candidate import Candidate
from autotune.runtime.quant.quantize import Int8WeightOnlyLinear, dequantize, quantize_rows

needs_triton = pytest.mark.skipif(int8_gemv.triton is None, reason="Triton is not installed")

# Every tile of every row bucket against a float64 reference of the same int8 weights and scales.
INTERPRETED = r"""
import json, sys, torch
from autotune.runtime.quant import int8_gemv
from autotune.runtime.quant.quantize import dequantize, quantize_rows

torch.manual_seed(0)
errors = []
for rows, n, k in json.loads(sys.argv[1]):
    q, scales = quantize_rows(torch.randn(n, k))
    x = torch.randn(rows, k).to(torch.bfloat16)
    reference = x.double() @ dequantize(q, scales, torch.float64).T
    block_m = int8_gemv.triton.next_power_of_2(rows)
    for tile_rows, chunk, warps, stages in int8_gemv._TILES[block_m]:
        out = int8_gemv.launch(int8_gemv._int8_gemv, x, q, scales, ROWS=tile_rows, CHUNK=chunk, num_warps=warps,
                               num_stages=stages)
        assert out.dtype == torch.bfloat16 and out.shape == (rows, n), (out.dtype, out.shape)
        # bf16 output: within one bf16 step of the reference's magnitude
        errors.append(((out.double() - reference).abs() / reference.abs().clamp(min=1.0)).max().item())
print(json.dumps({"tiles": len(errors), "worst": max(errors)}))
"""


@needs_triton
def test_every_tile_computes_the_dequantized_product_in_the_interpreter():
    # with few groups (a CHUNK past the width) and with many (several steps, a partial last one: 37, 70 groups)
    shapes = [(1, 64, 128), (1, 37, 640), (2, 40, 256), (3, 40, 384), (4, 9, 128), (5, 256, 256), (8, 33, 128),
              (1, 7, 128 * 37), (2, 5, 128 * 70), (3, 5, 128 * 70), (8, 3, 128 * 37)]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", INTERPRETED, json.dumps(shapes)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tiles"] == sum(len(int8_gemv._TILES[int8_gemv.triton.next_power_of_2(r)]) for r, _, _ in shapes)
    assert report["worst"] <= 2 ** -7  # one bf16 step (8 bits of mantissa)


def test_the_kernel_is_a_knob_and_taken_only_for_a_few_rows_grouped_on_cuda():
    """`int8_kernel=triton` of a weight-only int8 candidate: a runtime hint the layers are built with (and left
    out of the keys of older candidates); the kernel runs where `available()`."""
    triton_candidate = Candidate(quantization="int8_weight_only", int8_kernel="triton", compile="default",
                                 cache_implementation="static")
    assert triton_candidate.runtime()["int8_kernel"] == "triton"
    assert "int8_kernel" not in Candidate(**{**triton_candidate.to_dict(), "int8_kernel": "inductor"}).runtime()
    assert Candidate(int8_kernel="triton").effective().int8_kernel == "inductor"  # no int8: no kernel
    assert Candidate(int8_kernel="inductor").key() == Candidate().key()
    model = torch.nn.Sequential(torch.nn.Linear(256, 8))
    apply_weight_hints(model, triton_candidate.runtime())
    assert model[0].kernel == "triton"
    with pytest.raises(ValueError, match="int8_kernel"):
        check_weight_hints({"int8_kernel": "cuda"})
    x, grouped, per_row = torch.randn(1, 1, 256), torch.ones(8, 2), torch.ones(8, 1)
    assert not int8_gemv.available(x, grouped)  # a CPU tensor: the torch path of the quantized layers
    if int8_gemv.triton is not None and torch.cuda.is_available():
        assert int8_gemv.available(x.cuda(), grouped)
        assert not int8_gemv.available(x.cuda(), per_row)  # a width that is no multiple of the group
        assert not int8_gemv.available(torch.randn(1, int8_gemv.MAX_ROWS + 1, 256, device="cuda"), grouped)


@pytest.mark.gpu
@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_op_runs_eager_compiled_and_captured_on_cuda(rows):
    torch.manual_seed(0)
    q, scales = quantize_rows(torch.randn(2048, 4096, device="cuda").to(torch.bfloat16))
    x = torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16)
    reference = (x.float() @ dequantize(q, scales, torch.float32).T).to(torch.bfloat16)
    eager = int8_gemv.int8_weight_only_mm(x, q, scales)
    torch.testing.assert_close(eager, reference, rtol=2 ** -7, atol=1e-2)
    compiled = torch.compile(int8_gemv.int8_weight_only_mm, fullgraph=True)
    torch.testing.assert_close(compiled(x, q, scales), eager)
    graph, static_x = torch.cuda.CUDAGraph(), x.clone()
    with torch.cuda.graph(graph):
        static_out = compiled(static_x, q, scales)
    static_x.copy_(x * 2)
    graph.replay()
    torch.testing.assert_close(static_out, int8_gemv.int8_weight_only_mm(x * 2, q, scales))


@pytest.mark.gpu
@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_quantized_linear_takes_the_kernel_for_decode_rows_on_cuda():
    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 384, bias=True).to("cuda", torch.bfloat16)
    int8 = Int8WeightOnlyLinear.from_linear(linear, kernel="triton")
    dequantized = dequantize(int8.weight, int8.scales, torch.float32)
    for rows in (1, int8_gemv.MAX_ROWS, int8_gemv.MAX_ROWS + 5):  # the last one: the prefill's matrix product
        x = torch.randn(1, rows, 512, device="cuda", dtype=torch.bfloat16)
        expected = torch.nn.functional.linear(x.float(), dequantized, linear.bias.float())
        torch.testing.assert_close(int8(x).float(), expected, rtol=2e-2, atol=2e-2)


def test_the_benchmark_table_has_a_column_per_form():
    """benchmarks/int8_gemv.py: one column per form it times (the kernel, Inductor's grouped form in the input's
    dtype and in float32, the scaled form, bf16 cuBLAS), each with its time and weight bytes per second."""
    from support import load_benchmark

    bench = load_benchmark("int8_gemv")
    row = {"layer": "head", "out": 256000, "in": 2048, "rows": 1, "group": 128}
    for i, form in enumerate(bench.FORMS):
        row[f"{form}_us"], row[f"{form}_tb_s"] = 100.0 + i, 3.0 + i / 10
    wide = {**row, "group": 2048, "triton_us": None, "triton_tb_s": None}  # the kernel takes groups of 128 only
    header, rule, line, wide_line = bench.table([row, wide]).splitlines()
    assert header.count("|") == rule.count("|") == line.count("|") == wide_line.count("|") == len(bench.FORMS) + 4
    assert "in float32" in header and "102.0 us, 3.20 TB/s" in line  # the float32 form's own cells
    assert "| 2048 | - | 101.0 us" in wide_line
