"""MemoryModel: an estimate of a trial's peak memory, in pure Python, before any process starts.

    estimate = weights + kv_cache + assistant + activations
             + cuda_context (CUDA) or process_baseline (CPU) + kernel_cache + allocator_overhead
             + compile_workspace

(kernel_cache: on CPU, oneDNN's low-precision kernels; on CUDA, memory outside the allocator beyond the
context: bnb 8-bit's libraries and float32 flex_attention's kernels.)

Every term is reported on its own (`MemoryEstimate`), so that measurements can calibrate each one.
No weights are loaded: parameter counts come from the model built on the meta device
(`accelerate.init_empty_weights()` + `AutoModelForCausalLM.from_config`), sizes from the transformers
config, prompt lengths from the tokenizer (or an upper bound without one).

What the budget bounds:

- on CUDA, the device memory of one worker process: its CUDA context plus everything the caching
  allocator holds, plus the kernels outside it. The worker caps its allocator with
  `torch.cuda.set_per_process_memory_fraction` at (budget - CUDA context) / card total, so a 24 GB study on
  a larger card finds what a 24 GB card would; what lies outside the allocator is not capped, so the
  estimate's kernel_cache term keeps a candidate that needs it out before launch;
- on CPU, the worker's peak resident memory (RSS), which includes python, torch and transformers
  themselves (`process_baseline`). It is checked after the trial, not enforced (see the worker).

The constants, each with where it came from, are in `autotune.memory.calibration`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from autotune.config.candidate import INT8_PREFILL_CHUNK_ELEMENTS
from autotune.errors import InputError
from autotune.memory.calibration import Calibration
from autotune.memory.inventory import (DTYPE_BYTES, Shapes, config_dtype, kv_cache_bytes, load_config,
                                       padded_batch_lengths, parameter_inventory, prompt_token_lengths)
from autotune.memory.quantized import Quantization, quantization_of, weight_bytes
from autotune.memory.units import format_bytes

TERMS = ("weights", "kv_cache", "assistant", "activations", "cuda_context", "process_baseline",
         "kernel_cache", "allocator_overhead", "compile_workspace")


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one trial, in bytes, term by term. `total` is their sum."""

    weights: int
    kv_cache: int
    assistant: int
    activations: int
    cuda_context: int
    process_baseline: int
    kernel_cache: int
    allocator_overhead: int
    compile_workspace: int
    # What the terms were computed for (for reading and calibration; not summed).
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1
    max_cache_len: int = 0
    quantization: str | None = None

    @property
    def total(self) -> int:
        return sum(getattr(self, term) for term in TERMS)

    def terms(self) -> dict[str, int]:
        return {term: getattr(self, term) for term in TERMS}

    def fits(self, budget_bytes: int | None) -> bool | None:
        return None if budget_bytes is None else self.total <= budget_bytes

    def describe(self) -> str:
        parts = [f"{term.replace('_', ' ')} {format_bytes(value)}" for term, value in self.terms().items() if value]
        return f"{format_bytes(self.total)} = " + " + ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryEstimate":
        data = dict(data)
        total = data.pop("total", None)
        estimate = cls(**data)
        if total is not None and total != estimate.total:
            raise ValueError(f"memory estimate total {total} is not the sum of its terms ({estimate.total})")
        return estimate

    @classmethod
    def from_json(cls, text: str) -> "MemoryEstimate":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class TrialShape:
    """The sizes one trial works with: dtype, model shapes, batch, the padded prompt lengths, the cache
    length, the scoring lengths, and the draft length of speculative decoding."""

    dtype: str
    size: int
    shapes: Shapes
    batch: int
    new: int
    batch_lengths: list[int]
    prompt_len: int
    max_cache_len: int
    scoring_lengths: list[int]
    static: bool
    draft: int
    attention: str

    @classmethod
    def of(cls, model_config, candidate, workload, prompt_lengths: tuple[int, ...]) -> "TrialShape":
        dtype = config_dtype(model_config) if candidate.dtype == "auto" else candidate.dtype
        batch_lengths = padded_batch_lengths(prompt_lengths, workload.batch_size, candidate.pad_to_multiple_of)
        new = workload.max_new_tokens
        # tokens checked per verification step: speculative decoding verifies its draft in one forward of
        # (draft + 1) positions, with logits for each
        draft = {"prompt_lookup": candidate.prompt_lookup_num_tokens or 10,
                 "assisted": candidate.num_assistant_tokens or 20}.get(candidate.decoding, 0)
        return cls(dtype=dtype, size=DTYPE_BYTES[dtype], shapes=Shapes.of(model_config), batch=workload.batch_size,
                   new=new, batch_lengths=batch_lengths, prompt_len=max(batch_lengths),
                   max_cache_len=max(batch_lengths) + new,
                   # teacher-forced scoring runs each prompt alone, unpadded, with its continuation but the last
                   scoring_lengths=[n + new - 1 for n in prompt_lengths],
                   static=candidate.cache_implementation == "static", draft=draft,
                   attention=candidate.attn_implementation)


class MemoryModel:
    """Estimates the peak memory of a trial from the model's config, the candidate and the workload."""

    def __init__(self, calibration: Calibration | None = None):
        self.calibration = calibration or Calibration()

    def estimate(self, model_config, candidate, workload, device: str, *,
                 prompt_lengths: tuple[int, ...] | None = None, assistant_config=None,
                 quantization: Quantization | None | str = "from-candidate") -> MemoryEstimate:
        """Estimate one trial.

        Args:
            model_config: the model's transformers config (no weights are loaded).
            candidate: the Candidate (its dtype, attention, quantization, cache, compile and decoding).
            workload: the Workload (prompts, batch size, new tokens).
            device: "cpu" or "cuda".
            prompt_lengths: the workload's prompts in tokens (default: the byte upper bound).
            assistant_config: the assistant model's config, for assisted decoding.
            quantization: the bitsandbytes quantization (default: the candidate's).

        Returns:
            The MemoryEstimate, term by term.
        """
        if device not in ("cpu", "cuda"):
            raise InputError(f"memory estimates are for device cpu or cuda, not {device!r}")
        if quantization == "from-candidate":
            quantization = quantization_of(candidate)
        if prompt_lengths is None:
            prompt_lengths = prompt_token_lengths(None, workload.prompts)[0]
        if len(prompt_lengths) != len(workload.prompts):
            raise ValueError("prompt_lengths must give one length per prompt of the workload")
        t = TrialShape.of(model_config, candidate, workload, tuple(prompt_lengths))
        weights = weight_bytes(parameter_inventory(model_config), t.dtype, quantization)
        kv = kv_cache_bytes(t.shapes, t.batch, t.max_cache_len, t.size)
        assistant, activations = 0, self.activation_bytes(t)
        if candidate.decoding == "assisted" and assistant_config is not None:
            # the worker loads the assistant in the target's dtype; it decodes with a dynamic cache
            a_shapes = Shapes.of(assistant_config)
            assistant = (weight_bytes(parameter_inventory(assistant_config), t.dtype)
                         + kv_cache_bytes(a_shapes, t.batch, t.max_cache_len, t.size))
            activations = max(activations, self.forward_bytes(a_shapes, t.batch, t.prompt_len, t.prompt_len, 1,
                                                              t.size, t.attention))
        if candidate.quantization == "int8_weight_only":
            # the float weights load first (counted above) and are converted one by one, the int8 copies taking
            # the blocks the float ones leave; a prefill dequantizes a few thousand rows at a time (float32,
            # then the dtype)
            activations += min(INT8_PREFILL_CHUNK_ELEMENTS, t.shapes.vocab * t.shapes.hidden) * (4 + t.size)
        compile_workspace = self.compile_bytes(t, candidate, device, model_config)
        terms = self.process_terms(device, t, quantization, resident=weights + kv + assistant,
                                   transient=activations, compile_workspace=compile_workspace)
        return MemoryEstimate(
            weights=weights, kv_cache=kv, assistant=assistant, activations=activations,
            compile_workspace=compile_workspace, **terms, device=device, dtype=t.dtype, batch_size=t.batch,
            max_cache_len=t.max_cache_len, quantization=quantization.describe() if quantization else None)

    def activation_bytes(self, t: "TrialShape") -> int:
        """The largest transient of the trial's forwards: the prefill (a static cache attends over its full
        length), a draft verification (or one decode step), and the equivalence scoring pass (one prompt and
        its continuation, no cache, logits of every position)."""
        keys = t.max_cache_len if t.static else t.prompt_len
        return max(self.forward_bytes(t.shapes, t.batch, t.prompt_len, keys, 1, t.size, t.attention),
                   self.forward_bytes(t.shapes, t.batch, t.draft + 1, t.max_cache_len, t.draft + 1, t.size,
                                      t.attention),
                   self.equivalence_bytes(t.shapes, max(t.scoring_lengths), t.new, t.size, t.attention))

    def compile_bytes(self, t: "TrialShape", candidate, device: str, model_config) -> int:
        """torch.compile's workspace: on CPU a fixed part and one per layer; on CUDA a fixed part and the
        CUDA-graph pool of one decode step's activations (torch.compile's graphs, or the graph loop's own);
        with Inductor's freezing, copies of the linear weights."""
        if candidate.compile == "off":
            return 0
        cal = self.calibration
        if device == "cpu":
            workspace = cal.cpu_compile_workspace_bytes + cal.cpu_compile_bytes_per_layer * t.shapes.layers
        else:
            workspace = cal.cuda_compile_fixed_bytes
            graphs = candidate.compile in ("reduce-overhead", "max-autotune") or (
                candidate.decode_loop == "graph_loop" and candidate.uses_static_loop())
            if graphs:
                decode_step = self.forward_bytes(t.shapes, t.batch, 1, t.max_cache_len, 1, t.size, t.attention)
                workspace += int(cal.cuda_graph_pool_activation_copies * decode_step)
            if candidate.compile == "max-autotune":
                workspace += cal.cuda_max_autotune_extra_bytes
        if candidate.compile_freezing and candidate.quantization == "none":
            # freezing fuses products that share an input (q/k/v, gate/up) into one over concatenated weights,
            # copies beside the model's own (on CPU it repacks every linear weight): at most the linear weights
            # once more (int8 weights are left unfolded)
            workspace += sum(n for n, _ in parameter_inventory(model_config).linears) * t.size
        return workspace

    def process_terms(self, device: str, t: "TrialShape", quantization: Quantization | None, *, resident: int,
                      transient: int, compile_workspace: int) -> dict:
        """The terms of the process around the model: CUDA context or the CPU process's own memory, kernels
        outside the allocator, and the allocator's overhead on what is resident and what churns."""
        cal = self.calibration
        if device == "cuda":
            overhead = (cal.cuda_library_workspace_bytes + cal.cuda_allocator_resident_fraction * resident
                        + cal.cuda_allocator_transient_fraction * (transient + compile_workspace))
            return dict(cuda_context=cal.cuda_context_bytes, process_baseline=0, allocator_overhead=int(overhead),
                        kernel_cache=self.cuda_kernel_bytes(quantization, t.dtype, t.attention))
        kernel_cache = 0
        if t.size == 2 and quantization is None:
            kernel_cache = self.cpu_kernel_cache_bytes(t.batch_lengths, t.scoring_lengths, t.new, t.static,
                                                       t.attention, t.draft)
        return dict(cuda_context=0, process_baseline=cal.cpu_process_baseline_bytes, kernel_cache=kernel_cache,
                    allocator_overhead=int(cal.cpu_allocator_fraction * (resident + transient)))

    def cuda_kernel_bytes(self, quantization: Quantization | None, dtype: str, attention: str) -> int:
        """Device memory outside the allocator and the context (see CUDA_FLEX_FLOAT32_KERNEL_BYTES)."""
        cal = self.calibration
        extra = cal.cuda_bnb_8bit_kernel_bytes if quantization is not None and quantization.scheme == "int8" else 0
        if attention == "flex_attention" and dtype == "float32":
            extra += cal.cuda_flex_float32_kernel_bytes
        return extra

    def cpu_kernel_cache_bytes(self, batch_lengths: list[int], scoring_lengths: list[int], new: int,
                               static: bool, attention: str, draft: int = 0) -> int:
        """oneDNN's per-shape kernels of a low-precision trial on CPU (see CPU_LOWP_KERNEL_INIT_BYTES):
        one set per distinct number of positions in a forward (prefills, scoring passes, and the 2 to
        draft + 1 positions of a draft verification), and with eager attention one per score shape."""
        cal = self.calibration
        prefill_shapes = set(batch_lengths) | set(scoring_lengths) | set(range(2, draft + 2))
        total = cal.cpu_lowp_kernel_init_bytes + cal.cpu_lowp_bytes_per_prefill_shape * len(prefill_shapes)
        if attention == "eager":
            shapes: set[tuple[int, int]] = {(n, n) for n in scoring_lengths}
            cache_len = 0
            for n in batch_lengths:
                if static:  # transformers keeps the largest static cache length seen so far
                    cache_len = max(cache_len, n + new)
                    shapes |= {(n, cache_len), (1, cache_len)}
                else:  # the keys grow by one each decoding step
                    shapes |= {(n, n)} | {(1, k) for k in range(n + 1, n + new)}
            verification = draft * len(batch_lengths)  # draft checks of several positions, see the constants
            total += cal.cpu_lowp_eager_bytes_per_attention_shape * (len(shapes) + verification)
        return int(total)

    def forward_bytes(self, s: Shapes, batch: int, tokens: int, keys: int, logit_rows: int, size: int,
                      attention: str = "auto") -> int:
        """Transient memory of one forward of `tokens` positions per sequence attending over `keys`
        positions, with logits for `logit_rows` positions: the largest decoder layer's buffers, or the
        final hidden states and logits, whichever is larger (layers run one after another)."""
        cal = self.calibration
        hidden = batch * tokens * s.hidden * size
        projections = batch * tokens * (2 * s.heads + 2 * s.kv_heads) * s.head_dim * size
        fused = attention in ("flash_attention_2", "flex_attention")
        # Attention: eager materializes the scores in the dtype, adds the mask (a second buffer) and runs
        # softmax in float32; SDPA (auto = sdpa for the models autotune runs) may fall back to its math
        # kernel, counted as one score buffer; flash / flex keep none. eager and SDPA repeat the key/value
        # heads to the query heads (GQA through transformers' repeat_kv).
        score_bytes = 0 if fused else (2 * size + 4) if attention == "eager" else size
        scores = batch * s.heads * tokens * keys * score_bytes
        repeated_kv = 2 * batch * s.heads * keys * s.head_dim * size if s.kv_heads < s.heads and not fused else 0
        attention_bytes = projections + repeated_kv + scores
        mlp = batch * tokens * s.intermediate * size * cal.mlp_buffers
        layer = cal.hidden_state_copies * hidden + max(attention_bytes, mlp)
        logits = batch * logit_rows * s.vocab * (size + 4 * cal.logits_float32_copies)
        return int(max(layer, 2 * hidden + logits))

    def equivalence_bytes(self, s: Shapes, tokens: int, scored: int, size: int, attention: str = "auto") -> int:
        """The teacher-forced forward of equivalence scoring: batch 1, no cache, logits of all `tokens`
        positions in the dtype, then float32 copies of the `scored` continuation rows."""
        cal = self.calibration
        forward = self.forward_bytes(s, 1, tokens, tokens, 0, size, attention)
        logits = tokens * s.vocab * size + scored * s.vocab * 4 * cal.equivalence_float32_copies
        return int(max(forward, 2 * tokens * s.hidden * size + logits))


# The Candidate fields `MemoryModel.estimate` reads: candidates equal in these have one estimate
# (tests/memory/test_estimate.py varies every other knob to keep this list whole).
MEMORY_FIELDS = ("dtype", "attn_implementation", "quantization", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                 "cache_implementation", "compile", "compile_freezing", "decode_loop", "decoding",
                 "prompt_lookup_num_tokens", "num_assistant_tokens", "pad_to_multiple_of", "assistant")


def memory_key(candidate) -> tuple:
    """What of `candidate` its memory estimate depends on."""
    return tuple(getattr(candidate, name) for name in MEMORY_FIELDS)


@dataclass
class Estimator:
    """A MemoryModel bound to one study's model, assistant and workload: `estimator(candidate, device)`.
    Candidates that differ only in what the estimate does not read share one estimate."""

    model_id: str
    config: Any
    workload: Any
    prompt_lengths: tuple[int, ...]
    lengths_from: str  # "tokenizer" or "bytes"
    assistant_config: Any = None
    memory_model: MemoryModel = field(default_factory=MemoryModel)

    @classmethod
    def for_model(cls, model_id: str, workload, assistant: str | None = None,
                  memory_model: MemoryModel | None = None) -> "Estimator":
        config = load_config(model_id)
        lengths, source = prompt_token_lengths(model_id, workload.prompts)
        assistant_config = load_config(assistant) if assistant else None
        return cls(model_id, config, workload, lengths, source, assistant_config, memory_model or MemoryModel())

    known: dict = field(default_factory=dict, repr=False)

    def __call__(self, candidate, device: str) -> MemoryEstimate:
        key = (device, memory_key(candidate))
        if key not in self.known:
            self.known[key] = self.memory_model.estimate(
                self.config, candidate, self.workload, device, prompt_lengths=self.prompt_lengths,
                assistant_config=self.assistant_config)
        return self.known[key]


def over_budget_message(estimate: MemoryEstimate, budget_bytes: int) -> str:
    where = "device memory" if estimate.device == "cuda" else "resident memory"
    return (f"estimated peak {where} {format_bytes(estimate.total)} is over the --vram budget "
            f"{format_bytes(budget_bytes)}: {estimate.describe()}")
