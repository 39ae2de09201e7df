"""autotune's decode loops: a static cache driven by one compiled decode step (`StaticDecodeLoop`), and the
same with a chunk of steps captured per CUDA graph (`GraphDecodeLoop`). A preset's `decode_loop` hint names
one: `{"kind": "static", "mode", "fullgraph", "offloading"}` or `{"kind": "graph", ..., "steps": N}`."""

from autotune.runtime.decode.generation import UnsupportedGeneration
from autotune.runtime.decode.graph import GraphDecodeLoop
from autotune.runtime.decode.loops import bind_to_generate, loop_for
from autotune.runtime.decode.static import StaticDecodeLoop

__all__ = ["GraphDecodeLoop", "StaticDecodeLoop", "UnsupportedGeneration", "bind_to_generate", "loop_for"]
