"""`--workload` presets and `--objective`: what they set, what they refuse, and the built-in long prompt set."""

from __future__ import annotations

import pytest

from autotune.config.objective import metric_of
from autotune.config.settings import WORKLOADS, SearchSettings, default, with_workload_preset, workload_from_options
from autotune.config.workload import Workload
from autotune.errors import InputError


def test_a_workload_preset_sets_prompts_new_tokens_and_objective():
    options = with_workload_preset({"workload": "long-context", "prompts": None, "max_new_tokens": 64})
    assert (options["prompts"], options["max_new_tokens"], options["objective"]) == ("long", 64, "e2e")
    chat = with_workload_preset({"workload": "short-chat"})
    assert (chat["prompts"], chat["max_new_tokens"], chat["objective"]) == ("chat", 128, "decode")
    assert with_workload_preset({"prompts": "code"}) == {"prompts": "code"}


def test_an_option_the_preset_sets_is_refused_beside_it():
    with pytest.raises(InputError, match="--workload short-chat sets --prompts chat, --max-new-tokens 128, "
                                         "--objective decode: leave out --max-new-tokens"):
        with_workload_preset({"workload": "short-chat", "max_new_tokens": 32})
    with pytest.raises(InputError, match="leave out --prompts, --objective"):
        with_workload_preset({"workload": "short-chat", "prompts": "code", "objective": "e2e"})
    # what the preset sets anyway, or an option's declared default, is no conflict
    assert with_workload_preset({"workload": "long-context", "objective": "e2e", "max_new_tokens": 64})["prompts"] == \
        "long"
    with pytest.raises(InputError, match="--workload is one of short-chat, long-context"):
        with_workload_preset({"workload": "huge"})
    # the batch size is the user's: a workload preset does not set it
    assert "batch_size" not in WORKLOADS["long-context"]


def test_the_long_prompt_set_holds_documents_of_several_lengths():
    workload = workload_from_options({"workload": "long-context", "batch_size": 2})
    lengths = [len(p) for p in workload.prompts]
    assert len(lengths) == 8 and len(set(lengths)) == 8 and min(lengths) > 4000 and max(lengths) < 14000
    assert all(p.startswith("Summarise the following document") for p in workload.prompts)
    assert workload.batch_size == 2 and workload.max_new_tokens == 64


def test_the_objective_is_validated_and_named_by_its_measurement_field():
    settings = SearchSettings(model="m", workload=Workload(prompts=("x",)), study_name="s", objective="e2e")
    assert settings.objective_metric == "e2e_tokens_per_s" and default("objective") == "decode"
    with pytest.raises(InputError, match="--objective is one of decode, e2e"):
        SearchSettings(model="m", workload=Workload(prompts=("x",)), study_name="s", objective="latency")
    assert metric_of({}) == "decode_tokens_per_s"  # a study of an older version
    assert metric_of({"objective": "e2e_tokens_per_s"}) == "e2e_tokens_per_s"
    assert metric_of({"objective": "import os"}) == "decode_tokens_per_s"  # a preset is data
