"""Chat workloads: `{"messages": [...]}` lines rendered with the model's chat template, tokenized as the template
tokenizes them; bad chat input gets one line naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from autotune.config.preset_schema import check_workload
from autotune.config.workload import Workload
from autotune.errors import WorkloadError

# A template that starts with the BOS text, as Llama's and Gemma's do, where the tokenizer may add BOS itself
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
CHATS = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "def add(a, b):"}],
         [{"role": "user", "content": "import os"}]]


@pytest.fixture
def chat_model(tmp_path, bundled_model):
    """The bundled model with a chat template (its tokenizer's BOS handling unchanged)."""
    folder = tmp_path / "chat-model"
    shutil.copytree(bundled_model, folder)
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    return str(folder)


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_conversations_are_rendered_with_the_template_and_tokenize_as_it_does(tmp_path, chat_model):
    from transformers import AutoTokenizer

    path = write_lines(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    workload = Workload.from_file(path, model=chat_model, max_new_tokens=8)
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    assert workload.chat and len(workload.prompts) == 2
    assert "<assistant>" in workload.prompts[0] and "be brief" in workload.prompts[0]
    for text, messages in zip(workload.prompts, CHATS):
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        expected = list(expected if isinstance(expected, list) else expected["input_ids"])
        assert tokenizer(text)["input_ids"] == expected  # the BOS is not doubled
        assert expected.count(tokenizer.bos_token_id) == 1


def test_a_chat_workload_is_recorded_as_chat_and_read_back(tmp_path, chat_model):
    path = write_lines(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    workload = Workload.from_file(path, model=chat_model, max_new_tokens=8)
    record = workload.record()
    check_workload(record)
    assert record["chat"] is True
    assert Workload.from_record(record) == workload
    assert Workload.from_record(record, prompts_file=path, model=chat_model) == workload
    assert Workload.from_dict(workload.to_dict()) == workload
    plain = Workload(prompts=("a",))
    assert "chat" not in plain.to_dict() and "chat" not in plain.record()  # older studies keep their fingerprint


@pytest.mark.parametrize("records,model,message", [
    ([{"messages": CHATS[0]}], "bundled", "has no chat template"),
    ([{"messages": CHATS[0]}], "random:gemma-2b", "random-weight models have no chat template"),
    ([{"messages": CHATS[0]}], None, "give --model"),
    ([{"messages": CHATS[0]}, {"prompt": "x"}], "chat", 'mixes "prompt" and "messages"'),
    ([{"messages": []}], "chat", "non-empty list"),
    ([{"messages": [{"role": "user"}]}], "chat", 'message 1 must be an object with string "role" and "content"'),
    ([{"messages": "hello"}], "chat", "non-empty list"),
])
def test_bad_chat_input_gets_one_line(tmp_path, chat_model, bundled_model, records, model, message):
    path = write_lines(tmp_path / "chat.jsonl", records)
    model = {"bundled": str(bundled_model), "chat": chat_model}.get(model, model)
    with pytest.raises(WorkloadError, match=message) as raised:
        Workload.from_file(path, model=model)
    assert "\n" not in str(raised.value)


def test_a_template_that_rejects_the_messages_says_so(tmp_path, chat_model):
    from pathlib import Path

    Path(chat_model, "chat_template.jinja").write_text("{{ raise_exception('roles must alternate') }}")
    path = write_lines(tmp_path / "chat.jsonl", [{"messages": CHATS[0]}])
    with pytest.raises(WorkloadError, match="the chat template rejects it.*roles must alternate"):
        Workload.from_file(path, model=chat_model)


def test_a_prompt_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(WorkloadError, match="UTF-8"):
        Workload.from_file(path)
