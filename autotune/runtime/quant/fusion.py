"""Sibling projections stacked: the linear layers that a model applies to one input one after the other (an
attention's q, k and v; a gated MLP's gate and up) computed as one product in decode steps.

At batch 1 a decode step's products are bound by reading their weights, and the small ones by latency: a
product of a few thousand rows reads its weights at a fraction of the bandwidth a large one reaches. Stacking
the siblings' weights gives one larger product and fewer kernels per layer, for bf16 (`nn.Linear`) and for
weight-only int8 (`autotune.runtime.quant.quantize.Int8WeightOnlyLinear`) alike.

The model's code is not changed: each sibling becomes a `SiblingProjection` that shares a `Mailbox` with the
others. In a decode step (a few rows), the first sibling to get a new input computes the stacked product and
each takes its part of it; a prefill computes each sibling's own rows, as before, so the prefill's float
copies (int8) stay as small as they were. Under torch.compile the mailbox's attributes are traced as side
effects, set and cleared within one step.

The `fuse_projections` knob (the runtime hint of the same name) stacks both kinds; `fuse_siblings` takes
either. What it gains depends on the product's kernel (docs/results.md), which is why it is a knob.
"""

from __future__ import annotations

import torch
from torch import nn

from autotune.runtime.quant.quantize import GEMV_ROWS, Int8WeightOnlyLinear, int8_forward

# Projections that models apply to one input, by name (Llama, Gemma, Mistral, Qwen2 ...).
SIBLINGS = {"attention": ("q_proj", "k_proj", "v_proj"), "mlp": ("gate_proj", "up_proj")}


class Mailbox:
    """What one stacked product of a sibling group computed, until every sibling has taken its part. A plain
    object (not a module): under torch.compile its attributes are traced as side effects, set and cleared
    within one step, so no tensor outlives the step and no guard depends on one."""

    def __init__(self, stacked: nn.Module, sizes: list[int]):
        self.stacked, self.sizes = stacked, sizes
        self.clear()

    def clear(self) -> None:
        self.input: torch.Tensor | None = None
        self.outputs: tuple[torch.Tensor, ...] | None = None
        self.taken: tuple[int, ...] = ()

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Sibling `index`'s output for input `x`: the stacked product is computed for a new input (another
        tensor than the last one's, or one whose part this sibling took already), then split."""
        if self.outputs is None or self.input is not x or index in self.taken:
            self.input, self.outputs, self.taken = x, self.stacked(x).split(self.sizes, dim=-1), ()
        out = self.outputs[index]
        self.taken = self.taken + (index,)
        if len(self.taken) == len(self.sizes):
            self.clear()
        return out


class SiblingProjection(nn.Module):
    """One projection of a sibling group whose weights are stacked into one product (`fuse_siblings`). It
    holds no weights of its own: `weight` (and `scales` for int8) and `bias` are its rows of the stacked
    ones. (An input changed in place between two siblings' calls is not seen: models compute each projection
    from an unchanged input.)"""

    def __init__(self, mailbox: Mailbox, index: int):
        super().__init__()
        start = sum(mailbox.sizes[:index])
        self.mailbox, self.index, self.rows = mailbox, index, slice(start, start + mailbox.sizes[index])
        self.in_features, self.out_features = mailbox.stacked.in_features, mailbox.sizes[index]

    @property
    def weight(self) -> torch.Tensor:
        return self.mailbox.stacked.weight[self.rows]

    @property
    def scales(self) -> torch.Tensor:
        return self.mailbox.stacked.scales[self.rows]

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self.mailbox.stacked.bias
        return None if bias is None else bias[self.rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // x.shape[-1] > GEMV_ROWS:  # a prefill: its own rows, as unfused
            return self.own_product(x)
        return self.mailbox.part(x, self.index)

    def own_product(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.mailbox.stacked, Int8WeightOnlyLinear):
            return int8_forward(x, self.weight, self.scales, self.bias, ((self.in_features, self.out_features),),
                                self.mailbox.stacked.kernel)
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, part {self.index} of a "
                "stacked product")


def same_kind(parts: list) -> bool:
    """Siblings that can be stacked: all `nn.Linear` of one dtype, or all int8 with one group size; one input
    width; biases on all or none."""
    if all(type(part) is nn.Linear for part in parts):
        shape = {(part.in_features, part.weight.dtype, part.weight.device, part.bias is None) for part in parts}
    elif all(type(part) is Int8WeightOnlyLinear for part in parts):
        shape = {(part.in_features, part.scales.shape[1], part.weight.device, part.bias is None, part.kernel)
                 for part in parts}
    else:
        return False
    return len(shape) == 1


def sibling_groups(model: nn.Module, kinds: tuple[str, ...]) -> list[tuple[nn.Module, tuple[str, ...]]]:
    """(module, names) for each group of SIBLINGS[kind] projections of a module that `same_kind` can stack."""
    found = []
    for module in model.modules():
        for kind in kinds:
            parts = [getattr(module, name, None) for name in SIBLINGS[kind]]
            if all(part is not None for part in parts) and same_kind(parts):
                found.append((module, SIBLINGS[kind]))
    return found


def stack(parts: list) -> nn.Module:
    """One module for the stacked product of `parts` (their weights, scales and biases one after the other)."""
    bias = None if parts[0].bias is None else torch.cat([part.bias.detach() for part in parts])
    if isinstance(parts[0], Int8WeightOnlyLinear):
        # the barrier where any sibling would have one (an attention's k and v, narrower out than in)
        return Int8WeightOnlyLinear(torch.cat([part.weight for part in parts]),
                                    torch.cat([part.scales for part in parts]), bias,
                                    barrier_widths=tuple((part.in_features, part.out_features) for part in parts),
                                    kernel=parts[0].kernel)
    weight = torch.cat([part.weight.detach() for part in parts])
    stacked = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    stacked.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        stacked.bias = nn.Parameter(bias, requires_grad=False)
    return stacked


def fuse_siblings(model: nn.Module, kinds: tuple[str, ...] = tuple(SIBLINGS)) -> int:
    """Stack the weights of each sibling group of `model` (`sibling_groups`) into one product, registered on
    their module as `stacked_<first name>`, and replace the projections by `SiblingProjection`s that share
    it: one product per group in a decode step instead of one per projection. Returns how many groups; the
    stacked weights are the only copy of the siblings' weights."""
    groups = sibling_groups(model, kinds)
    for module, names in groups:
        parts = [getattr(module, name) for name in names]
        stacked = stack(parts)
        setattr(module, f"stacked_{names[0]}", stacked)
        mailbox = Mailbox(stacked, [part.out_features for part in parts])
        for index, name in enumerate(names):
            setattr(module, name, SiblingProjection(mailbox, index))
    if groups and any(p.is_cuda for p in model.parameters()):
        torch.cuda.empty_cache()  # the siblings' own weights' blocks
    return len(groups)

