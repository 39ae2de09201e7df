"""The memory model's constants, each with where it came from, and `Calibration`, which holds them all so that
a measured set can be passed to `MemoryModel(calibration)` without editing this file. Constants marked
PENDING are assumptions not yet measured on a GPU (docs/memory.md says how to calibrate them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from autotune.errors import InputError
from autotune.memory.units import MiB

# CUDA: the context of one process (driver state, loaded kernel modules of torch's CUDA libraries), outside
# the caching allocator and so outside torch.cuda.max_memory_allocated. Calibrated on the H200 (torch 2.11,
# CUDA 13, benchmarks/memory_calibration.py on random:gemma-2b, 2026-11-28): device memory in use minus
# torch.cuda.memory_reserved() was 689-709 MiB in every trial, bf16 and fp32 alike.
CUDA_CONTEXT_BYTES = 700 * MiB

# CUDA: cuBLAS / cuBLASLt workspaces, taken from the caching allocator once per handle and stream
# (PyTorch sizes them at up to 32 MiB on Hopper). PENDING: calibrate with memory_reserved on the H200.
CUDA_LIBRARY_WORKSPACE_BYTES = 64 * MiB

# CUDA: caching-allocator overhead (reserved minus allocated: rounding to 512 B blocks and 2 MiB / 20 MiB
# segments, and fragmentation from freed activations). Weights and static caches are allocated once and
# fragment little; activations churn every step. Both shares are assumptions, PENDING calibration
# (torch.cuda.max_memory_reserved / max_memory_allocated of measured trials).
CUDA_ALLOCATOR_RESIDENT_FRACTION = 0.02   # of weights + KV caches
CUDA_ALLOCATOR_TRANSIENT_FRACTION = 0.25  # of activations + compile workspace

# CUDA: torch.compile. Inductor's generated kernels mostly live in host memory; on the device there are
# its workspace buffers and (modes reduce-overhead / max-autotune) the CUDA-graph memory pool, which keeps
# the intermediate buffers of the captured graphs. Every compiled path autotune builds captures decode
# steps only (generate()'s own compile, the explicit compile through hints.compiled_decode_forward, the
# static decode loop): the prefill runs eager. So the pool is counted from one decode step's activations.
# Calibrated on the H200 (torch 2.11, transformers 5.17; benchmarks/journal/2026-11-29-h200-s3.md): random gemma-2b
# bf16 with a static cache, batch 1, 32 + 256 tokens, peak reserved 4926 MiB with reduce-overhead and 4894
# MiB with max-autotune against 4786 MiB of weights + cache (batch 8: 5044 against 4831); codelm-12m with
# the static loop and max-autotune, 142 MiB reserved for 25 MiB of weights. So compilation costs tens of
# MiB to ~140 MiB on the device, prefill activations included, and max-autotune's benchmark buffers do not
# raise the peak. The constants used before (256 MiB fixed, a pool of twice the largest activations,
# 512 MiB more for max-autotune) put those trials at 1.5-2.1x their measured peak.
CUDA_COMPILE_FIXED_BYTES = 64 * MiB
CUDA_GRAPH_POOL_ACTIVATION_COPIES = 2.0   # pool size as a multiple of one decode step's activations
CUDA_MAX_AUTOTUNE_EXTRA_BYTES = 0          # measured: no higher peak than reduce-overhead

# CUDA: device memory outside the caching allocator beyond the context (the `kernel_cache` term on CUDA),
# which set_per_process_memory_fraction does not cap. Measured on the H200 (2026-11-29-h200-s3.md; device memory
# in use minus peak reserved, tests/data/h200_fixture_peaks.json): 686-702 MiB for eager, SDPA, bf16
# flex_attention and bnb 4-bit trials (the context alone); 752-796 MiB with bnb 8-bit (its int8 matmul
# libraries: +64-108 MiB); 2764-3002 MiB with float32 flex_attention (+2076-2314 MiB; bf16 flex_attention
# adds nothing), with the model 12M parameters: kernels and their state, not model-sized. On gemma-2b the
# float32 flex_attention trials used 2.1-2.4 GB more too, before failing in Inductor.
CUDA_BNB_8BIT_KERNEL_BYTES = 96 * MiB
CUDA_FLEX_FLOAT32_KERNEL_BYTES = 2200 * MiB

# CPU: the resident memory of a worker before any model-sized memory: python, torch, transformers and the
# tokenizers library imported, the tokenizer loaded, the loading machinery touched, a first float32
# forward run. Measured on this 2-core Xeon (torch 2.13 CPU, transformers 5.24): imports 246 MiB,
# + tokenizer 310 MiB, + loading the 7 MB bundled model 354 MiB (the 14 MB float32 load 367 MiB),
# + the first float32 generate 376 MiB. So ~360 MiB before the model's own bytes; whole float32 trials of
# the 4m model peaked at 387-389 MiB with 14 MB of weights. 376 MiB leaves a margin of ~10 MiB there.
CPU_PROCESS_BASELINE_BYTES = 376 * MiB

# CPU, bfloat16/float16 only: oneDNN JIT-compiles a matmul kernel per input shape and keeps it, so the
# resident memory grows with the number of distinct shapes a trial runs (float32 stays flat). Measured on
# this machine (AMX-capable Xeon, torch 2.13): the first low-precision generate adds ~20 MiB; each new
# prompt length (the prefill's linear layers, and the teacher-forced scoring pass) ~2-2.5 MiB; with eager
# attention every new key length adds ~1.2-1.5 MiB for its score matmuls (a dynamic cache makes a new one
# each decoding step: +88 MiB for the first 64-token generate of the 4m model, +121 MiB for the 12m one),
# independent of model size. SDPA and a static cache's fixed key length avoid most of it. Prompt lookup
# with eager attention makes (draft + 1)-position score shapes too: counted as `draft` more per batch, an
# upper bound of what 14 sampled default-space trials of the 4m model needed. The per-shape figures are
# the upper end of the measurements (benchmarks/memory_calibration.py: estimates 3-16 % above the
# measured peaks). Other CPUs (without AMX, other oneDNN versions) may differ: recalibrate there.
CPU_LOWP_KERNEL_INIT_BYTES = 20 * MiB
CPU_LOWP_BYTES_PER_PREFILL_SHAPE = 3 * MiB
CPU_LOWP_EAGER_BYTES_PER_ATTENTION_SHAPE = int(1.5 * MiB)

# CPU: glibc keeps freed memory in its arenas, so RSS carries transient peaks a while; a margin on the
# model-sized terms. Assumption; the bundled and 12m fixture trials are within it.
CPU_ALLOCATOR_FRACTION = 0.10

# CPU: torch.compile (inductor, C++ backend) in the worker process: dynamo/inductor state, the generated
# code (one wrapper per graph, unrolled over the layers) and the loaded kernels. Measured on this machine
# with static cache + compile (default): +142-145 MiB over the same trial without compile for the 2-layer
# 4m model on 3 prompts, and +190-210 MiB for the 6-layer 12m model on the 10 default prompts (more
# prompt lengths, more recompiles). Counted as 128 MiB + 16 MiB per layer.
CPU_COMPILE_WORKSPACE_BYTES = 128 * MiB
CPU_COMPILE_BYTES_PER_LAYER = 16 * MiB

# Activations: how many hidden-state-sized buffers (batch x tokens x hidden) one decoder layer holds at
# once (residual stream, normed input, attention output, MLP output). From reading the Llama/Gemma forward.
HIDDEN_STATE_COPIES = 4
# Buffers of batch x tokens x intermediate in the gated MLP: gate, up, act(gate) * up.
MLP_BUFFERS = 3
# After the forward, generate() copies the last logits to float32 (`logits[:, -1, :].to(float32)`) and the
# logits processors work on copies (min_new_tokens masks a clone): float32 batch x vocab buffers alive
# at once. From transformers' generation/utils.py and logits_process.py.
LOGITS_FLOAT32_COPIES = 3
# Equivalence scoring (autotune.worker.equivalence.teacher_forced_logprobs): the forward returns the
# logits of every position (model dtype), then `.float()` and `log_softmax` of the continuation's rows.
EQUIVALENCE_FLOAT32_COPIES = 2


@dataclass(frozen=True)
class Calibration:
    """Every constant of the model in one place; `MemoryModel(Calibration(...))` overrides any of them."""

    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    cuda_library_workspace_bytes: int = CUDA_LIBRARY_WORKSPACE_BYTES
    cuda_allocator_resident_fraction: float = CUDA_ALLOCATOR_RESIDENT_FRACTION
    cuda_allocator_transient_fraction: float = CUDA_ALLOCATOR_TRANSIENT_FRACTION
    cuda_compile_fixed_bytes: int = CUDA_COMPILE_FIXED_BYTES
    cuda_graph_pool_activation_copies: float = CUDA_GRAPH_POOL_ACTIVATION_COPIES
    cuda_max_autotune_extra_bytes: int = CUDA_MAX_AUTOTUNE_EXTRA_BYTES
    cuda_bnb_8bit_kernel_bytes: int = CUDA_BNB_8BIT_KERNEL_BYTES
    cuda_flex_float32_kernel_bytes: int = CUDA_FLEX_FLOAT32_KERNEL_BYTES
    cpu_process_baseline_bytes: int = CPU_PROCESS_BASELINE_BYTES
    cpu_allocator_fraction: float = CPU_ALLOCATOR_FRACTION
    cpu_compile_workspace_bytes: int = CPU_COMPILE_WORKSPACE_BYTES
    cpu_compile_bytes_per_layer: int = CPU_COMPILE_BYTES_PER_LAYER
    cpu_lowp_kernel_init_bytes: int = CPU_LOWP_KERNEL_INIT_BYTES
    cpu_lowp_bytes_per_prefill_shape: int = CPU_LOWP_BYTES_PER_PREFILL_SHAPE
    cpu_lowp_eager_bytes_per_attention_shape: int = CPU_LOWP_EAGER_BYTES_PER_ATTENTION_SHAPE
    hidden_state_copies: float = HIDDEN_STATE_COPIES
    mlp_buffers: float = MLP_BUFFERS
    logits_float32_copies: float = LOGITS_FLOAT32_COPIES
    equivalence_float32_copies: float = EQUIVALENCE_FLOAT32_COPIES

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown calibration constant(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
