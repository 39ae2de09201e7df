"""Choosing a decode loop by its hint, and binding it to a model's `generate`."""

from __future__ import annotations

import functools

from autotune.runtime.decode.generation import UnsupportedGeneration
from autotune.runtime.decode.graph import GraphDecodeLoop
from autotune.runtime.decode.static import StaticDecodeLoop


def loop_for(model, hint: dict, max_cache_len: int | None = None, grow: bool = False) -> StaticDecodeLoop:
    """The loop a `decode_loop` hint describes.

    Args:
        model: the loaded (and quantized, stacked) model.
        hint: the runtime hint (`kind`, `mode`, `fullgraph`, `offloading`, `steps`).
        max_cache_len: the cache length, or None: sized by the first call, grown when a call needs more.
        grow: `max_cache_len` is where the cache starts, grown when a call needs more (else it is fixed).

    Returns:
        A StaticDecodeLoop or GraphDecodeLoop; its `generate` takes what generate() takes for one batch.
    """
    if hint.get("kind") == "graph":
        return GraphDecodeLoop(model, max_cache_len, compile_mode=hint["mode"], fullgraph=hint["fullgraph"],
                               steps=hint["steps"], grow=grow)
    return StaticDecodeLoop(model, max_cache_len, compile_mode=hint["mode"], fullgraph=hint["fullgraph"],
                            offloading=hint.get("offloading", False), grow=grow)


def bind_to_generate(model, loop: StaticDecodeLoop) -> None:
    """Make `model.generate` run `loop`, falling back to the plain generate() for what the loop does not do
    (beam search, penalties, an assistant model, ...); the loop stays reachable as
    `model.autotune_decode_loop`."""
    plain_generate = model.generate

    @functools.wraps(plain_generate)
    def generate(input_ids=None, attention_mask=None, generation_config=None, streamer=None, **kwargs):
        config = generation_config if generation_config is not None else model.generation_config
        if input_ids is not None and all(hasattr(config, k) for k in kwargs):
            try:
                return loop.generate(input_ids, attention_mask, generation_config=config, streamer=streamer,
                                     **kwargs)
            except UnsupportedGeneration:
                pass
        return plain_generate(input_ids=input_ids, attention_mask=attention_mask,
                              generation_config=generation_config, streamer=streamer, **kwargs)

    model.generate = generate
    model.autotune_decode_loop = loop
