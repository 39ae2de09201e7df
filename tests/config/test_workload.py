from __future__ import annotations

import json

import pytest

from autotune.errors import WorkloadError
from autotune.config.workload import Workload, default_prompts


def test_default_prompts_are_varied_code():
    prompts = default_prompts()
    assert len(prompts) >= 8
    assert len({len(p) for p in prompts}) >= 6
    assert all("def " in p or "class " in p or "import " in p for p in prompts)


def test_jsonl_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert Workload.from_file(path, batch_size=2).prompts == ("a", "b")


@pytest.mark.parametrize("text,message", [("not json\n", "not valid JSON"), ('{"x": 1}\n', '"prompt"'), ("", "no prompts")])
def test_bad_jsonl(tmp_path, text, message):
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        Workload.from_file(path)


def test_batches_have_one_shape():
    w = Workload(prompts=tuple("abcde"), batch_size=2)
    assert w.batches() == [("a", "b"), ("c", "d")]


@pytest.mark.parametrize("settings", [{"batch_size": 0}, {"batch_size": 20}, {"max_new_tokens": 1}])
def test_bad_settings(settings):
    with pytest.raises(WorkloadError):
        Workload(prompts=("a", "b"), **settings)


def test_json_round_trip_and_fingerprint():
    w = Workload.default(batch_size=2, max_new_tokens=8)
    assert Workload.from_json(w.to_json()) == w
    assert w.fingerprint() != Workload.default(batch_size=2, max_new_tokens=9).fingerprint()


def test_a_preset_records_the_workload_and_large_prompts_by_their_hash_only(tmp_path):
    from autotune.config.workload import MAX_RECORDED_PROMPT_BYTES

    small = Workload(prompts=("a", "b"), batch_size=2, max_new_tokens=9, sampling=True, seed=3)
    assert Workload.from_record(small.record()) == small
    large = Workload(prompts=("x" * MAX_RECORDED_PROMPT_BYTES, "y"))
    record = large.record()
    assert "prompts" not in record and record["prompt_count"] == 2
    with pytest.raises(WorkloadError, match="--prompts FILE"):
        Workload.from_record(record)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in large.prompts))
    assert Workload.from_record(record, path) == large
