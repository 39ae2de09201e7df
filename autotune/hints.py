"""Runtime hints: what a Candidate's `runtime()` (and a preset's `runtime`) holds beyond the load kwargs
and the GenerationConfig, and how it is applied to a loaded model. The worker and `load_preset` use the
same functions, so a preset runs as its trial was measured.

- `compile`: `{"api": "explicit", ...}` -> `model.forward = torch.compile(model.forward, mode, fullgraph)` for
  the decode steps, the prefill eager (`compiled_decode_forward`; the GenerationConfig carries
  `disable_compile=True` with it); `{"api": "generate", ...}` ->
  `generation_config.compile_config = CompileConfig(mode, fullgraph)`, for generate()'s own compile.
- `decode_loop`: `{"kind": "static", "mode", "fullgraph", "offloading"}` -> `model.generate` runs
  `autotune.decode_loop.StaticDecodeLoop` (a StaticCache and one compiled decode step), falling back to
  the plain generate() for what the loop does not do (beam search, an assistant model, ...);
  `{"kind": "graph", ..., "steps": N}` -> `GraphDecodeLoop`, the same with N steps per CUDA graph.
- `inductor`: `{"coordinate_descent_tuning": true, "freezing": true}` (either) -> set in `torch._inductor.config` before anything is
  compiled (a setting of the whole process: every later compile in it tunes its kernels this way).
- `weight_quantization`: `int8` -> every `nn.Linear` of the loaded model becomes an int8 weight-only linear
  (`autotune.quantize`), before any compile; `int8_kernel`: `triton` -> its decode steps run
  `autotune.int8_gemv`'s Triton kernel (where it can: CUDA with Triton), else the torch form Inductor compiles.
- `fuse_projections`: `true` -> each layer's q, k, v and gate, up projections are stacked into one product per
  decode step (`autotune.fusion`), after any weight quantization.
- (no hint) a model loaded with `attn_implementation="flex_attention"` gets `fit_flex_attention`: on CUDA,
  heads wider than 128 run with kernel options that fit the GPU's shared memory.
- `sdpa_backend`: `flash`, `efficient`, `math` or `cudnn` -> generation runs inside
  `torch.nn.attention.sdpa_kernel(SDPBackend...)`, which restricts PyTorch's scaled_dot_product_attention
  to that kernel (an error where the kernel cannot run the inputs, never a silent fallback).
"""

from __future__ import annotations

import contextlib
import functools

from autotune import environment

SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "math": "MATH",
                 "cudnn": "CUDNN_ATTENTION"}


def sdpa_backend(backend: str):
    """torch's SDPBackend of a backend name (flash, efficient, math, cudnn)."""
    from torch.nn.attention import SDPBackend

    if backend not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {backend!r}; one of {', '.join(SDPA_BACKENDS)}")
    return getattr(SDPBackend, SDPA_BACKENDS[backend])


def sdpa_backend_context(backend: str | None):
    """A context manager restricting SDPA to `backend` (None or "auto": no restriction)."""
    if backend in (None, "auto"):
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(sdpa_backend(backend))


def scoring_backend_context(backend: str | None):
    """The SDPA restriction of teacher-forced scoring: the candidate's kernel first, the math kernel only
    where that one cannot run the inputs. Scoring runs the whole sequence without a cache and, without a
    mask, transformers asks SDPA for grouped-query attention (`enable_gqa`), which the efficient and flash
    kernels refuse: on the H200 a static-loop trial with the efficient kernel decoded fine (its decode
    steps have a mask) and then lost its measurement to "No available kernel" while being scored."""
    if backend in (None, "auto", "math"):
        return sdpa_backend_context(backend)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([sdpa_backend(backend), SDPBackend.MATH], set_priority=True)


INDUCTOR_OPTIONS = {"coordinate_descent_tuning", "freezing"}


def check_weight_hints(runtime: dict) -> None:
    """`int8_kernel` names a kernel of `autotune.quantize` (`INT8_KERNELS`) and `fuse_projections` is true or
    false; ValueError otherwise."""
    from autotune.candidate import INT8_KERNELS  # not autotune.quantize: reading a preset imports no torch

    kernel = runtime.get("int8_kernel", "inductor")
    if kernel not in INT8_KERNELS:
        raise ValueError(f"runtime.int8_kernel {kernel!r} is not one of {', '.join(INT8_KERNELS)}")
    fuse = runtime.get("fuse_projections", False)
    if not isinstance(fuse, bool):
        raise ValueError(f"runtime.fuse_projections {fuse!r} is not true or false")


def apply_weight_hints(model, runtime: dict) -> None:
    """Apply the hints that change a loaded model's weights (checked by `check_weight_hints`), in order:
    `weight_quantization` with its `int8_kernel`, then `fuse_projections`."""
    from autotune import fusion, quantize

    check_weight_hints(runtime)
    quantize.apply_weight_quantization(model, runtime.get("weight_quantization"), runtime.get("int8_kernel"))
    if runtime.get("fuse_projections", False):
        fusion.fuse_siblings(model)


def check_inductor_hint(hint) -> None:
    """An `inductor` hint names Inductor options this autotune sets, each to true or false (a preset is
    data: nothing else of torch's configuration is touched); ValueError otherwise."""
    if hint is None:
        return
    if not isinstance(hint, dict) or set(hint) - INDUCTOR_OPTIONS or \
            not all(isinstance(value, bool) for value in hint.values()):
        raise ValueError(f"runtime.inductor {hint!r} is not a map of known Inductor options to true/false "
                         f"(known: {sorted(INDUCTOR_OPTIONS)})")


# AUTOTUNE_COMBO_KERNELS=1 (to measure, issue 7): Inductor's combo kernels, which launch independent kernels
# of a graph as one (a layer's q, k and v products read the same input; so do the gate and up products).
# A setting of the process, like the int8 ones of autotune.quantize; no preset records it.
COMBO_VARIABLE = "AUTOTUNE_COMBO_KERNELS"


def apply_inductor_config(hint: dict | None) -> None:
    """Set Inductor's options named in an `inductor` hint (checked by `check_inductor_hint`), and
    `combo_kernels` where AUTOTUNE_COMBO_KERNELS=1."""
    check_inductor_hint(hint)
    combo = environment.setting(COMBO_VARIABLE, ("0", "1"), "0", "use 1 (Inductor's combo kernels) or 0")
    options = {**(hint or {}), **({"combo_kernels": True} if combo == "1" else {})}
    if not options:
        return
    import torch._inductor.config as inductor_config

    for name, value in options.items():
        setattr(inductor_config, name, value)


def generate_in_sdpa_backend(model, backend: str | None) -> None:
    """Make `model.generate` run inside `sdpa_backend_context(backend)` (no change for None / "auto")."""
    if backend in (None, "auto"):
        return
    plain_generate = model.generate

    @functools.wraps(plain_generate)
    def generate(*args, **kwargs):
        with sdpa_backend_context(backend):
            return plain_generate(*args, **kwargs)

    model.generate = generate


def apply_compile(model, generation_config, hint: dict | None) -> None:
    """Apply a compile hint: the explicit `torch.compile(model.forward)`, or generate()'s `compile_config`."""
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
    that the next replay overwrites. On the H200 (transformers 5.17, torch 2.11) the verbatim recipe failed
    every time: "accessing tensor output of CUDAGraphs that has been overwritten" (random gemma-2b), or a
    segmentation fault (codelm-12m). With an eager prefill the cache is allocated outside any graph, and
    prompts of every length no longer recompile the forward. Each compiled call with CUDA graphs starts a
    new graph step (`cudagraph_mark_step_begin`), so outputs of one step may be read until the next."""
    import torch

    from autotune.decode_loop import CUDA_GRAPH_MODES

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


def decode_loop_for(model, hint: dict, max_cache_len: int | None = None):
    """The StaticDecodeLoop a decode-loop hint describes (the worker's and load_preset's alike)."""
    from autotune.decode_loop import GraphDecodeLoop, StaticDecodeLoop

    if hint.get("kind") == "graph":
        return GraphDecodeLoop(model, max_cache_len, compile_mode=hint["mode"], fullgraph=hint["fullgraph"],
                               steps=hint["steps"])
    return StaticDecodeLoop(model, max_cache_len, compile_mode=hint["mode"], fullgraph=hint["fullgraph"],
                            offloading=hint.get("offloading", False))


def apply_decode_loop(model, hint: dict | None, max_cache_len: int | None = None):
    """Make `model.generate` run the static decode loop (no change without a hint). Returns the loop."""
    if not hint:
        return None
    from autotune.decode_loop import UnsupportedGeneration

    loop = decode_loop_for(model, hint, max_cache_len)
    plain_generate = model.generate
    loop_kwargs = {"input_ids", "attention_mask", "generation_config", "streamer"}

    @functools.wraps(plain_generate)
    def generate(input_ids=None, attention_mask=None, generation_config=None, streamer=None, **kwargs):
        fields = {k: v for k, v in kwargs.items() if k not in loop_kwargs}
        config = generation_config if generation_config is not None else model.generation_config
        if input_ids is not None and all(hasattr(config, k) for k in fields):
            try:
                return loop.generate(input_ids, attention_mask, generation_config=config, streamer=streamer, **fields)
            except UnsupportedGeneration:
                pass
        return plain_generate(input_ids=input_ids, attention_mask=attention_mask,
                              generation_config=generation_config, streamer=streamer, **kwargs)

    model.generate = generate
    model.autotune_decode_loop = loop
    return loop


# Inductor's flex attention kernels for heads wider than 128 (gemma-2b: 256) find no configuration that fits
# the H200's shared memory with their defaults ("NoValidChoicesError: No choices to select", in every
# gemma-2b trial of the ninth session); with blocks of 32 x 32 in one stage they compile and decode the
# tokens of SDPA (benchmarks/flex_probe.py, tenth session, random gemma-2b, batch 1, 32 new tokens through
# generate()'s compile: 111 tok/s, blocks of 16 99 tok/s, SDPA 237 tok/s).
WIDE_HEAD_DIM = 128
WIDE_HEAD_FLEX_OPTIONS = {"BLOCK_M": 32, "BLOCK_N": 32, "num_stages": 1, "num_warps": 4}


def flex_kernel_options(query, given: dict | None) -> dict | None:
    """The kernel options of one flex attention call: the caller's where given, else WIDE_HEAD_FLEX_OPTIONS
    for CUDA queries with heads wider than WIDE_HEAD_DIM, else none (flex attention's own choice)."""
    if given is not None:
        return given
    if query.device.type == "cuda" and query.shape[-1] > WIDE_HEAD_DIM:
        return dict(WIDE_HEAD_FLEX_OPTIONS)
    return None


def fit_flex_attention(model) -> bool:
    """Where `model` runs transformers' flex attention, register it (for the whole process, once) with
    `flex_kernel_options`, which changes nothing but the kernel options of wide CUDA heads. True if the
    model uses flex attention."""
    if getattr(model.config, "_attn_implementation", None) != "flex_attention":
        return False
    from transformers import AttentionInterface

    current = AttentionInterface._global_mapping["flex_attention"]
    if getattr(current, "autotune_fitted", False):
        return True

    @functools.wraps(current)
    def flex_attention_fitted(module, query, key, value, attention_mask, **kwargs):
        options = flex_kernel_options(query, kwargs.pop("kernel_options", None))
        if options is not None:
            kwargs["kernel_options"] = options
        return current(module, query, key, value, attention_mask, **kwargs)

    flex_attention_fitted.autotune_fitted = True
    AttentionInterface.register("flex_attention", flex_attention_fitted)
    return True
