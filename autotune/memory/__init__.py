"""The memory model: a trial's peak memory estimated in pure Python before any process starts
(`estimate`), its constants (`calibration`), model sizes without weights (`inventory`), bitsandbytes sizes
(`quantized`), and the units a budget is written in (`units`)."""

from autotune.memory.calibration import CUDA_CONTEXT_BYTES, Calibration
from autotune.memory.estimate import TERMS, Estimator, MemoryEstimate, MemoryModel, over_budget_message
from autotune.memory.inventory import load_config, parameter_inventory
from autotune.memory.quantized import Quantization, quantization_of
from autotune.memory.units import GiB, KiB, MiB, format_bytes, is_fraction, parse_budget

__all__ = ["CUDA_CONTEXT_BYTES", "Calibration", "Estimator", "GiB", "KiB", "MemoryEstimate", "MemoryModel", "MiB",
           "Quantization", "TERMS", "format_bytes", "is_fraction", "load_config", "over_budget_message",
           "parameter_inventory", "parse_budget", "quantization_of"]
