"""The graph loop: the static loop with GRAPH_STEPS decode steps captured as one CUDA graph (the `graph_loop`
value of the decode_loop knob): no Python between the steps of a chunk."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from autotune.runtime.hints import GRAPH_STEPS
from autotune.runtime.decode.generation import eos_ids, first_true, pad_id
from autotune.runtime.decode.static import StaticDecodeLoop

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

    def start(self, g, attention_mask: torch.Tensor, last_logits: torch.Tensor,
              positions: torch.Tensor) -> torch.Tensor:
        """Copy a call's values in (its prompt's mask, EOS, pad, min_new_tokens) and choose the first token
        from the prefill's logits; the state then holds it as the next step's input. Returns the token."""
        prompt_len = attention_mask.shape[1]
        self.mask.zero_()
        self.mask[:, :prompt_len] = attention_mask
        self.is_eos.zero_()
        eos = eos_ids(g)
        if eos:
            self.is_eos[torch.tensor(eos, device=self.mask.device)] = True
        self.min_new.fill_(g.min_new_tokens or 0)
        self.pad.fill_(pad_id(g))
        suppress = torch.where(self.is_eos & (self.min_new > 0), float("-inf"), 0.0)
        first = (last_logits + suppress).argmax(-1)
        self.finished.copy_(self.is_eos[first])
        self.token.copy_(first)
        self.position.copy_(positions[:, -1:] + 1)
        self.cache_position.fill_(prompt_len)
        self.produced.fill_(1)
        return first

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
    runs them all, with no Python between the steps (a step replayed alone leaves the device idle while the
    host prepares the next one). Every input of a step lives in a `GraphState` and is advanced inside
    the graph: the token, its position and cache slot, the attention mask, EOS and min_new_tokens. After each
    chunk the host looks at the finished rows (one chunk late, so the device never waits for it) and hands
    the chunk to the streamer.

    The first call per batch size runs `WARMUP_STEPS` steps uncaptured (they compile the step) and then
    captures a chunk of `steps` and one of a single step (for the rest), in one memory pool. The step is
    compiled without torch.compile's own CUDA graphs (reduce-overhead: Inductor's default; max-autotune:
    max-autotune-no-cudagraphs). Greedy only: sampling runs the static loop's per-step path.
    `capture=False` (the default off CUDA) runs the same chunks uncaptured, for checks on a CPU."""

    def __init__(self, model, max_cache_len: int | None = None, compile_mode: str | None = "default",
                 fullgraph: bool = True, steps: int = GRAPH_STEPS, capture: bool | None = None, grow: bool = False):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(model, max_cache_len, compile_mode=NO_CUDA_GRAPHS.get(compile_mode, compile_mode),
                         fullgraph=fullgraph, sync_every=steps, grow=grow)
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
        first = s.start(g, attention_mask, last_logits, positions)
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
        stop = first_true(done)  # the host waits for the chunk here
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
