"""A CUDA kernel for weight-only int8 decode steps (the `int8_kernel=triton` knob): `x @ dequantized(weight).T`
for a few rows of x.

A decode step at batch 1-8 is a matrix-vector product bound by reading the weights. Written in plain
torch (`autotune.runtime.quant.quantize`), Inductor compiles it into a reduction that fuses the layer's input
into every output row, and into two kernels per product with a float32 buffer between them. This Triton kernel
takes the input as it is (a custom op: Inductor materializes its input once), reads each int8 tile of the
weight once, and adds each group of 128 input features in float32, scaled (a float32 scale per output row and
group), in one kernel per product.
`triton.autotune` picks the tile per shape (rows, out features, in features) on the first call, which the
decode loops make before they capture a CUDA graph.

It is a `torch.library.triton_op`: torch.compile (fullgraph too) sees through it and CUDA graphs capture
it. The quantized layers take it when built with kernel "triton" where `available()` (Triton, CUDA, a few
rows, scales per group). It is faster than Inductor's reduction on small products and slower on a large head
(benchmarks/int8_gemv.py, docs/results.md): a knob, so that studies measure it.
"""

from __future__ import annotations

import torch

from autotune.runtime.hints import DECODE_PRODUCT_ROWS

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch path of autotune.runtime.quant.quantize
    triton = None

# The largest number of rows (batch x tokens) the kernel takes; more rows run as a matrix product.
MAX_ROWS = DECODE_PRODUCT_ROWS
# Input features per float32 scale (the quantized layers): one group is one step of the kernel's loop.
GROUP_SIZE = 128


def available(x: torch.Tensor, scales: torch.Tensor) -> bool:
    """Whether the kernel can run this input: Triton installed, a CUDA tensor, at most MAX_ROWS rows, and
    scales per group of GROUP_SIZE input features (not one per row: a width that is no multiple of it)."""
    width = x.shape[-1]
    return (triton is not None and x.is_cuda and x.numel() // width <= MAX_ROWS
            and scales.shape[-1] * GROUP_SIZE == width)


if triton is not None:

    @triton.jit
    def _int8_gemv(x_ptr, w_ptr, s_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_sn, stride_om,
                   BLOCK_M: tl.constexpr, ROWS: tl.constexpr, CHUNK: tl.constexpr, GROUP: tl.constexpr):
        """One program: ROWS output features for all M (<= BLOCK_M) input rows. Each step loads CHUNK whole
        groups of each of its rows (ROWS x CHUNK x GROUP int8, each row's part contiguous: the whole tile is
        one contiguous block where CHUNK groups are the whole width), sums each group in float32, scales it
        and adds the groups of each row. One kernel per product: no float32 buffer of per-group sums between
        two reductions, as Inductor's form has."""
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        chunk = tl.arange(0, CHUNK)
        rk = tl.arange(0, GROUP)
        rm = tl.arange(0, BLOCK_M)
        groups = K // GROUP
        acc = tl.zeros((BLOCK_M, ROWS), dtype=tl.float32)
        for first in range(0, groups, CHUNK):
            group = first + chunk
            live = (rows[:, None] < N) & (group[None, :] < groups)  # ROWS x CHUNK
            # in int64: a weight of 2^31 elements or more (a 256000 x 8192 head) overflows int32 offsets
            offsets = rows[:, None, None].to(tl.int64) * stride_wn + group[None, :, None] * GROUP + rk[None, None, :]
            w = tl.load(w_ptr + offsets, mask=live[:, :, None], other=0).to(tl.float32)  # ROWS x CHUNK x GROUP
            scales = tl.load(s_ptr + rows[:, None] * stride_sn + group[None, :], mask=live, other=0.0)
            for m in tl.static_range(BLOCK_M):
                x_live = (group[:, None] < groups) & (rk[None, :] * 0 + m < M)  # CHUNK x GROUP
                x = tl.load(x_ptr + m * stride_xm + group[:, None] * GROUP + rk[None, :], mask=x_live,
                            other=0.0).to(tl.float32)
                part = tl.sum(tl.sum(w * x[None, :, :], axis=2) * scales, axis=1)  # ROWS
                acc = tl.where(rm[:, None] == m, acc + part[None, :], acc)
        tl.store(out_ptr + rm[:, None] * stride_om + rows[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=(rm[:, None] < M) & (rows[None, :] < N))

    # (ROWS, CHUNK, warps, stages) per row bucket: a weight tile of ROWS x CHUNK groups of 128, 2-8k int8,
    # in float32 within ~64 registers a thread. gemma-2b's widths of 2048 are 16 groups: CHUNK 16 reads
    # whole rows, ROWS of them in one contiguous block (the head: 256000 rows); the down projection's 16384
    # (128 groups, 2048 rows) takes one or two rows a program over several steps. Each program reads the
    # input again (2 x BLOCK_M / ROWS bytes a weight byte, from the caches): more rows a tile with more input
    # rows. The loop has no dot, so Triton does not pipeline it: stages are 1.
    _TILES = {1: [(1, 16, 4, 1), (2, 16, 4, 1), (4, 16, 8, 1), (8, 8, 8, 1), (1, 32, 8, 1), (2, 32, 8, 1),
                  (1, 64, 8, 1), (16, 4, 8, 1)],
              2: [(1, 16, 4, 1), (2, 16, 8, 1), (4, 8, 8, 1), (8, 4, 8, 1)],
              4: [(2, 16, 8, 1), (4, 8, 8, 1), (8, 4, 8, 1), (16, 2, 8, 1)],
              8: [(4, 8, 8, 1), (8, 4, 8, 1), (16, 2, 8, 1), (16, 1, 4, 1)]}

    def _configs(block_m: int) -> list:
        return [triton.Config({"ROWS": rows, "CHUNK": chunk}, num_warps=w, num_stages=stages)
                for rows, chunk, w, stages in _TILES[block_m]]

    # one autotuner per row bucket (1, 2, 4, 8 rows: BLOCK_M), each with tiles that fit its registers
    _KERNELS = {block_m: triton.autotune(configs=_configs(block_m), key=["M", "N", "K"])(_int8_gemv)
                for block_m in (1, 2, 4, 8)}

    def launch(kernel, x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, **config) -> torch.Tensor:
        """Run `kernel` (an autotuned one, or `_int8_gemv` with a tile in `config`) on x (rows, in)."""
        # a compile that has seen several shapes makes them symbolic sizes: int() specializes each (a guard:
        # another shape compiles again), as the tile bucket, BLOCK_M and the autotuner's key must be plain ints
        rows, n, k = (int(size) for size in (x.shape[0], weight.shape[0], x.shape[1]))
        strides = (int(x.stride(0)), int(weight.stride(0)), int(scales.stride(0)))
        out = torch.empty((rows, n), dtype=x.dtype, device=x.device)

        def grid(meta):
            return (triton.cdiv(n, meta["ROWS"]),)

        kernel[grid](x, weight, scales, out, rows, n, k, *strides, n, BLOCK_M=triton.next_power_of_2(rows),
                     GROUP=GROUP_SIZE, **config)
        return out

    @torch.library.triton_op("autotune::int8_weight_only_mm", mutates_args=())
    def int8_weight_only_mm(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """`x @ dequantized(weight).T` for x of shape (rows, in), rows <= MAX_ROWS; weight int8 (out, in),
        scales float32 (out, in / GROUP_SIZE)."""
        torch._check(scales.shape[1] * GROUP_SIZE == x.shape[1],
                     lambda: f"int8_weight_only_mm takes a scale per {GROUP_SIZE} input features, not {scales.shape}")
        x, weight = x.contiguous(), weight.contiguous()
        kernel = _KERNELS[triton.next_power_of_2(int(x.shape[0]))]
        return launch(torch.library.wrap_triton(kernel), x, weight, scales.contiguous())


def int8_linear(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """`x @ dequantized(weight).T` over the last dimension of x (any leading shape), through the kernel."""
    flat = x.reshape(-1, x.shape[-1])
    return int8_weight_only_mm(flat, weight, scales).reshape(*x.shape[:-1], weight.shape[0])
