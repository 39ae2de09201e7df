"""A chat workload end to end on a real trained model (SmolLM2-135M-Instruct): `autotune search` with
conversations rendered by the model's chat template exports a preset that agrees with the baseline at the bar,
records the workload as chat, and chats through plain transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from support import run_cli

from autotune.config.gate import Gate

pytestmark = pytest.mark.slow

CHATS = [[{"role": "user", "content": "What is the capital of France?"}],
         [{"role": "system", "content": "You are a concise assistant."},
          {"role": "user", "content": "Explain what a hash table is in two sentences."}]]

# Plain transformers, as a user's code chats with the preset: no autotune import.
CHAT_WITH_PRESET = """
import json, sys
sys.modules["autotune"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
preset = json.load(open(sys.argv[1]))
model = AutoModelForCausalLM.from_pretrained(preset["model"], **preset["load_kwargs"])
tokenizer = AutoTokenizer.from_pretrained(preset["model"])
messages = json.loads(sys.argv[2])
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
config = GenerationConfig(**{**preset["generation_config"], "max_new_tokens": 12, "min_new_tokens": None})
out = model.generate(**inputs, generation_config=config)
print(json.dumps(out[0, inputs["input_ids"].shape[1]:].tolist()))
"""


@pytest.fixture(scope="module")
def chat_study(tmp_path_factory, real_model):
    workdir = tmp_path_factory.mktemp("chat")
    prompts = workdir / "chat.jsonl"
    prompts.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CHATS))
    done = run_cli("search", "--model", str(real_model), "--device", "cpu", "--space", "quick", "--trials", "2",
                   "--confirm", "0", "--repeats", "1", "--prompts", str(prompts), "--max-new-tokens", "12",
                   "--study", "chat", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    return workdir, json.loads((workdir / "studies" / "chat.preset.json").read_text())


def test_a_chat_search_on_the_real_model_exports_an_equivalent_chat_preset(chat_study):
    _, preset = chat_study
    assert preset["workload"]["chat"] is True
    assert preset["workload"]["prompts"][0].startswith("<|im_start|>")  # rendered by SmolLM2's own template
    # judged by the noise-floor gate against the float32 reference the baseline trial scored, and recorded so
    m, gate = preset["measurement"], Gate.of_attrs(preset["study"])
    assert gate == Gate("noise-floor", 0.99) and 0 < m["floor_top1_agreement"] <= 1
    assert gate.passes(SimpleNamespace(**m)), m


def test_the_chat_preset_chats_through_plain_transformers(chat_study, real_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, preset = chat_study
    reply = subprocess.run([sys.executable, "-c", CHAT_WITH_PRESET, str(workdir / "studies" / "chat.preset.json"),
                            json.dumps(CHATS[0])], capture_output=True, text=True, timeout=600)
    assert reply.returncode == 0, reply.stderr[-3000:]
    tokens = json.loads(reply.stdout.strip().splitlines()[-1])
    tokenizer = AutoTokenizer.from_pretrained(real_model)
    assert "Paris" in tokenizer.decode(tokens)
    model = AutoModelForCausalLM.from_pretrained(real_model)  # the baseline, greedy: the preset's reply begins alike
    inputs = tokenizer.apply_chat_template(CHATS[0], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    greedy = model.generate(**inputs, max_new_tokens=4, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
    assert tokens[:4] == greedy
