"""A static-cache decode loop with a compiled decode step: the seed guide's options 2 and 3.

`generate()` with `cache_implementation="static"` compiles the model's forward and drives it from
Python with all of generate's bookkeeping around each step. This loop keeps a `StaticCache`, runs the
prefill eagerly (one call per batch, any prompt length), and compiles one function that does a whole
decode step (forward through the cache, last-position logits, greedy choice) with `torch.compile`. Every
input of that step has one shape for the whole generation: the token (batch x 1), its positions, its
cache position, and an attention mask as long as the cache, updated in place. So the step compiles
once, and with `mode="reduce-overhead"` it replays as one CUDA graph.

It handles left-padded batches (positions count real tokens only), EOS (finished rows emit the pad
token, the loop stops when every row is done; `min_new_tokens` holds EOS back as generate() does), greedy decoding and seeded sampling (temperature, top-k,
top-p, drawn like generate() draws: `torch.multinomial` on the processed distribution), and a streamer
(`put` the prompt, the first token, then the tokens of every `sync_every` steps at once; `end`). The host
waits for the device only at those points (SYNC_EVERY), not after every step as generate() does. Greedy output equals `generate()`'s on the same
configuration (tests/test_decode_loop.py). Anything else generate() supports (beam search, repetition
penalty, stop strings, ...) is refused with `UnsupportedGeneration`; callers fall back to generate().

`GraphDecodeLoop` is the same loop with GRAPH_STEPS decode steps captured as one CUDA graph (the
`graph_loop` value of the decode_loop knob): no Python between the steps of a chunk.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from autotune.candidate import GRAPH_STEPS

SUPPORTED_SAMPLING = ("temperature", "top_k", "top_p")


class UnsupportedGeneration(ValueError):
    """The generation config asks for something this loop does not do."""


def unsupported_reason(generation_config) -> str | None:
    """Why this loop cannot run `generation_config` as generate() would, or None."""
    g = generation_config
    checks = [
        (getattr(g, "num_beams", 1) not in (None, 1), "beam search"),
        (getattr(g, "num_return_sequences", 1) not in (None, 1), "several sequences per prompt"),
        (getattr(g, "repetition_penalty", 1.0) not in (None, 1.0), "a repetition penalty"),
        (bool(getattr(g, "no_repeat_ngram_size", 0)), "no_repeat_ngram_size"),
        (bool(getattr(g, "min_length", 0)), "min_length (min_new_tokens is done)"),
        (bool(getattr(g, "stop_strings", None)), "stop strings"),
        (bool(getattr(g, "bad_words_ids", None)), "bad_words_ids"),
        (getattr(g, "prompt_lookup_num_tokens", None) is not None, "prompt lookup decoding"),
        (getattr(g, "max_new_tokens", None) is None, "no max_new_tokens"),
    ]
    for failed, what in checks:
        if failed:
            return f"the static decode loop does not do {what}: use generate()"
    return None


def check_supported(generation_config) -> None:
    reason = unsupported_reason(generation_config)
    if reason is not None:
        raise UnsupportedGeneration(reason)


def eos_ids(generation_config) -> list[int]:
    eos = generation_config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def pad_id(generation_config) -> int:
    """What rows emit once they have finished: the pad token, else the first EOS, else 0."""
    g = generation_config
    return g.pad_token_id if g.pad_token_id is not None else (eos_ids(g) or [0])[0]


def process_for_sampling(logits: torch.Tensor, generation_config) -> torch.Tensor:
    """Temperature, then top-k, then top-p, as generate() orders its warpers; returns probabilities."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    g = generation_config
    scores = logits.float()
    if g.temperature is not None and g.temperature != 1.0:
        scores = TemperatureLogitsWarper(g.temperature)(None, scores)
    if g.top_k is not None and g.top_k != 0:
        scores = TopKLogitsWarper(top_k=g.top_k, min_tokens_to_keep=1)(None, scores)
    if g.top_p is not None and g.top_p < 1.0:
        scores = TopPLogitsWarper(top_p=g.top_p, min_tokens_to_keep=1)(None, scores)
    return torch.softmax(scores, dim=-1)


# Steps between two waits of the host for the device. Between them the host queues the next steps while the
# device runs, so the per-step Python work is hidden behind the device's; at each wait the chunk's tokens go
# to the streamer and the loop stops if every row has finished (steps run past the last EOS are cut off, so
# the output is generate()'s). 1 waits after every step, as generate() does.
SYNC_EVERY = 8
# torch.compile modes that capture CUDA graphs (each replay overwrites the previous replay's outputs)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class StaticDecodeLoop:
    """`generate(input_ids, attention_mask, generation_config=..., streamer=...)` through a StaticCache of
    `max_cache_len` tokens and a decode step compiled with `compile_mode` (None: eager) and `fullgraph`.
    One cache per batch size is kept and reset between calls."""

    def __init__(self, model, max_cache_len: int | None = None, compile_mode: str | None = "reduce-overhead",
                 fullgraph: bool = True, offloading: bool = False, sync_every: int = SYNC_EVERY):
        if sync_every < 1:
            raise ValueError(f"sync_every must be at least 1, got {sync_every}")
        self.model = model
        self.sync_every = sync_every
        self.max_cache_len = max_cache_len  # None: sized by the first call, grown (in steps of 256) when needed
        self.offloading = offloading
        self.compile_mode = compile_mode
        self.caches: dict[int, object] = {}
        self.fixed_length = max_cache_len is not None
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

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache) -> tuple[torch.Tensor, torch.Tensor]:
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
        total = prompt_len + g.max_new_tokens
        self.fit(total)
        device = input_ids.device
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        cache = self.cache_for(batch)
        mask = torch.zeros(batch, self.max_cache_len, dtype=attention_mask.dtype, device=device)
        mask[:, :prompt_len] = attention_mask
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
                stop = _first_true(torch.stack(all_done)) if all_done else None
                if stop is not None:  # every row finished `stop` steps into this chunk: drop what ran past
                    del generated[streamed + stop + 1:]
                if streamer is not None:
                    chunk = generated[streamed:]
                    streamer.put(chunk[0].cpu() if len(chunk) == 1 else torch.stack(chunk, dim=1).cpu())
                streamed, all_done = len(generated), []
                if stop is not None or last:
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


# Steps the graph loop runs uncaptured before capturing: the compile (and Inductor's tuning) happens in them.
WARMUP_STEPS = 2
# The graph loop captures its own CUDA graphs, so its step is compiled without torch.compile's.
NO_CUDA_GRAPHS = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}


@dataclass
class GraphState:
    """Everything a captured chunk of decode steps reads and writes, at fixed addresses: one per batch size.
    Per-call values (the prompt's mask, EOS, pad, min_new_tokens) are copied in before the first replay."""

    cache: object
    mask: torch.Tensor  # batch x max_cache_len: attention mask of the cache
    token: torch.Tensor  # batch: the last token, the next step's input
    position: torch.Tensor  # batch x 1: its position (real tokens only)
    cache_position: torch.Tensor  # 1: its slot in the cache
    produced: torch.Tensor  # (): tokens produced so far
    finished: torch.Tensor  # batch: rows that emitted EOS
    is_eos: torch.Tensor  # vocab: EOS token ids
    min_new: torch.Tensor  # (): min_new_tokens
    pad: torch.Tensor  # (): what finished rows emit
    out_tokens: torch.Tensor  # batch x steps: the chunk's tokens
    out_done: torch.Tensor  # steps: has every row finished after each step of the chunk
    graphs: dict = field(default_factory=dict)  # chunk length -> torch.cuda.CUDAGraph

    @classmethod
    def allocate(cls, cache, batch: int, max_cache_len: int, vocab: int, steps: int, device) -> "GraphState":
        def zeros(*shape, dtype=torch.long):
            return torch.zeros(*shape, dtype=dtype, device=device)

        return cls(cache=cache, mask=zeros(batch, max_cache_len), token=zeros(batch), position=zeros(batch, 1),
                   cache_position=zeros(1), produced=zeros(()), finished=zeros(batch, dtype=torch.bool),
                   is_eos=zeros(vocab, dtype=torch.bool), min_new=zeros(()), pad=zeros(()),
                   out_tokens=zeros(batch, steps), out_done=zeros(steps, dtype=torch.bool))


class GraphDecodeLoop(StaticDecodeLoop):
    """The static loop with its decode steps captured as CUDA graphs, `steps` steps per graph: one replay
    runs them all, with no Python between the steps (the issue-7 profile on the H200 put the host's share of
    a compiled step at 0.45 of 2.56 ms). Every input of a step lives in a `GraphState` and is advanced inside
    the graph: the token, its position and cache slot, the attention mask, EOS and min_new_tokens. After each
    chunk the host looks at the finished rows (one chunk late, so the device never waits for it) and hands
    the chunk to the streamer.

    The first call per batch size runs `WARMUP_STEPS` steps uncaptured (they compile the step) and then
    captures a chunk of `steps` and one of a single step (for the rest), in one memory pool. The step is
    compiled without torch.compile's own CUDA graphs (reduce-overhead: Inductor's default; max-autotune:
    max-autotune-no-cudagraphs). Greedy only: sampling runs the static loop's per-step path.
    `capture=False` (the default off CUDA) runs the same chunks uncaptured, for checks on a CPU."""

    def __init__(self, model, max_cache_len: int | None = None, compile_mode: str | None = "default",
                 fullgraph: bool = True, steps: int = GRAPH_STEPS, capture: bool | None = None):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(model, max_cache_len, compile_mode=NO_CUDA_GRAPHS.get(compile_mode, compile_mode),
                         fullgraph=fullgraph, sync_every=steps)
        self.steps = steps
        self.capture = capture
        self.states: dict[int, GraphState] = {}

    def forget(self) -> None:
        super().forget()
        self.states.clear()

    def advance(self, s: GraphState, steps: int) -> None:
        """`steps` decode steps on the state's buffers, in place (what a graph captures)."""
        for i in range(steps):
            s.mask.index_fill_(1, s.cache_position, 1)
            suppress = torch.where(s.is_eos & (s.produced < s.min_new), float("-inf"), 0.0)
            _, greedy = self.step(s.token[:, None], s.position, s.cache_position, s.mask, s.cache, suppress)
            token = torch.where(s.finished, s.pad, greedy)
            s.finished |= s.is_eos[token]
            s.out_tokens[:, i] = token
            s.out_done[i] = s.finished.all()
            s.token.copy_(token)
            s.position += 1
            s.cache_position += 1
            s.produced += 1

    def capture_graphs(self, s: GraphState) -> None:
        pool = torch.cuda.graph_pool_handle()
        for steps in sorted({self.steps, 1}, reverse=True):
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls of other threads (the worker's contention watch) do not break the capture
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                self.advance(s, steps)
            s.graphs[steps] = graph

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 generation_config=None, streamer=None, **kwargs) -> torch.Tensor:
        g = self.config_for(generation_config, kwargs)
        if g.do_sample:
            return super().generate(input_ids, attention_mask, generation_config=g, streamer=streamer)
        batch, prompt_len = input_ids.shape
        self.fit(prompt_len + g.max_new_tokens)
        device = input_ids.device
        capture = device.type == "cuda" if self.capture is None else self.capture
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        cache = self.cache_for(batch)
        if streamer is not None:
            streamer.put(input_ids.cpu())

        # the prefill and the first token
        last_logits, positions = self.prefill(input_ids, attention_mask, cache)
        s = self.states.get(batch)
        if s is None:
            s = self.states[batch] = GraphState.allocate(cache, batch, self.max_cache_len, last_logits.shape[-1],
                                                         self.steps, device)
        eos = eos_ids(g)
        s.mask.zero_()
        s.mask[:, :prompt_len] = attention_mask
        s.is_eos.zero_()
        if eos:
            s.is_eos[torch.tensor(eos, device=device)] = True
        s.min_new.fill_(g.min_new_tokens or 0)
        s.pad.fill_(pad_id(g))
        suppress = torch.where(s.is_eos & (s.min_new > 0), float("-inf"), 0.0)
        first = (last_logits + suppress).argmax(-1)
        s.finished.copy_(s.is_eos[first])
        s.token.copy_(first)
        s.position.copy_(positions[:, -1:] + 1)
        s.cache_position.fill_(prompt_len)
        s.produced.fill_(1)
        generated = [first[:, None]]
        if streamer is not None:
            streamer.put(first.cpu())
        if g.max_new_tokens == 1 or bool(s.finished.all()):
            return self.finish(input_ids, generated, streamer)

        left = g.max_new_tokens - 1
        plan: list[int] = []
        if capture and not s.graphs:  # the first call: uncaptured steps compile the step, then capture
            warm = min(left, WARMUP_STEPS)
            plan, left = [0] * warm, left - warm
        plan += [self.steps] * (left // self.steps) + [1] * (left % self.steps)
        pending = None
        for steps in plan:
            if steps == 0:
                self.advance_on_side_stream(s) if capture else self.advance(s, 1)
                steps = 1
            elif capture:
                if not s.graphs:
                    self.capture_graphs(s)
                s.graphs[steps].replay()
            else:
                self.advance(s, steps)
            chunk = (s.out_tokens[:, :steps].clone(), s.out_done[:steps].clone())
            if pending is not None and self.hand_over(pending, generated, streamer):
                return self.finish(input_ids, generated, streamer)
            pending = chunk
        self.hand_over(pending, generated, streamer)
        return self.finish(input_ids, generated, streamer)

    def advance_on_side_stream(self, s: GraphState) -> None:
        """One uncaptured step on a side stream (as torch.cuda.graphs asks of warm-up before a capture)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.advance(s, 1)
        torch.cuda.current_stream().wait_stream(side)

    @staticmethod
    def hand_over(chunk, generated: list, streamer) -> bool:
        """Keep a chunk's tokens up to the step where every row had finished; True if that happened."""
        tokens, done = chunk
        stop = _first_true(done)  # the host waits for the chunk here
        if stop is not None:
            tokens = tokens[:, :stop + 1]
        generated.append(tokens)
        if streamer is not None:
            streamer.put(tokens[:, 0].cpu() if tokens.shape[1] == 1 else tokens.cpu())
        return stop is not None

    @staticmethod
    def finish(input_ids, generated: list, streamer) -> torch.Tensor:
        if streamer is not None:
            streamer.end()
        return torch.cat([input_ids, *generated], dim=1)


def _first_true(flags: torch.Tensor) -> int | None:
    """Index of the first true flag (one wait for the device), or None."""
    hits = flags.nonzero()
    return int(hits[0, 0]) if hits.numel() else None


def sample(logits: torch.Tensor, generation_config) -> torch.Tensor:
    """One token per row, drawn as generate() draws it."""
    return torch.multinomial(process_for_sampling(logits, generation_config), num_samples=1).squeeze(1)
