"""Use a preset without autotune: its load kwargs go to `from_pretrained`, its generation config to
`GenerationConfig`. The outputs are those that were measured; the runtime hints (docs/preset.md) are what
autotune adds for the measured speed.

    python examples/plain_transformers.py studies/demo.preset.json "def fibonacci(n):"
"""

import json
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig


def main(preset_path: str, prompt: str = "def fibonacci(n):") -> str:
    p = json.load(open(preset_path))
    model = AutoModelForCausalLM.from_pretrained(p["model"], **p["load_kwargs"]).eval()
    gen = GenerationConfig(**p["generation_config"])
    tokenizer = AutoTokenizer.from_pretrained(p["model"])
    inputs = tokenizer([prompt], return_tensors="pt")
    out = model.generate(**inputs, generation_config=gen)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


if __name__ == "__main__":
    text = main(*sys.argv[1:3])
    print(json.dumps({"text": text, "autotune_imported": "autotune" in sys.modules}))
