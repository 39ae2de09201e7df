"""Load a preset with autotune and generate: the model is built as its trial was measured (weight hints,
compile, decode loop, SDPA backend).

    python examples/load_preset.py studies/demo.preset.json "def fibonacci(n):"
"""

import json
import sys

import torch
from transformers import AutoTokenizer

import autotune


def main(preset_path: str, prompt: str = "def fibonacci(n):") -> str:
    model, gen = autotune.load_preset(preset_path, device="cuda" if torch.cuda.is_available() else "cpu")
    preset = json.load(open(preset_path))
    tokenizer = AutoTokenizer.from_pretrained(preset["model"])
    tokenizer.padding_side = "left"
    inputs = tokenizer([prompt], return_tensors="pt").to(model.device)
    out = model.generate(**inputs, generation_config=gen)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


if __name__ == "__main__":
    print(json.dumps({"text": main(*sys.argv[1:3])}))
