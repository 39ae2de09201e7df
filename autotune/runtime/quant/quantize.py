"""Weight-only int8 quantization in plain PyTorch: the `int8_weight_only` value of the quantization knob.

At batch 1 a decode step reads every weight once, so its time is the weights' bytes over the memory
bandwidth (the roofline of ../shared/DESIGN.md). Storing the linear layers' weights in int8 halves those
bytes against bf16. Each output row keeps one float32 scale per group of 128 input features (symmetric,
absmax / 127). A decode step (a few rows) sums `x * weight` per group, scales and sums the groups, which
Inductor compiles into reductions that read the weights as int8, or, with the `int8_kernel=triton` knob,
runs the Triton kernel of `autotune.runtime.quant.int8_gemv` (one kernel per product). A prefill
runs `linear(x, dequantized weight)` a few thousand rows at a time. Eager, the conversion makes a float copy of
every weight per forward, slower than no quantization (the default search space allows int8 with compilation
only). This is gpt-fast's and torchao's weight-only int8, with groups; no package beyond torch (and Triton,
which CUDA builds of torch bring) is needed, and bitsandbytes (whose int8 is LLM.int8(), with outlier decomposition)
does not offer it.

The model is loaded in its dtype first, then each `nn.Linear` is replaced in place, one at a time, so
the load peaks at the unquantized weights (the memory model counts those). The embedding stays as it is;
a language-model head tied to it gets an int8 copy of its own.
"""

from __future__ import annotations

import torch
from torch import nn

from autotune.runtime.hints import INT8_KERNELS, INT8_PREFILL_CHUNK_ELEMENTS
from autotune.runtime.quant.int8_gemv import GROUP_SIZE as GEMV_GROUP_SIZE
from autotune.runtime.quant.int8_gemv import MAX_ROWS, available, int8_linear

INT8_WEIGHT_ONLY = "int8"
# Up to this many rows (batch x new tokens) a forward is a matrix-vector product bound by reading the
# weights, and runs as product + sum; above it, as a matrix product of a float copy of the weight.
GEMV_ROWS = MAX_ROWS
# Input features per scale. One scale per whole output row loses agreement with a bf16 baseline (0.988
# top-1 on codelm-12m, under the 0.99 bar); one per 128 input features keeps it (1.000), for 3 % more bytes
# (a float32 scale per 128 int8 weights). Layers whose input width is not a multiple of it keep one scale per
# row.
GROUP_SIZE = GEMV_GROUP_SIZE
# Weights a prefill dequantizes at a time.
PREFILL_CHUNK_ELEMENTS = INT8_PREFILL_CHUNK_ELEMENTS


@torch.library.custom_op("autotune::materialize", mutates_args=())
def materialize(x: torch.Tensor) -> torch.Tensor:
    """A copy of `x`: torch.compile computes `x` into a buffer of its own before this op, and the copy's
    readers read that buffer; none of them recomputes what made `x`."""
    return x.clone()


@materialize.register_fake
def _materialize_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def needs_barrier(in_features: int, out_features: int) -> bool:
    """Whether a compiled decode step computes a product's input into a buffer of its own (`materialize`)
    first: for products wider in than out (an MLP's down projection). Without it Inductor fuses what makes
    the input (gelu(gate) * up) into the reduction and recomputes it for every output row: the int8 decode
    step runs about 1.3x faster with the barrier (docs/results.md)."""
    return in_features > out_features


class Int8WeightOnlyLinear(nn.Module):
    """An `nn.Linear` whose weight is int8 with a float32 scale per output feature and group of GROUP_SIZE
    input features (`scales`: out x groups)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None,
                 barrier_widths: tuple[tuple[int, int], ...] | None = None, kernel: str = "inductor"):
        super().__init__()
        if kernel not in INT8_KERNELS:
            raise ValueError(f"unknown int8 kernel {kernel!r}; one of {', '.join(INT8_KERNELS)}")
        self.kernel = kernel
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)
        # (in, out) of the products this one computes, for `needs_barrier`: itself, or each projection that
        # a stacked product of siblings stands for (`fuse_siblings`)
        self.barrier_widths = barrier_widths or ((self.in_features, self.out_features),)

    @classmethod
    def from_linear(cls, linear: nn.Linear, kernel: str = "inductor") -> "Int8WeightOnlyLinear":
        weight, scales = quantize_rows(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(weight, scales, bias, kernel=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_forward(x, self.weight, self.scales, self.bias, self.barrier_widths, self.kernel)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"groups={self.scales.shape[1]}, bias={self.bias is not None}, kernel={self.kernel}")


def int8_forward(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None,
                 barrier_widths: tuple[tuple[int, int], ...], kernel: str = "inductor") -> torch.Tensor:
    """`linear(x, dequantized weight, bias)`: a decode step's product (a few rows) through the Triton kernel
    where `kernel` is "triton" and it can run `x`, else as `grouped_product` (its input behind a barrier where
    one of `barrier_widths` needs it, when compiled); a prefill's as `dequantized_linear`."""
    rows = x.numel() // x.shape[-1]
    if kernel == "triton" and available(x, scales):
        out = int8_linear(x, weight, scales)
    elif rows <= GEMV_ROWS:
        if torch.compiler.is_compiling() and any(needs_barrier(i, o) for i, o in barrier_widths):
            x = materialize(x)
        out = grouped_product(x, weight, scales)
    else:  # prefill: matrix products of float copies of a few thousand rows of the weight at a time
        out = dequantized_linear(x, weight, scales)
    return out if bias is None else out + bias.to(x.dtype)


def grouped_product(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
                    compute: torch.dtype | None = None) -> torch.Tensor:
    """A decode step's `x @ dequantized(weight).T` in torch: a product and a sum over each group of input
    features, scaled, summed over the groups; the products in `compute` (the input's dtype unless given).
    Compiled, Inductor makes reductions of it that load the int8 weight themselves (no float copy)."""
    compute = compute or x.dtype
    products = x.unsqueeze(-2).to(compute) * weight.to(compute)  # (..., out, in)
    per_group = products.unflatten(-1, (scales.shape[1], -1)).sum(dim=-1, dtype=torch.float32)
    return (per_group * scales).sum(dim=-1).to(x.dtype)


def dequantized_linear(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """A prefill's `x @ dequantized(weight).T`: matrix products over PREFILL_CHUNK_ELEMENTS weights at a time,
    so the float copy stays small (a 256k-token head at once would be 2 GiB in float32)."""
    rows = prefill_chunk_rows(weight.shape[1])
    parts = [nn.functional.linear(x, dequantize(weight[start:start + rows], scales[start:start + rows], x.dtype))
             for start in range(0, weight.shape[0], rows)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # most layers fit one chunk: no copy


def prefill_chunk_rows(in_features: int) -> int:
    """Output rows a prefill dequantizes at a time (autotune.memory counts that copy)."""
    return max(1, PREFILL_CHUNK_ELEMENTS // in_features)


def group_size(in_features: int, group: int = GROUP_SIZE) -> int:
    """Input features per scale: `group` where it divides the width, else the whole row."""
    return group if in_features % group == 0 else in_features


def quantize_rows(weight: torch.Tensor, chunk_rows: int = 4096,
                  group: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row and group of input features (`group` of them where it divides the width, else
    the whole row): `weight ~= int8 * scales` with the float32 scales (out x groups) repeated over each
    group. Done `chunk_rows` rows at a time, so the float32 working copy stays small (a 256k-token head is
    2 GB in float32). The model's layers take GROUP_SIZE; other groups are for benchmarks/int8_gemv.py."""
    rows, width = weight.shape
    group = group_size(width, group)
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scales = torch.empty(rows, width // group, dtype=torch.float32, device=weight.device)
    for start in range(0, rows, chunk_rows):
        w = weight[start:start + chunk_rows].float().unflatten(-1, (width // group, group))
        s = w.abs().amax(dim=-1).clamp(min=1e-12) / 127.0
        q[start:start + chunk_rows] = torch.round(w / s[..., None]).clamp(-128, 127).to(torch.int8).flatten(-2)
        scales[start:start + chunk_rows] = s
    return q, scales


def dequantize(weight: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float weight that `weight` (int8) and `scales` (out x groups) stand for, in `dtype`."""
    grouped = weight.unflatten(-1, (scales.shape[1], -1)).to(torch.float32) * scales[..., None]
    return grouped.flatten(-2).to(dtype)


def quantize_int8_weight_only(model: nn.Module, kernel: str = "inductor") -> int:
    """Replace every `nn.Linear` of `model` by an `Int8WeightOnlyLinear` whose decode steps use `kernel`, in
    place; returns how many."""
    targets = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for parent, name in targets:  # one at a time: each float weight is freed before the next is converted
        setattr(parent, name, Int8WeightOnlyLinear.from_linear(getattr(parent, name), kernel))
    if targets and any(p.is_cuda for p in model.parameters()):
        torch.cuda.empty_cache()  # the float weights' blocks, back to the device for the caches to come
    return len(targets)


def apply_weight_quantization(model: nn.Module, scheme: str | None, kernel: str | None = None) -> int:
    """Apply a preset's / candidate's `weight_quantization` runtime hint (None: nothing), its decode steps
    through `kernel` (the `int8_kernel` hint; None: "inductor")."""
    if scheme is None:
        return 0
    if scheme != INT8_WEIGHT_ONLY:
        raise ValueError(f"unknown weight quantization {scheme!r}; this autotune knows {INT8_WEIGHT_ONLY!r}")
    return quantize_int8_weight_only(model, kernel or "inductor")
