"""A static-cache decode loop with a compiled decode step: the seed guide's options 2 and 3.

`generate()` with `cache_implementation="static"` compiles the model's forward and drives it from
Python with all of generate's bookkeeping around each step. This loop keeps a `StaticCache`, runs the
prefill eagerly (one call per batch, any prompt length), and compiles one function that does a whole
decode step (forward through the cache, last-position logits, greedy choice) with `torch.compile`. Every
input of that step has one shape for the whole generation: the token (batch x 1), its positions, its
cache position, and an attention mask as long as the cache, updated in place. So the step compiles
once, and with `mode="reduce-overhead"` it replays as one CUDA graph.

It handles left-padded batches (positions count real tokens only), EOS (finished rows emit the pad
token, the loop stops when every row is done; `min_new_tokens` holds EOS back as generate() does), greedy
decoding and seeded sampling (temperature, top-k, top-p, drawn like generate() draws: `torch.multinomial` on
the processed distribution), and a streamer (`put` the prompt, the first token, then the tokens of every
`sync_every` steps at once; `end`). The host waits for the device only at those points (SYNC_EVERY), not
after every step as generate() does. Greedy output equals `generate()`'s on the same configuration
(tests/runtime/test_decode.py). Anything else generate() supports (beam search, repetition penalty, stop
strings, ...) is refused with `UnsupportedGeneration`; callers fall back to generate().
"""

from __future__ import annotations

import inspect

import torch

from autotune.runtime.compiling import CUDA_GRAPH_MODES
from autotune.runtime.decode.generation import (UnsupportedGeneration, check_supported, eos_ids, first_true,
                                                pad_id, sample)

# Steps between two waits of the host for the device. Between them the host queues the next steps while the
# device runs, so the per-step Python work is hidden behind the device's; at each wait the chunk's tokens go
# to the streamer and the loop stops if every row has finished (steps run past the last EOS are cut off, so
# the output is generate()'s). 1 waits after every step, as generate() does.
SYNC_EVERY = 8
class StaticDecodeLoop:
    """`generate(input_ids, attention_mask, generation_config=..., streamer=...)` through a StaticCache of
    `max_cache_len` tokens and a decode step compiled with `compile_mode` (None: eager) and `fullgraph`.
    One cache per batch size is kept and reset between calls. With `grow`, `max_cache_len` is where the cache
    starts (a preset's measured length, so a call of the measured shape attends over what its trial did), and a
    call that needs more grows it."""

    def __init__(self, model, max_cache_len: int | None = None, compile_mode: str | None = "reduce-overhead",
                 fullgraph: bool = True, offloading: bool = False, sync_every: int = SYNC_EVERY, grow: bool = False):
        if sync_every < 1:
            raise ValueError(f"sync_every must be at least 1, got {sync_every}")
        self.model = model
        self.sync_every = sync_every
        self.max_cache_len = max_cache_len  # None: sized by the first call, grown (in steps of 256) when needed
        self.offloading = offloading
        self.compile_mode = compile_mode
        self.caches: dict[int, object] = {}
        self.fixed_length = max_cache_len is not None and not grow
        # later transformers 5 releases rename `past_key_values` to `cache` (the old name warns, then goes)
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        step = self.decode_step
        if compile_mode is not None:
            options = {} if compile_mode == "default" else {"mode": compile_mode}
            step = torch.compile(step, fullgraph=fullgraph, **options)
        self.step = step

    def fit(self, total: int) -> None:
        """Make the caches hold `total` tokens (prompt + new): a fixed length refuses more, else a longer
        length (in steps of 256) means new caches and one recompilation."""
        if self.fixed_length and total > self.max_cache_len:
            raise UnsupportedGeneration(f"{total} tokens (prompt + new) do not fit the static cache of "
                                        f"{self.max_cache_len}")
        if self.max_cache_len is None or total > self.max_cache_len:
            self.max_cache_len = -(-total // 256) * 256
            self.forget()

    def forget(self) -> None:
        """Drop the caches (their length changes)."""
        self.caches.clear()

    def cache_for(self, batch_size: int):
        from transformers import StaticCache

        cache = self.caches.get(batch_size)
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len, offloading=self.offloading)
            self.caches[batch_size] = cache
        else:
            cache.reset()
        return cache

    def decode_step(self, token, position_ids, cache_position, attention_mask, cache, suppress):
        """One token through the cache: float32 last-position logits (plus `suppress`: -inf on EOS while
        min_new_tokens holds it back, else zeros) and their argmax."""
        out = self.model(input_ids=token, position_ids=position_ids, cache_position=cache_position,
                         attention_mask=attention_mask, use_cache=True, **{self.cache_arg: cache})
        logits = out.logits[:, -1, :].float() + suppress
        return logits, logits.argmax(dim=-1)

    def config_for(self, generation_config, changes: dict):
        """The generation config a call runs (the model's unless given, with `changes`), checked."""
        g = generation_config if generation_config is not None else self.model.generation_config
        if changes:
            g = g.__class__.from_dict({**g.to_dict(), **changes})
        check_supported(g)
        return g

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                cache) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt through the cache, eagerly (any prompt length): float32 last-position logits, and the
        prompt's positions (real tokens only, so left padding does not shift them)."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         cache_position=torch.arange(input_ids.shape[1], device=input_ids.device), use_cache=True,
                         **{self.cache_arg: cache})
        return out.logits[:, -1, :].float(), positions

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 generation_config=None, streamer=None, **kwargs) -> torch.Tensor:
        g = self.config_for(generation_config, kwargs)
        batch, prompt_len = input_ids.shape
        self.fit(prompt_len + g.max_new_tokens)
        device = input_ids.device
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        cache = self.cache_for(batch)
        mask = torch.zeros(batch, self.max_cache_len, dtype=attention_mask.dtype, device=device)
        mask[:, :prompt_len] = attention_mask  # as long as the cache: one shape for every step
        if streamer is not None:
            streamer.put(input_ids.cpu())

        last_logits, positions = self.prefill(input_ids, attention_mask, cache)
        eos = torch.tensor(eos_ids(g), device=device)
        min_new = g.min_new_tokens or 0
        suppress = torch.zeros(last_logits.shape[-1], device=device)
        if min_new and eos.numel():
            suppress[eos] = float("-inf")
        logits = last_logits + suppress
        greedy = logits.argmax(-1)
        next_position = positions[:, -1:] + 1
        pad = pad_id(g)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        generated: list[torch.Tensor] = []
        all_done: list[torch.Tensor] = []  # per step since the last wait: has every row finished?
        streamed = 0  # tokens per row handed to the streamer so far
        cache_position = torch.tensor([prompt_len], device=device)
        cuda_graphs = self.compile_mode in CUDA_GRAPH_MODES
        for step in range(g.max_new_tokens):
            token = sample(logits, g) if g.do_sample else greedy
            token = torch.where(finished, torch.full_like(token, pad), token)
            generated.append(token)
            if eos.numel():
                finished |= torch.isin(token, eos)
                all_done.append(finished.all())
            last = step == g.max_new_tokens - 1
            # wait for the device after the first token (time to first token), then every sync_every steps
            if last or step == 0 or (step % self.sync_every) == 0:
                streamed, stopped = self.sync(generated, streamed, all_done, streamer)
                if stopped or last:
                    break
            mask[:, prompt_len + step] = 1
            if step + 1 == min_new:
                suppress.zero_()  # min_new_tokens reached: EOS may come from the next token on
            if cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            logits, greedy = self.step(token[:, None], next_position.clone(), cache_position.clone(), mask, cache,
                                       suppress)
            # a CUDA graph's outputs are overwritten by its next replay: keep what is used after it
            greedy = greedy.clone()
            logits = logits.clone() if g.do_sample else logits
            next_position += 1
            cache_position += 1
        if streamer is not None:
            streamer.end()
        return torch.cat([input_ids, torch.stack(generated, dim=1)], dim=1)

    @staticmethod
    def sync(generated: list, streamed: int, all_done: list, streamer) -> tuple[int, bool]:
        """The host waits for the device: the steps run past the one where every row had finished are cut
        off, and the new tokens go to the streamer. Returns the tokens per row handed over so far, and
        whether every row has finished."""
        stop = first_true(torch.stack(all_done)) if all_done else None
        if stop is not None:  # every row finished `stop` steps into this chunk: drop what ran past
            del generated[streamed + stop + 1:]
        if streamer is not None:
            chunk = generated[streamed:]
            streamer.put(chunk[0].cpu() if len(chunk) == 1 else torch.stack(chunk, dim=1).cpu())
        all_done.clear()
        return len(generated), stop is not None
