from __future__ import annotations

import pytest
from transformers import GenerationConfig

from autotune.candidate import Candidate
from autotune.errors import CandidateError


def test_defaults_are_the_baseline():
    c = Candidate()
    assert c.load_kwargs() == {} and c.generation_kwargs() == {} and c.runtime() == {"padding_side": "left"}
    assert c.describe() == "baseline"


def test_json_round_trip():
    c = Candidate(dtype="bfloat16", cache_implementation="static", compile="default", compile_fullgraph=True,
                  pad_to_multiple_of=8)
    assert Candidate.from_json(c.to_json()) == c


def test_three_parts():
    c = Candidate(dtype="float32", attn_implementation="sdpa", cache_implementation="static", compile="default",
                  compile_api="explicit")
    assert c.load_kwargs() == {"dtype": "float32", "attn_implementation": "sdpa"}
    assert c.generation_kwargs() == {"cache_implementation": "static", "disable_compile": True}
    assert c.runtime()["compile"] == {"api": "explicit", "mode": "default", "fullgraph": False}
    GenerationConfig(**c.generation_kwargs())  # plain transformers accepts it


def test_prompt_lookup_and_assisted_fields():
    assert Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=5).generation_kwargs() == \
        {"prompt_lookup_num_tokens": 5}
    c = Candidate(decoding="assisted", num_assistant_tokens=5, assistant="some/model")
    assert c.generation_kwargs() == {"num_assistant_tokens": 5, "num_assistant_tokens_schedule": "constant"}
    assert c.runtime()["assistant_model"] == "some/model"


@pytest.mark.parametrize("field,value", [("dtype", "float8"), ("compile", "fast"), ("pad_to_multiple_of", 0),
                                         ("pad_to_multiple_of", True), ("compile_fullgraph", "yes")])
def test_values_outside_a_knob_are_refused(field, value):
    with pytest.raises(CandidateError, match=field):
        Candidate(**{field: value})


def test_unknown_field_in_json():
    with pytest.raises(CandidateError, match="unknown candidate field"):
        Candidate.from_dict({"turbo": True})


def test_effective_configuration_ignores_knobs_without_effect():
    a = Candidate(compile="off", compile_fullgraph=True)
    b = Candidate()
    assert a != b and a.key() == b.key()
    assert Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=3).key() != \
        Candidate(decoding="prompt_lookup", prompt_lookup_num_tokens=5).key()
