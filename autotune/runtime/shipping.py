"""Shipping autotune's generation code in an exported model folder, as its `custom_generate/`.

transformers loads `custom_generate/generate.py` of a model folder as a module of its own package and copies
the files it imports relatively (`from .name import ...`, one folder, no deeper). So the folder holds the
modules that tune a loaded model (`SHIPPED`), flat, with their imports of each other rewritten from
`from autotune.runtime.<...>.name import` to `from .name import`. These modules import nothing else of autotune
(a test holds them to it), so the folder runs where autotune is not installed. The copies are made from the
installed source at each export: one version of the code, the one that measured the preset.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# module -> its file name in custom_generate/; generate.py is what transformers calls
SHIPPED = {
    "autotune.runtime.hints": "hints.py",
    "autotune.runtime.attention": "attention.py",
    "autotune.runtime.compiling": "compiling.py",
    "autotune.runtime.quant.int8_gemv": "int8_gemv.py",
    "autotune.runtime.quant.quantize": "quantize.py",
    "autotune.runtime.quant.fusion": "fusion.py",
    "autotune.runtime.quant.weights": "weights.py",
    "autotune.runtime.decode.generation": "generation.py",
    "autotune.runtime.decode.static": "static.py",
    "autotune.runtime.decode.graph": "graph.py",
    "autotune.runtime.decode.loops": "loops.py",
    "autotune.runtime.tuning": "tuning.py",
    "autotune.runtime.folder_generate": "generate.py",
}
# a shipped module's last name -> its file (the same but for folder_generate, which is generate.py)
SHIPPED_NAMES = {module.rsplit(".", 1)[1]: file for module, file in SHIPPED.items()}
# what the folder's code needs installed: transformers checks these before it runs generate.py
REQUIREMENTS = "torch>=2.11\ntransformers>=5.17\n"
IMPORT_OF_AUTOTUNE = re.compile(r"^(\s*)from autotune\.runtime\.(?:\w+\.)*?(\w+) import ", re.MULTILINE)
ANY_AUTOTUNE = re.compile(r"^\s*(from|import) autotune\b", re.MULTILINE)


def shipped_source(module: str) -> str:
    """The source of a shipped module with its imports of other shipped modules made relative.

    Args:
        module: a key of SHIPPED.

    Returns:
        The rewritten source. RuntimeError where it imports autotune beyond the shipped modules.
    """
    origin = importlib.util.find_spec(module).origin
    source = Path(origin).read_text(encoding="utf-8")

    def relative(match: re.Match) -> str:
        name = match.group(2)
        if name not in SHIPPED_NAMES:
            raise RuntimeError(f"{module} imports {name}, which an exported folder does not ship")
        return f"{match.group(1)}from .{Path(SHIPPED_NAMES[name]).stem} import "

    rewritten = IMPORT_OF_AUTOTUNE.sub(relative, source)
    if ANY_AUTOTUNE.search(rewritten):
        raise RuntimeError(f"{module} imports autotune outside the shipped modules: an exported folder cannot run it")
    return rewritten



def write_custom_generate(folder: str | Path) -> Path:
    """Write `custom_generate/` (the shipped modules and requirements.txt) into a model folder.

    Args:
        folder: the model folder being exported.

    Returns:
        The custom_generate folder.
    """
    target = Path(folder) / "custom_generate"
    target.mkdir(parents=True, exist_ok=True)
    for module, file in SHIPPED.items():
        (target / file).write_text(shipped_source(module), encoding="utf-8")
    (target / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    return target
