"""Recompilations are counted from torch's own compile events; a compiled candidate measures on CPU."""

from __future__ import annotations

from support import build_candidate

import torch

from autotune.config.candidate import Candidate
from autotune.worker.measure import measure
from autotune.worker.recompiles import COMPILE_COUNTER, CompileCounter
from autotune.config.workload import Workload


def test_compile_counter_counts_recompilations_not_first_compilations():
    counter = CompileCounter().install()
    assert (counter.compiles, counter.recompiles) == (0, 0)

    def double(x):
        return x * 2

    compiled = torch.compile(double, backend="eager")  # dynamo only: the events, without inductor's cost
    compiled(torch.ones(3))
    assert (counter.compiles, counter.recompiles) == (1, 0)
    compiled(torch.ones(3))  # same shape: no compilation at all
    assert counter.compiles == 1
    compiled(torch.ones(5))  # new shape: a guard fails, the frame is compiled again (now with a dynamic size)
    compiled(torch.ones(2, 2))  # new rank: once more
    assert counter.recompiles == 2 and counter.compiles == 3


def test_static_cache_with_explicit_compile_measures_and_counts(bundled_model):
    workload = Workload(prompts=("def add(a, b):\n",), max_new_tokens=4)
    candidate = Candidate(cache_implementation="static", compile="default", compile_api="explicit",
                          compile_fullgraph=True)
    compiles_before = COMPILE_COUNTER.compiles
    built = build_candidate(str(bundled_model), candidate, workload, "cpu")
    assert built.generation_config.disable_compile is True  # the explicit compile is the only one
    figures = measure(built, workload, repeats=1, warmup=1)
    assert figures["decode_tokens_per_s"] > 0 and figures["warmup_s"] > 0
    assert COMPILE_COUNTER.compiles > compiles_before  # the forward really was compiled
    assert isinstance(figures["recompiles"], int)


def test_a_hopeless_pass_stops_the_measurement(bundled_model):
    workload = Workload(prompts=("def add(a, b):\n",), max_new_tokens=4)
    built = build_candidate(str(bundled_model), Candidate(), workload, "cpu")
    full = measure(built, workload, repeats=2, warmup=1)
    assert full.get("stopped_early") is None and len(full["runs"]) == 2

    after_pass = measure(built, workload, repeats=3, warmup=0, stop_below=1e9)
    assert after_pass["stopped_early"]["after"] == "pass 1" and len(after_pass["runs"]) == 1
    assert after_pass["continuations"] is None and after_pass["decode_tokens_per_s"] > 0

    # with a warm-up pass, one far under the threshold stops before it measures (and never takes the lease)
    held = []
    after_warmup = measure(built, workload, repeats=3, warmup=1, stop_below=1e9, hold=lambda: held.append(1))
    assert after_warmup["stopped_early"]["after"] == "warm-up" and after_warmup["repeats"] == 0
    assert after_warmup["measured_s"] == 0.0 and "measured" not in after_warmup["windows"] and not held

    fast_enough = measure(built, workload, repeats=2, warmup=1, stop_below=1e-9)
    assert fast_enough.get("stopped_early") is None and len(fast_enough["runs"]) == 2

    # a threshold that is a function is asked once the warm-up is over: a better best found meanwhile counts
    asked = []
    later = measure(built, workload, repeats=3, warmup=1, stop_below=lambda: asked.append(1) or 1e9)
    assert later["stopped_early"]["after"] == "warm-up" and asked == [1]
    asked.clear()
    kept = measure(built, workload, repeats=2, warmup=1, stop_below=lambda: asked.append(1) or None)
    assert kept.get("stopped_early") is None and len(kept["runs"]) == 2 and asked == [1, 1]  # and at the lease


def test_prefill_is_measured_on_the_prompt_tokens_padding_aside(bundled_model):
    # two prompts of different lengths in one batch: the shorter one is padded, and the padding is not read
    prompts = ("def add(a, b):\n", "class Stack:\n    def push(self, item):\n        self.items.append(item)\n")
    workload = Workload(prompts=prompts, batch_size=2, max_new_tokens=4)
    built = build_candidate(str(bundled_model), Candidate(), workload, "cpu")
    figures = measure(built, workload, repeats=1, warmup=0)
    assert figures["prompt_tokens"] == sum(len(built.tokenizer(p)["input_ids"]) for p in prompts)
    assert figures["prefill_tokens_per_s"] == figures["prompt_tokens"] / figures["ttft_s"]
