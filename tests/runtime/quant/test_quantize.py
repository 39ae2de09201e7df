"""autotune.runtime.quant.quantize: weight-only int8 in plain torch, on the trained fixture (CPU)."""

from __future__ import annotations


import pytest
import torch
from support import graph_recorder, space_for
from torch import nn

from autotune.config.candidate import Candidate
from autotune.runtime.quant.quantize import (GEMV_ROWS, GROUP_SIZE, Int8WeightOnlyLinear, apply_weight_quantization, dequantize,
                               group_size, quantize_int8_weight_only, quantize_rows)
from autotune.config.space import SearchSpace


def test_groups_of_each_row_are_quantized_within_half_a_step():
    weight = torch.randn(64, 256) * torch.linspace(0.01, 3, 64)[:, None]  # rows of very different ranges
    weight[:, 200] = 100 * torch.linspace(0.01, 3, 64)  # an outlier column: only its own group's scale grows
    q, scales = quantize_rows(weight)
    assert q.dtype == torch.int8 and scales.dtype == torch.float32 and scales.shape == (64, 256 // GROUP_SIZE)
    step = scales.repeat_interleave(GROUP_SIZE, dim=1)
    assert (q.float() * step - weight).abs().le(step / 2 + 1e-6).all()
    assert q.abs().unflatten(1, (2, GROUP_SIZE)).amax(dim=-1).eq(127).all()  # each group uses its whole range
    assert (scales[:, 1] > 10 * scales[:, 0]).all()
    torch.testing.assert_close(dequantize(q, scales, torch.float32), weight, rtol=0, atol=scales.max().item())
    chunked_q, chunked_scales = quantize_rows(weight, chunk_rows=5)  # chunks that do not divide the rows
    assert torch.equal(chunked_q, q) and torch.equal(chunked_scales, scales)


def test_a_width_that_is_no_multiple_of_the_group_keeps_one_scale_per_row():
    q, scales = quantize_rows(torch.randn(8, 96))
    assert scales.shape == (8, 1) and group_size(96) == 96 and group_size(4 * GROUP_SIZE) == GROUP_SIZE


@pytest.mark.parametrize("rows", [1, GEMV_ROWS, GEMV_ROWS + 1, 40])
@pytest.mark.parametrize("width", [96, 2 * GROUP_SIZE])
def test_both_ways_of_the_forward_compute_the_dequantized_linear(rows, width):
    torch.manual_seed(0)
    linear = nn.Linear(width, 64)
    int8 = Int8WeightOnlyLinear.from_linear(linear)
    dequantized = dequantize(int8.weight, int8.scales, torch.float32)
    x = torch.randn(rows, width).reshape(1, rows, width)
    torch.testing.assert_close(int8(x), nn.functional.linear(x, dequantized, linear.bias), rtol=1e-5, atol=1e-5)


def test_the_compiled_decode_step_matches_eager():
    torch.manual_seed(0)
    int8 = Int8WeightOnlyLinear.from_linear(nn.Linear(2 * GROUP_SIZE, 256, bias=False))
    x = torch.randn(1, 1, 2 * GROUP_SIZE)
    torch.testing.assert_close(torch.compile(int8)(x), int8(x), rtol=1e-4, atol=1e-4)


def test_the_barrier_keeps_the_down_projections_input_out_of_its_reduction():
    """The compiled graph computes an MLP's activation product once, through autotune::materialize, before
    the wide-input (down) projection, and nowhere else; the result is the same."""
    torch.manual_seed(0)
    down = Int8WeightOnlyLinear.from_linear(nn.Linear(4 * GROUP_SIZE, GROUP_SIZE, bias=False))
    up = Int8WeightOnlyLinear.from_linear(nn.Linear(GROUP_SIZE, 4 * GROUP_SIZE, bias=False))

    def mlp(x):
        return down(nn.functional.gelu(up(x)) * x.repeat(1, 1, 4))

    def mlp_recorded(x):
        return mlp(x)

    def mlp_inductor(x):
        return mlp(x)

    x = torch.randn(1, 1, GROUP_SIZE)
    graphs = []
    torch.compile(mlp_recorded, backend=graph_recorder(graphs), fullgraph=True)(x)
    barriers = [n for n in graphs[0].graph.nodes if n.target == torch.ops.autotune.materialize.default]
    assert len(barriers) == 1  # the down projection only (its input is the wider)
    torch.testing.assert_close(torch.compile(mlp_inductor, fullgraph=True)(x), mlp(x), rtol=1e-4, atol=1e-4)


def test_the_grouped_product_in_float32_is_closer_to_the_exact_product():
    """`grouped_product(..., torch.float32)` multiplies in float32 (the int8 weight converted once, not
    through bf16): closer to the exact product than the bf16 products a model's layers compute."""
    from autotune.runtime.quant import quantize

    torch.manual_seed(0)
    int8 = Int8WeightOnlyLinear.from_linear(nn.Linear(4 * GROUP_SIZE, 96, bias=False))
    x = torch.randn(1, 2, 4 * GROUP_SIZE, dtype=torch.bfloat16)
    exact = x.double() @ dequantize(int8.weight, int8.scales, torch.float64).T
    eager = int8(x)
    assert eager.dtype == torch.bfloat16
    torch.testing.assert_close(eager, quantize.grouped_product(x, int8.weight, int8.scales))  # bf16 products
    assert (quantize.grouped_product(x, int8.weight, int8.scales, torch.float32).double() - exact).abs().mean() \
        <= (eager.double() - exact).abs().mean()


def test_a_quantized_model_keeps_its_predictions(fixture_models):
    """Every linear layer (the tied head included) becomes int8; the embedding stays float; teacher-forced
    top-1 predictions of the trained 12m model barely move."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(fixture_models / "codelm-12m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    text = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    with torch.no_grad():
        before = model(ids).logits
        assert quantize_int8_weight_only(model) == linears
        after = model(ids).logits
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.get_input_embeddings().weight, nn.Parameter)
    assert isinstance(model.lm_head, Int8WeightOnlyLinear)
    agreement = (before.argmax(-1) == after.argmax(-1)).float().mean().item()
    assert agreement >= 0.95, agreement
    out = model.generate(ids[:, :8], max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == 12


def test_the_hint_and_the_space():
    assert apply_weight_quantization(nn.Sequential(nn.Linear(2, 2)), None) == 0
    with pytest.raises(ValueError, match="unknown weight quantization 'int4'"):
        apply_weight_quantization(nn.Sequential(nn.Linear(2, 2)), "int4")
    compiled = Candidate(quantization="int8_weight_only", cache_implementation="static", compile="default")
    assert compiled.runtime()["weight_quantization"] == "int8" and compiled.load_kwargs() == {}
    assert "weight_quantization" not in Candidate().runtime()
    space = space_for(SearchSpace.load("default"), "cpu", batch_size=1, assistant=None, has_bf16=True,
                                                        has_flash_attn=False, has_flex_attention=True)
    assert "int8_weight_only" in next(k for k in space.knobs if k.name == "quantization").values  # bnb or not
    assert space.invalid_reason(compiled) is None
    assert "fast only compiled" in space.invalid_reason(Candidate(quantization="int8_weight_only"))
    frozen = Candidate(quantization="int8_weight_only", cache_implementation="static", compile="default",
                       compile_freezing=True, decode_loop="static_loop")
    assert "freezing folds the int8 weights" in space.invalid_reason(frozen)


def test_inductors_freezing_folds_the_int8_weights_into_float_constants():
    """Why the space keeps int8 from freezing: compiled with freezing, the step's kernel reads no int8 weight
    (a float copy folded at compile time); without, it reads the int8 weight itself. Should a torch keep the
    int8 weight under freezing, this fails, and the rule may go."""
    from unittest import mock

    import torch._inductor.config as inductor_config
    from torch._inductor.graph import GraphLowering

    torch.manual_seed(0)
    model = nn.Sequential(Int8WeightOnlyLinear.from_linear(nn.Linear(2 * GROUP_SIZE, 512, bias=False))).eval()
    x = torch.randn(1, 1, 2 * GROUP_SIZE)

    def step_unfrozen(x):  # a function each, so that each is compiled afresh: torch._dynamo.reset() (as in
        return model(x)    # inductor's run_and_get_code) would also drop the compile counter's callback

    def step_frozen(x):
        return model(x)

    reads_int8 = {}
    for freezing, step in ((False, step_unfrozen), (True, step_frozen)):
        code = []
        with inductor_config.patch(freezing=freezing, fx_graph_cache=False), torch.inference_mode(), \
                mock.patch.object(GraphLowering, "save_output_code", code.append):
            torch.compile(step)(x)
        assert code  # the kernels Inductor wrote for it
        reads_int8[freezing] = "int8" in "\n".join(code)
    assert reads_int8 == {False: True, True: False}


def test_a_prefill_dequantizes_a_few_rows_at_a_time(monkeypatch):
    from autotune.runtime.quant import quantize

    torch.manual_seed(0)
    linear = nn.Linear(2 * GROUP_SIZE, 64)
    int8 = Int8WeightOnlyLinear.from_linear(linear)
    x = torch.randn(1, GEMV_ROWS + 3, 2 * GROUP_SIZE)
    whole = int8(x)
    monkeypatch.setattr(quantize, "PREFILL_CHUNK_ELEMENTS", 5 * 2 * GROUP_SIZE)  # 5 rows: 13 chunks, the last of 4
    assert quantize.prefill_chunk_rows(2 * GROUP_SIZE) == 5
    # the same products, summed in the order the CPU's matrix kernel takes for each width (not always bit-equal)
    torch.testing.assert_close(int8(x), whole, rtol=1e-5, atol=1e-6)


def test_a_wider_group_gives_fewer_scales_and_the_whole_row_where_it_does_not_divide():
    """quantize_rows(group=...) (benchmarks/int8_gemv.py --groups): scales per group of that many input
    features, one per row where the group does not divide the width; each still rounds to its own absmax."""
    torch.manual_seed(0)
    weight = torch.randn(6, 512)
    for group, groups in ((128, 4), (256, 2), (512, 1), (384, 1)):
        q, scales = quantize_rows(weight, group=group)
        assert scales.shape == (6, groups)
        torch.testing.assert_close(dequantize(q, scales, torch.float32), weight, atol=scales.max().item(), rtol=0)
