"""torchao's formats on a model built without a checkpoint (`random:` architectures): `quantize_` with the
config transformers reads from the same `quantization_config` dict, on the linears `from_pretrained` would
quantize. A checkpoint needs none of this: `from_pretrained(path, quantization_config=dict)` quantizes as it
loads."""

from __future__ import annotations


def is_torchao(quantization_config) -> bool:
    """Whether a `quantization_config` (a dict, as load kwargs hold it) is torchao's."""
    return isinstance(quantization_config, dict) and quantization_config.get("quant_method") == "torchao"


def quantize_as_loaded(model, quantization_config: dict) -> int:
    """Quantize `model`'s linears as `from_pretrained` does with `quantization_config`: the torchao config of
    `TorchAoConfig.from_dict`, on every nn.Linear outside the modules transformers' torchao quantizer leaves
    alone (the output embeddings, the model's float32 modules, `modules_to_not_convert`).

    Args:
        model: a transformers model, unquantized, on its device.
        quantization_config: `TorchAoConfig.to_dict()`'s shape (`Candidate.load_kwargs()["quantization_config"]`).

    Returns:
        The number of linears quantized.
    """
    from torch import nn
    from torchao.quantization import quantize_
    from transformers import TorchAoConfig
    from transformers.quantizers.auto import AutoHfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    config = TorchAoConfig.from_dict(quantization_config)
    if config.include_input_output_embeddings:
        raise ValueError("a random-weight model quantizes its linears only: include_input_output_embeddings is "
                         "not supported there")
    quantizer = AutoHfQuantizer.from_config(config)
    skipped = quantizer.get_modules_to_not_convert(model, config.modules_to_not_convert,
                                                   getattr(model, "_keep_in_fp32_modules", None))
    names = {name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and should_convert_module(f"{name}.weight", skipped)}
    quantize_(model, config.get_apply_tensor_subclass(), filter_fn=lambda module, fqn: fqn in names)
    return len(names)
