"""Compile hints: Inductor's options, and torch.compile of the forward through either API.

- `inductor`: `{"coordinate_descent_tuning": true, "freezing": true}` (either) -> set in
  `torch._inductor.config` before anything is compiled (a setting of the whole process: every later compile
  in it tunes its kernels, or freezes its weights, this way).
- `compile`: `{"api": "explicit", ...}` -> `model.forward` compiled for the decode steps, the prefill eager
  (`compiled_decode_forward`; the GenerationConfig carries `disable_compile=True` with it);
  `{"api": "generate", ...}` -> `generation_config.compile_config = CompileConfig(mode, fullgraph)`, for
  generate()'s own compile.
"""

from __future__ import annotations

import functools

from autotune.runtime.hints import check_inductor_hint

# torch.compile modes that capture CUDA graphs (each replay overwrites the previous replay's outputs)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def apply_inductor_config(hint: dict | None) -> None:
    """Set Inductor's options named in an `inductor` hint (checked by `check_inductor_hint`)."""
    check_inductor_hint(hint)
    if not hint:
        return
    import torch._inductor.config as inductor_config

    for name, value in hint.items():
        setattr(inductor_config, name, value)


def apply_compile(model, generation_config, hint: dict | None) -> None:
    """Apply a compile hint: the explicit compile of the forward, or generate()'s `compile_config`."""
    if not hint:
        return
    if hint["api"] == "explicit":
        model.forward = compiled_decode_forward(model.forward, hint["mode"], hint["fullgraph"])
    else:
        from transformers import CompileConfig

        generation_config.compile_config = CompileConfig(mode=hint["mode"], fullgraph=hint["fullgraph"])


def compiled_decode_forward(forward, mode: str, fullgraph: bool):
    """The seed guide's `model.forward = torch.compile(model.forward, mode=..., fullgraph=...)`, made to run
    on transformers 5: decode steps (one new token per row) go through the compiled forward, the prefill
    (several tokens) runs eagerly.

    Why: transformers 5 allocates a static cache lazily, on its first update. Compiled verbatim, that first
    update happens inside the compiled prefill, so with CUDA graphs the cache tensors are outputs of a graph
    that the next replay overwrites ("accessing tensor output of CUDAGraphs that has been overwritten", or a
    segmentation fault). With an eager prefill the cache is allocated outside any graph, and prompts of every
    length no longer recompile the forward. Each compiled call with CUDA graphs starts a new graph step
    (`cudagraph_mark_step_begin`), so outputs of one step may be read until the next.

    Args:
        forward: the model's forward.
        mode: a torch.compile mode ("default", "reduce-overhead", "max-autotune").
        fullgraph: torch.compile's `fullgraph`.

    Returns:
        A forward that compiles and runs decode steps, and runs anything longer eagerly.
    """
    import torch

    options = {} if mode == "default" else {"mode": mode}
    compiled = torch.compile(forward, fullgraph=fullgraph, **options)
    cuda_graphs = mode in CUDA_GRAPH_MODES

    @functools.wraps(forward)
    def decode_compiled(*args, **kwargs):
        tokens = kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        if tokens is None or tokens.shape[1] != 1:
            return forward(*args, **kwargs)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return decode_compiled
