"""autotune.runtime.quant.fusion: sibling projections (q, k, v; gate, up) stacked into one product, bf16 and int8 (CPU)."""

from __future__ import annotations

import pytest
import torch
from support import graph_recorder
from torch import nn

from autotune.config.preset import check_weight_hints
from autotune.runtime.quant import apply_weight_hints, fusion
from autotune.config.candidate import Candidate
from autotune.runtime.quant.quantize import GROUP_SIZE, Int8WeightOnlyLinear, int8_forward, quantize_int8_weight_only


@pytest.fixture
def fixture_model(fixture_models):
    """codelm-12m (a small Llama) in bf16 with the weight hints of a candidate: `quantization` (int8 or
    none) and the `fuse_projections` knob, applied as the worker and `load_preset` apply them."""
    from transformers import AutoModelForCausalLM

    def load(fuse: bool, quantization: str | None):
        candidate = Candidate(quantization="int8_weight_only" if quantization else "none", fuse_projections=fuse,
                              compile="default" if quantization else "off",
                              cache_implementation="static" if quantization else "dynamic")
        model = AutoModelForCausalLM.from_pretrained(str(fixture_models / "codelm-12m"), dtype=torch.bfloat16).eval()
        apply_weight_hints(model, candidate.runtime())
        return model
    return load


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_stacked_siblings_keep_the_models_predictions_and_its_memory(fixture_model, quantization):
    """fuse_projections=True: each layer's q, k, v and gate, up projections share one stacked product (the only copy
    of their weights); prefill and decode logits stay; a compiled decode step holds one product per group,
    an int8 q/k/v one behind the barrier that k and v had."""
    plain, fused = fixture_model(False, quantization), fixture_model(True, quantization)
    layers = fused.config.num_hidden_layers
    assert sum(isinstance(m, fusion.SiblingProjection) for m in fused.modules()) == 5 * layers
    assert not any(isinstance(m, fusion.SiblingProjection) for m in plain.modules())
    tensors = [*fused.parameters(), *fused.buffers()]
    assert sum(t.numel() for t in tensors) == sum(t.numel() for t in [*plain.parameters(), *plain.buffers()])
    attention = fused.model.layers[0].self_attn
    stacked = attention.stacked_q_proj
    assert isinstance(stacked, Int8WeightOnlyLinear if quantization else nn.Linear)
    assert stacked.out_features == attention.q_proj.out_features + 2 * attention.k_proj.out_features
    assert attention.k_proj.weight.untyped_storage().data_ptr() == stacked.weight.untyped_storage().data_ptr()
    ids = torch.randint(0, fused.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fused(ids).logits, plain(ids).logits)  # a prefill: each sibling its own rows
        torch.testing.assert_close(fused(ids[:, :1]).logits, plain(ids[:, :1]).logits, rtol=2e-2, atol=2e-2)
        assert attention.q_proj.mailbox.outputs is None  # nothing kept between steps
        # each compile of a function of its own (a test's compiles do not add to the model's own code's entries)
        def recorded_step(ids):
            return fused(ids).logits

        def fused_step(ids):
            return fused(ids).logits

        def plain_step(ids):
            return plain(ids).logits

        graphs = []
        compiled = torch.compile(recorded_step, backend=graph_recorder(graphs), fullgraph=True)(ids[:, :1])
        torch.testing.assert_close(compiled, fused(ids[:, :1]).logits)
        # Inductor in bf16, against the plain model compiled: the kernels differ, the rounding a little
        inductor = torch.compile(fused_step, fullgraph=True)(ids[:, :1])
        reference = torch.compile(plain_step, fullgraph=True)(ids[:, :1])
        torch.testing.assert_close(inductor, reference, rtol=0, atol=0.1)
        assert torch.equal(inductor.argmax(-1), reference.argmax(-1))
    nodes = list(graphs[0].graph.nodes)
    assert len([n for n in nodes if n.target == "split"]) == 2 * layers  # one product per group
    if quantization:  # before each stacked q/k/v product and each down projection
        assert len([n for n in nodes if n.target == torch.ops.autotune.materialize.default]) == 2 * layers
    assert attention.q_proj.mailbox.outputs is None


def test_the_fuse_projections_knob_is_a_runtime_hint_left_out_of_old_keys_and_off_for_bitsandbytes():
    fused = Candidate(fuse_projections=True)
    assert fused.runtime()["fuse_projections"] is True and "fuse_projections" not in Candidate().runtime()
    assert Candidate(fuse_projections=False).key() == Candidate().key() != fused.key()  # old studies keep keys
    assert fused.describe() == "fuse=True"
    assert Candidate(quantization="bnb_4bit", fuse_projections=True).effective().fuse_projections is False
    assert Candidate.from_json(fused.to_json()) == fused
    with pytest.raises(ValueError, match="fuse_projections"):
        check_weight_hints({"fuse_projections": "yes"})


def test_stacking_keeps_the_int8_kernel_of_the_siblings():
    block = Block()
    quantize_int8_weight_only(block, kernel="triton")
    assert fusion.fuse_siblings(block, ("mlp",)) == 1
    assert block.stacked_gate_proj.kernel == "triton"
    mixed = Block()
    quantize_int8_weight_only(mixed)
    mixed.up_proj.kernel = "triton"
    assert fusion.fuse_siblings(mixed, ("mlp",)) == 0  # siblings of two kernels are not stacked


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(GROUP_SIZE, 64), nn.Linear(GROUP_SIZE, 32)


def test_siblings_take_their_parts_in_any_order_and_each_new_input_is_computed_again():
    torch.manual_seed(0)
    block = Block()
    quantize_int8_weight_only(block)
    x, other = torch.randn(1, 1, GROUP_SIZE), torch.randn(1, 1, GROUP_SIZE)
    gate, up, up_other = block.gate_proj(x), block.up_proj(x), block.up_proj(other)
    assert fusion.fuse_siblings(block, ("mlp",)) == 1
    mailbox = block.gate_proj.mailbox
    assert torch.equal(block.up_proj(x), up) and mailbox.taken == (1,)  # up first: the stacked product
    assert torch.equal(block.gate_proj(x), gate) and mailbox.outputs is None  # both taken: cleared
    assert torch.equal(block.up_proj(x), up)
    assert torch.equal(block.up_proj(other), up_other)  # another input: computed again
    assert torch.equal(block.up_proj(other), up_other) and mailbox.taken == (1,)  # a part taken twice: again
    gate_other = int8_forward(other, block.gate_proj.weight, block.gate_proj.scales, block.gate_proj.bias,
                              ((GROUP_SIZE, 64),))
    assert torch.equal(block.gate_proj(other), gate_other) and mailbox.outputs is None


def test_siblings_of_different_kinds_are_left_as_they_are():
    block = Block()
    block.up_proj = Int8WeightOnlyLinear.from_linear(block.up_proj)  # one float, one int8
    assert fusion.fuse_siblings(block) == 0 and type(block.gate_proj) is nn.Linear
    wide = Block()
    wide.up_proj = nn.Linear(2 * GROUP_SIZE, 32)  # another input width
    assert fusion.fuse_siblings(wide) == 0
