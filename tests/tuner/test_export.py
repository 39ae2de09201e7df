"""Export: a finished trial as a Preset whose two halves plain transformers takes."""

from __future__ import annotations

import optuna

from autotune.config.candidate import Candidate
from autotune.config.preset import Preset
from autotune.config.workload import Workload
from autotune.tuner.export import preset_from_trial


def test_preset_from_a_trial_keeps_the_static_cache_length_and_says_when_weights_are_random():
    from transformers import GenerationConfig

    candidate = Candidate(dtype="bfloat16", cache_implementation="static", compile="reduce-overhead",
                          compile_api="generate", attn_implementation="sdpa", sdpa_backend="cudnn")
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"candidate": candidate.to_json(), "role": "search"}))
    attrs = {"model": "random:gemma-2b", "study_name": "s", "device": "cuda", "min_agreement": 0.99,
             "workload": Workload(prompts=("def f():",), max_new_tokens=128).to_dict()}
    preset = preset_from_trial(study.trials[0], attrs, {"max_cache_len": 160, "decode_tokens_per_s": 1.0,
                                                        "equivalence_meaningful": False})
    assert preset.generation_config["max_cache_len"] == 160
    assert preset.generation_config["cache_implementation"] == "static"
    assert (preset.generation_config["eos_token_id"], preset.generation_config["pad_token_id"]) == (1, 0)
    assert preset.runtime["sdpa_backend"] == "cudnn" and preset.runtime["compile"]["api"] == "generate"
    assert "from_pretrained cannot load it" in preset.note
    GenerationConfig(**preset.generation_config)
    assert Preset.from_json(preset.to_json()) == preset
    assert preset.workload == {"prompts": ["def f():"], "prompt_count": 1, "batch_size": 1, "max_new_tokens": 128,
                               "sampling": False, "seed": 0, "prompts_sha256": Workload(prompts=("def f():",)).prompts_sha256()}
