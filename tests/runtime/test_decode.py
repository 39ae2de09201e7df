"""The static-cache decode loops give generate()'s tokens: greedy, left-padded batches, EOS, seeded sampling.
The graph loop runs here uncaptured (CUDA graphs need CUDA): the same chunks of steps on the same buffers."""

from __future__ import annotations

import pytest
import torch
from support import BUNDLED_MODEL
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from autotune.runtime.decode import GraphDecodeLoop, StaticDecodeLoop, UnsupportedGeneration

PROMPTS = ["def add(a, b):\n    return", "import os\n\ndef list_files(root):\n    for name in os.listdir(root):\n",
           "class Point:\n    def __init__(self, x, y):\n"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    model = AutoModelForCausalLM.from_pretrained(BUNDLED_MODEL, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODEL)
    tokenizer.padding_side = "left"
    return model, tokenizer


def static_loop(model, max_cache_len, chunk=8, **options):
    return StaticDecodeLoop(model, max_cache_len=max_cache_len, sync_every=chunk, **options)


def graph_loop(model, max_cache_len, chunk=8, **options):
    return GraphDecodeLoop(model, max_cache_len=max_cache_len, steps=chunk, **options)


@pytest.fixture(params=[static_loop, graph_loop], ids=["static", "graph"])
def make_loop(request):
    """Builds either loop: (model, max_cache_len, chunk = steps between two waits for the device, options)."""
    return request.param


def batch(tokenizer, prompts=PROMPTS):
    return tokenizer(prompts, return_tensors="pt", padding=True)


def reference(model, inputs, config: GenerationConfig, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.generate(**inputs, generation_config=config)


def greedy_config(model, **changes) -> GenerationConfig:
    return GenerationConfig(**{**model.generation_config.to_dict(), "do_sample": False, "max_new_tokens": 24,
                               **changes})


def test_greedy_left_padded_batch_equals_generate(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    assert (inputs["attention_mask"] == 0).any()  # really left-padded
    config = greedy_config(model)
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode=None)
    got = loop.generate(**inputs, generation_config=config)
    assert torch.equal(got, reference(model, inputs, config))
    again = loop.generate(**inputs, generation_config=config)  # the cache is reset between calls
    assert torch.equal(again, got)


def test_eos_stops_rows_and_the_loop_as_generate_does(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    config = greedy_config(model)
    plain = reference(model, inputs, config)
    new = plain[:, inputs["input_ids"].shape[1]:]
    eos = int(new[0, 5])  # a token the first row emits early: rows end at different steps
    config = greedy_config(model, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode=None)
    got = loop.generate(**inputs, generation_config=config)
    expected = reference(model, inputs, config)
    assert torch.equal(got, expected)
    assert (got[0, inputs["input_ids"].shape[1]:] == tokenizer.pad_token_id).any()  # padded after its EOS


def test_min_new_tokens_holds_eos_back_as_generate_does(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    plain = reference(model, inputs, greedy_config(model))
    eos = int(plain[0, inputs["input_ids"].shape[1] + 3])
    config = greedy_config(model, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, min_new_tokens=24)
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode=None)
    got = loop.generate(**inputs, generation_config=config)
    assert torch.equal(got, reference(model, inputs, config)) and got.shape[1] == inputs["input_ids"].shape[1] + 24


def test_seeded_sampling_equals_generate(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    config = greedy_config(model, do_sample=True, temperature=0.8, top_k=40, top_p=0.9)
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode=None)
    torch.manual_seed(7)
    got = loop.generate(**inputs, generation_config=config)
    assert torch.equal(got, reference(model, inputs, config, seed=7))
    assert not torch.equal(got, reference(model, inputs, greedy_config(model)))  # really sampled


def test_streamer_hears_the_prompt_then_each_step(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer, PROMPTS[:1])

    class Recorder:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value)

        def end(self):
            self.ended = True

    recorder = Recorder()
    loop = make_loop(model, inputs["input_ids"].shape[1] + 8, 1, compile_mode=None)
    out = loop.generate(**inputs, generation_config=greedy_config(model, max_new_tokens=8), streamer=recorder)
    assert recorder.ended and len(recorder.puts) == 1 + 8
    assert torch.equal(recorder.puts[0], inputs["input_ids"])
    assert torch.equal(torch.cat([p.view(1, -1) for p in recorder.puts[1:]], dim=1), out[:, -8:])

    # waiting for the device every 4 steps: the first token alone (time to first token), then 4, 4, 3 tokens
    # (the graph loop: chunks of 4 steps, then the rest one step at a time)
    chunked = Recorder()
    loop = make_loop(model, inputs["input_ids"].shape[1] + 12, 4, compile_mode=None)
    out = loop.generate(**inputs, generation_config=greedy_config(model, max_new_tokens=12), streamer=chunked)
    sizes = [1, 4, 4, 3] if make_loop is static_loop else [1, 4, 4, 1, 1, 1]
    assert [p.shape[-1] if p.dim() > 1 else 1 for p in chunked.puts[1:]] == sizes
    assert torch.equal(torch.cat([p.view(1, -1) for p in chunked.puts[1:]], dim=1), out[:, -12:])


@pytest.mark.parametrize("sync_every", [1, 3, 8, 64])
def test_eos_inside_a_chunk_cuts_what_ran_past_it(make_loop, model_and_tokenizer, sync_every):
    """Steps queued past the point where every row has finished are dropped: the output is generate()'s,
    whatever the distance between two waits for the device."""
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    plain = reference(model, inputs, greedy_config(model))
    new = plain[:, inputs["input_ids"].shape[1]:]
    eos = [int(new[0, 2]), int(new[1, 6]), int(new[2, 4])]  # every row ends early, each at another step
    config = greedy_config(model, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    expected = reference(model, inputs, config)
    assert expected.shape[1] < plain.shape[1]  # generate() stopped early
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, sync_every, compile_mode=None)
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)


def test_what_the_loop_does_not_do_is_refused(make_loop, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    loop = make_loop(model, 64, compile_mode=None)
    with pytest.raises(UnsupportedGeneration, match="beam search"):
        loop.generate(**inputs, generation_config=greedy_config(model, num_beams=2))
    with pytest.raises(UnsupportedGeneration, match="repetition penalty"):
        loop.generate(**inputs, generation_config=greedy_config(model, repetition_penalty=1.3))
    with pytest.raises(UnsupportedGeneration, match="do not fit"):
        loop.generate(**inputs, generation_config=greedy_config(model, max_new_tokens=200))


@pytest.mark.slow
def test_compiled_step_gives_the_same_tokens_and_compiles_once(make_loop, model_and_tokenizer):
    from autotune.worker.recompiles import COMPILE_COUNTER

    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    config = greedy_config(model)
    loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode="default", fullgraph=True)
    got = loop.generate(**inputs, generation_config=config)
    assert torch.equal(got, reference(model, inputs, config))
    before = COMPILE_COUNTER.recompiles or 0  # (the first call compiles: for another loop object, a recompile)
    other = batch(tokenizer, [PROMPTS[2], PROMPTS[0], PROMPTS[0] + " a"])  # other prompt lengths, same batch size
    assert torch.equal(loop.generate(**other, generation_config=config), reference(model, other, config))
    assert (COMPILE_COUNTER.recompiles or 0) == before  # one shape for every decode step: no recompilation


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_mode,freezing", [(None, False), ("default", False), ("default", True),
                                                   ("max-autotune", False)])
def test_captured_graphs_give_generate_tokens_on_cuda(model_and_tokenizer, compile_mode, freezing):
    """On CUDA the graph loop captures its chunks: the tokens stay generate()'s, EOS and all, call after call."""
    import torch._inductor.config as inductor_config

    model, tokenizer = model_and_tokenizer
    model = model.to("cuda")
    try:
        with inductor_config.patch(freezing=freezing):
            inputs = batch(tokenizer).to("cuda")
            config = greedy_config(model)
            loop = GraphDecodeLoop(model, max_cache_len=inputs["input_ids"].shape[1] + 24, compile_mode=compile_mode,
                                   steps=4)
            expected = reference(model, inputs, config)
            assert torch.equal(loop.generate(**inputs, generation_config=config), expected)
            assert set(loop.states[3].graphs) == {4, 1}  # captured
            assert torch.equal(loop.generate(**inputs, generation_config=config), expected)  # replayed
            new = expected[:, inputs["input_ids"].shape[1]:]
            eos_config = greedy_config(model, eos_token_id=[int(new[0, 2]), int(new[1, 6]), int(new[2, 4])],
                                       pad_token_id=tokenizer.pad_token_id)
            assert torch.equal(loop.generate(**inputs, generation_config=eos_config),
                               reference(model, inputs, eos_config))
    finally:
        model.to("cpu")


@pytest.mark.slow
def test_frozen_weights_give_the_same_tokens(make_loop, model_and_tokenizer):
    """Inductor's freezing (the compile_freezing knob) in the loop's compiled step: generate()'s tokens."""
    import torch._inductor.config as inductor_config

    model, tokenizer = model_and_tokenizer
    inputs = batch(tokenizer)
    config = greedy_config(model)
    with inductor_config.patch(freezing=True):
        loop = make_loop(model, inputs["input_ids"].shape[1] + 24, compile_mode="default", fullgraph=True)
        assert torch.equal(loop.generate(**inputs, generation_config=config), reference(model, inputs, config))


def stacked_int8_copy(model, monkeypatch, kernel: str = "inductor"):
    """A copy of `model` in weight-only int8 through `kernel` with its sibling projections stacked (the
    `fuse_projections` hint)."""
    import copy

    from autotune.runtime.quant import apply_weight_hints, fusion

    int8 = copy.deepcopy(model)
    apply_weight_hints(int8, {"weight_quantization": "int8", "int8_kernel": kernel, "fuse_projections": True})
    assert any(isinstance(m, fusion.SiblingProjection) for m in int8.modules())
    return int8


@pytest.mark.slow
def test_stacked_int8_siblings_in_the_compiled_step_give_generate_tokens(make_loop, model_and_tokenizer, monkeypatch):
    """fuse_projections on int8: the compiled step of the int8 model gives the tokens of its own generate(),
    and compiles once."""
    from autotune.worker.recompiles import COMPILE_COUNTER

    model, tokenizer = model_and_tokenizer
    int8 = stacked_int8_copy(model, monkeypatch)
    inputs = batch(tokenizer)
    config = greedy_config(int8)
    loop = make_loop(int8, inputs["input_ids"].shape[1] + 24, compile_mode="default", fullgraph=True)
    expected = reference(int8, inputs, config)
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)
    before = COMPILE_COUNTER.recompiles or 0
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)
    assert (COMPILE_COUNTER.recompiles or 0) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kernel", ["inductor", "triton"])
def test_stacked_int8_siblings_in_captured_graphs_give_generate_tokens_on_cuda(model_and_tokenizer, monkeypatch,
                                                                                kernel):
    """The thirteenth session's fastest int8 step (the Triton kernel on stacked siblings) and Inductor's."""
    model, tokenizer = model_and_tokenizer
    int8 = stacked_int8_copy(model, monkeypatch, kernel).to("cuda")
    inputs = batch(tokenizer).to("cuda")
    config = greedy_config(int8)
    loop = GraphDecodeLoop(int8, max_cache_len=inputs["input_ids"].shape[1] + 24, compile_mode="max-autotune", steps=4)
    expected = reference(int8, inputs, config)
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)
    assert set(loop.states[3].graphs) == {4, 1}  # captured
    assert torch.equal(loop.generate(**inputs, generation_config=config), expected)  # replayed
