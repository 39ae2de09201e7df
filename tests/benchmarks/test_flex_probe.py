"""benchmarks/flex_probe.py on the bundled model, on CPU: the kernel options reach torch's flex_attention."""

from __future__ import annotations

from support import load_benchmark


def test_kernel_options_reach_flex_attention_and_the_tokens_are_compared(bundled_model, monkeypatch):
    import transformers.integrations.flex_attention as flex

    script = load_benchmark("flex_probe")
    seen = []
    original = flex.flex_attention_forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("kernel_options"))
        return original(*args, **kwargs)

    monkeypatch.setattr(flex, "flex_attention_forward", spy)
    options = {"BLOCK_M": 32, "BLOCK_N": 32, "num_stages": 1}
    flexed = script.generate_tokens(str(bundled_model), "cpu", "flex_attention", options, new_tokens=4)
    reference = script.generate_tokens(str(bundled_model), "cpu", "sdpa", None, new_tokens=4)
    assert seen and all(o == options for o in seen)  # every attention call, prefill and decode
    assert len(flexed["tokens"]) == 4 and flexed["tokens_per_s"] > 0
    assert flexed["tokens"] == reference["tokens"]  # the same greedy tokens as sdpa on this trained model
    from transformers import AttentionInterface

    assert AttentionInterface._global_mapping["flex_attention"] is not None
    assert "flex_with_options" not in AttentionInterface._global_mapping["flex_attention"].__name__  # restored
