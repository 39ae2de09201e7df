"""autotune.runtime.attention: flex attention with kernel options that fit wide heads on CUDA
(fit_flex_attention); and the Inductor settings of the process (autotune.runtime.compiling)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from autotune.runtime import attention


def query(device: str, head_dim: int):
    return SimpleNamespace(device=torch.device(device), shape=(1, 8, 1, head_dim))


def test_wide_cuda_heads_get_the_small_blocks_and_nothing_else_changes():
    assert attention.flex_kernel_options(query("cuda", 256), None) == attention.WIDE_HEAD_FLEX_OPTIONS
    assert attention.flex_kernel_options(query("cuda", 128), None) is None  # flex attention's own choice
    assert attention.flex_kernel_options(query("cpu", 256), None) is None
    given = {"BLOCK_M": 64}
    assert attention.flex_kernel_options(query("cuda", 256), given) is given  # the caller's options win


@pytest.fixture
def flex_mapping(monkeypatch):
    """transformers' flex attention entry, restored after the test (the fit is for the whole process)."""
    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, "flex_attention",
                        AttentionInterface._global_mapping["flex_attention"])
    return AttentionInterface._global_mapping


def load(bundled_model, attn: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(bundled_model), attn_implementation=attn).eval()


def test_a_flex_model_is_fitted_once_and_decodes_the_tokens_of_sdpa(bundled_model, flex_mapping, monkeypatch):
    from transformers import AutoTokenizer

    original = flex_mapping["flex_attention"]
    seen = []

    def spy(module, query, key, value, attention_mask, **kwargs):
        seen.append((query.shape[-1], kwargs.get("kernel_options")))
        return original(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(flex_mapping, "flex_attention", spy)
    sdpa = load(bundled_model, "sdpa")
    assert not attention.fit_flex_attention(sdpa)
    assert flex_mapping["flex_attention"] is spy  # a model without flex attention changes nothing
    flex = load(bundled_model, "flex_attention")
    assert attention.fit_flex_attention(flex)
    fitted = flex_mapping["flex_attention"]
    assert fitted is not spy and fitted.autotune_fitted
    assert attention.fit_flex_attention(flex) and flex_mapping["flex_attention"] is fitted  # not wrapped twice

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model))
    inputs = tokenizer(["def add(a, b):"], return_tensors="pt")
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = sdpa.generate(**inputs, **kwargs)
        got = flex.generate(**inputs, **kwargs)
    assert torch.equal(got, expected)
    assert seen and all(options is None for _, options in seen)  # CPU: flex attention's own kernel choice


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_heads_of_256_compile_with_flex_attention_on_cuda(flex_mapping):
    """A small gemma-shaped model with heads of 256 (gemma-2b's): generate()'s compiled static-cache decoding
    with flex attention gives the tokens of SDPA once fitted (unfitted, Inductor finds no kernel on the H200)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma", vocab_size=512, hidden_size=512, intermediate_size=1024,
                                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=256)
    outputs = {}
    for attn in ("sdpa", "flex_attention"):
        torch.manual_seed(0)  # the same weights for both
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
        model = model.to("cuda").eval()
        assert attention.fit_flex_attention(model) == (attn == "flex_attention")
        tokens = torch.tensor([[2, 17, 33, 90, 7]], device="cuda")
        with torch.inference_mode():
            outputs[attn] = model.generate(tokens, max_new_tokens=8, do_sample=False, cache_implementation="static",
                                           pad_token_id=0)
    assert torch.equal(outputs["flex_attention"], outputs["sdpa"])


def test_an_inductor_hint_sets_its_options_and_nothing_else():
    import torch._inductor.config as inductor_config

    from autotune.runtime.compiling import apply_inductor_config

    with inductor_config.patch(coordinate_descent_tuning=False, freezing=False):  # restored after
        apply_inductor_config({"coordinate_descent_tuning": True})
        assert inductor_config.coordinate_descent_tuning is True and inductor_config.freezing is False
        apply_inductor_config(None)
        assert inductor_config.coordinate_descent_tuning is True
        with pytest.raises(ValueError, match="runtime.inductor"):
            apply_inductor_config({"max_autotune": True})
