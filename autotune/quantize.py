"""Weight-only int8 quantization in plain PyTorch: the `int8_weight_only` value of the quantization knob.

At batch 1 a decode step reads every weight once, so its time is the weights' bytes over the memory
bandwidth (the roofline of ../shared/DESIGN.md). Storing the linear layers' weights in int8 halves those
bytes against bf16. Each output row keeps one scale (symmetric, absmax / 127); the forward is
`(x * weight).sum(-1) * scale` for decode steps (a few rows) and `linear(x, weight.to(x.dtype)) * scale`
for a prefill. Compiled (torch.compile, as with a static cache), Inductor turns a decode step's product and
sum into one reduction kernel that reads the weights as int8; eager, the int8-to-float conversion makes a
float copy of every weight per forward, slower than no quantization (the default search space allows it
with compilation only). This is the recipe of PyTorch's gpt-fast and of torchao's first int8 weight-only
kernel; no package beyond torch is needed, and bitsandbytes (whose int8 is LLM.int8(), with outlier
decomposition) does not offer it.

The model is loaded in its dtype first, then each `nn.Linear` is replaced in place, one at a time, so
the load peaks at the unquantized weights (the memory model counts those). The embedding stays as it is;
a language-model head tied to it gets an int8 copy of its own.
"""

from __future__ import annotations

import torch
from torch import nn

INT8_WEIGHT_ONLY = "int8"
# Up to this many rows (batch x new tokens) a forward is a matrix-vector product bound by reading the
# weights, and runs as product + sum; above it, as a matrix product of a float copy of the weight.
GEMV_ROWS = 8


class Int8WeightOnlyLinear(nn.Module):
    """An `nn.Linear` whose weight is int8 with one scale per output feature."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightOnlyLinear":
        weight, scales = quantize_rows(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(weight, scales, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows <= GEMV_ROWS:
            # decode steps: a product and a sum over the input features, which Inductor compiles into one
            # reduction kernel that loads the int8 weight itself (torchao's first int8 weight-only kernel)
            out = (x.unsqueeze(-2) * self.weight.to(x.dtype)).sum(dim=-1)
        else:  # prefill: a float copy of the weight is small next to the matrix product
            out = nn.functional.linear(x, self.weight.to(x.dtype))
        out = out * self.scales.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_rows(weight: torch.Tensor, chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: `weight ~= int8 * scale[:, None]`, the scale in the weight's dtype. Done
    `chunk_rows` rows at a time, so the float32 working copy stays small (a 256k-token head is 2 GB in
    float32)."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], chunk_rows):
        w = weight[start:start + chunk_rows].float()
        s = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q[start:start + chunk_rows] = torch.round(w / s[:, None]).clamp(-128, 127).to(torch.int8)
        scales[start:start + chunk_rows] = s
    return q, scales.to(weight.dtype)


def quantize_int8_weight_only(model: nn.Module) -> int:
    """Replace every `nn.Linear` of `model` by an `Int8WeightOnlyLinear`, in place; returns how many."""
    targets = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for parent, name in targets:  # one at a time: each float weight is freed before the next is converted
        setattr(parent, name, Int8WeightOnlyLinear.from_linear(getattr(parent, name)))
    if targets and any(p.is_cuda for p in model.parameters()):
        torch.cuda.empty_cache()  # the float weights' blocks, back to the device for the caches to come
    return len(targets)


def apply_weight_quantization(model: nn.Module, scheme: str | None) -> int:
    """Apply a preset's / candidate's `weight_quantization` runtime hint (None: nothing)."""
    if scheme is None:
        return 0
    if scheme != INT8_WEIGHT_ONLY:
        raise ValueError(f"unknown weight quantization {scheme!r}; this autotune knows {INT8_WEIGHT_ONLY!r}")
    return quantize_int8_weight_only(model)
