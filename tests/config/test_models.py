"""Model ids: random-weight models of real architectures (their configs), folders, and study names."""

from __future__ import annotations

import pytest
import torch

from autotune.config import models
from autotune.config.models import default_study_name, resolve_model
from autotune.errors import InputError
from autotune.runtime.random_weights import model_class

# name -> (parameters in billions, hidden, layers, heads, kv heads, vocab)
SHAPES = {"gemma-2b": (2.506, 2048, 18, 8, 1, 256000), "llama-3-8b": (8.030, 4096, 32, 32, 8, 128256),
          "mistral-7b": (7.242, 4096, 32, 32, 8, 32000), "qwen2.5-0.5b": (0.494, 896, 24, 14, 2, 151936)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_config_for_gives_the_real_architecture(name):
    config = models.config_for(f"random:{name}")
    billions, hidden, layers, heads, kv_heads, vocab = SHAPES[name]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.vocab_size) == (hidden, layers, heads, kv_heads, vocab)
    with torch.device("meta"):
        skeleton = model_class(config)(config)
    assert sum(p.numel() for p in skeleton.parameters()) / 1e9 == pytest.approx(billions, abs=0.001)
    assert config.dtype == torch.bfloat16


def test_gemma_2b_is_the_shape_the_gpu_numbers_were_measured_on():
    config = models.config_for("random:gemma-2b")
    assert (config.head_dim, config.intermediate_size, config.tie_word_embeddings) == (256, 16384, True)


def test_config_for_a_folder_reads_its_config(bundled_model):
    assert models.config_for(str(bundled_model)).hidden_size == 256


def test_unknown_random_model_is_an_input_error_naming_the_known_ones():
    with pytest.raises(InputError, match="random:gemma-2b"):
        resolve_model("random:gpt-5")
    assert resolve_model("random:gemma-2b") == "random:gemma-2b"
    assert default_study_name("random:gemma-2b") == "random-gemma-2b"
