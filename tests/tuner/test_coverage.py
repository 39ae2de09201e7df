"""Covering trials: a few valid configurations that together hold every knob value of the space."""

from __future__ import annotations

from support import space_for

from autotune.tuner import coverage
from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace


def gpu_space() -> SearchSpace:
    """The default space as the H200 sees it for random gemma-2b (bitsandbytes and Triton installed, no
    flash-attn)."""
    return space_for(SearchSpace.load("default"), 
        "cuda", batch_size=1, assistant=None, has_flex_attention=True, has_bitsandbytes=True, has_triton=True,
        random_weights=True)


def cover_all(space, fail=lambda candidate: False, fits=lambda candidate: True, limit=40):
    """Run covering trials as the Tuner does (each 'measured' unless `fail` says so) until none is left."""
    candidates = coverage.pool(space, seed=0, assistant=None)
    picked, ran = [], []
    while len(picked) < limit:
        measured, failed = coverage.tally(space, ran)
        chosen = coverage.next_cover(space, candidates, measured, failed, {c.key() for c in picked}, fits=fits)
        if chosen is None:
            return picked, coverage.tally(space, ran)
        picked.append(chosen)
        ran.append((len(ran), chosen, "failed" if fail(chosen) else "ok"))
    raise AssertionError("covering did not end")


def test_a_few_covering_trials_measure_every_value_of_the_default_space():
    space = gpu_space()
    picked, (measured, failed) = cover_all(space)
    assert set(measured) == coverage.all_values(space)  # every reachable value measured
    assert len(picked) <= 12  # against 34 of 48 values in 30 TPE trials on the H200
    assert all(space.invalid_reason(c) is None for c in picked)  # never an invalid combination
    assert len({c.key() for c in picked}) == len(picked)
    # the assistant's and prompt lookup's knobs are not reachable on a random model: not asked for
    assert not any(name.startswith(("num_assistant", "prompt_lookup")) for name, _ in coverage.all_values(space))


def test_a_failing_value_is_retried_alone_then_given_up():
    space = gpu_space()
    flex = ("attn_implementation", "flex_attention")

    def fail(candidate):
        return candidate.attn_implementation == "flex_attention"

    picked, (measured, failed) = cover_all(space, fail=fail)
    assert flex not in measured and len(failed[flex]) == coverage.MAX_FAILURES  # tried twice, then given up
    retry = [c for c in picked if fail(c)][1]
    before = [(i, c, "failed" if fail(c) else "ok") for i, c in enumerate(picked[:picked.index(retry)])]
    measured_before, failed_before = coverage.tally(space, before)
    unproven = set(failed_before) - set(measured_before)  # values that had only failed so far
    assert coverage.values_of(space, retry) & unproven == {flex}  # retried with no other such value
    # every other value was still measured, in trials without flex_attention
    assert set(measured) == coverage.all_values(space) - {flex}


def test_covering_trials_stay_within_the_memory_budget():
    space = gpu_space()
    picked, (measured, _) = cover_all(space, fits=lambda c: c.dtype != "float32")
    assert all(c.dtype != "float32" for c in picked)
    assert ("dtype", "float32") not in measured and len(measured) == len(coverage.all_values(space)) - 1


def test_values_count_where_they_are_built():
    space = gpu_space()
    # an SDPA backend with eager attention, and reduce-overhead in the graph loop, are not built as such
    eager = Candidate(attn_implementation="eager", sdpa_backend="math")
    assert ("sdpa_backend", "math") not in coverage.values_of(space, eager)
    graph = Candidate(cache_implementation="static", compile="reduce-overhead", decode_loop="graph_loop")
    assert ("compile", "default") in coverage.values_of(space, graph)


def test_new_values_are_not_tried_beside_a_value_that_failed():
    """The H200's eighth session: compile_api=generate was first drawn beside a retry of flex attention (which
    cannot compile for gemma-2b) and never measured. New values go first into trials with no value that
    failed; retries come after them."""
    space = gpu_space()

    def fail(candidate):
        effective = candidate.effective()
        return effective.attn_implementation == "flex_attention" or (
            effective.cache_implementation == "offloaded_static" and effective.compile != "off")

    picked, (measured, failed) = cover_all(space, fail=fail)
    flex = ("attn_implementation", "flex_attention")
    assert flex not in measured and len(failed[flex]) == coverage.MAX_FAILURES
    assert ("compile_api", "generate") in measured
    # the offloaded cache fails with compile: its retry was beside compile, away from trial 1's compile off
    assert set(measured) >= coverage.all_values(space) - {flex, ("cache_implementation", "offloaded_static")}
    # compile_api=generate went into a trial with no value that had failed (on the H200 it went beside flex),
    # but those every configuration with it holds (decode_loop=generate, which may have failed beside flex)
    first = picked[measured[("compile_api", "generate")][0]]
    before = [(i, c, "failed" if fail(c) else "ok") for i, c in enumerate(picked[:picked.index(first)])]
    measured_before, failed_before = coverage.tally(space, before)
    holding = [coverage.values_of(space, c) for c in coverage.pool(space, seed=0, assistant=None)]
    forced = set.intersection(*[values for values in holding if ("compile_api", "generate") in values])
    assert ("decode_loop", "generate") in forced
    assert not coverage.values_of(space, first) & (set(failed_before) - set(measured_before) - forced)


def test_values_another_worker_is_running_are_not_chosen_again():
    """Two workers of one study: the one choosing now leaves the running configuration and its values to the
    other (on two H200s both took the same one, and one waited for the other's result)."""
    space = gpu_space()
    pool = coverage.pool(space, seed=0, assistant=None)
    first = coverage.next_cover(space, pool, {}, {}, set())
    second = coverage.next_cover(space, pool, {}, {}, {first.key()}, pending=[first])
    assert second is not None and second.key() != first.key()
    new_in_first = coverage.values_of(space, first) - coverage.values_of(space, Candidate())
    assert not new_in_first & coverage.values_of(space, second)  # nothing the running trial measures already
