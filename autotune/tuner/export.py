"""Export: a study's best feasible trial as a Preset (autotune.config.preset), written atomically."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from autotune.config import models
from autotune.config.candidate import STATIC_CACHES, Candidate
from autotune.config.gate import Gate
from autotune.config.objective import metric_of
from autotune.config.preset import Preset
from autotune.config.workload import Workload
from autotune.errors import FolderExportError, InputError
from autotune.runtime.hints import PRESET_IN_FOLDER
from autotune.tuner.records import Records
from autotune.tuner.study import recorded
from autotune.tuner.trials import best_feasible_trial, is_feasible, role

STABILITY_ATTR = "stability"  # study user attribute: the confirmations of the best trial
# GenerationConfig fields of the model's own generation_config.json that a preset carries over.
MODEL_GENERATION_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
SAMPLING_FIELDS = ("temperature", "top_k", "top_p")


def model_generation_defaults(model: str, sampling: bool = False) -> dict:
    """Token ids from the model's own generation config (so the preset's GenerationConfig is complete), and
    for a sampling workload its sampling settings (temperature, top_k, top_p), which the trials used."""
    try:
        from transformers import GenerationConfig

        if models.is_random(model):
            config = GenerationConfig.from_model_config(models.config_for(model))
        else:
            config = GenerationConfig.from_pretrained(model)
    except Exception:  # no generation_config.json, or a hub id that cannot be reached: keep the candidate's
        return {}
    names = MODEL_GENERATION_FIELDS + (SAMPLING_FIELDS if sampling else ())
    return {k: getattr(config, k) for k in names if getattr(config, k, None) is not None}


def preset_from_trial(trial, study_attrs: dict, measurement: dict) -> Preset:
    """The Preset of a finished trial, from its candidate, the study's workload and its measurement.

    A static cache keeps the length it was measured with (`max_cache_len`: the workload's longest padded
    prompt plus its new tokens); generate() still grows it for a longer call."""
    candidate = Candidate.from_json(trial.user_attrs["candidate"])
    workload = study_attrs["workload"]
    generation = {**model_generation_defaults(study_attrs["model"], workload["sampling"]),
                  **candidate.generation_kwargs(), "max_new_tokens": workload["max_new_tokens"],
                  "do_sample": workload["sampling"]}
    if candidate.cache_implementation in STATIC_CACHES and measurement.get("max_cache_len"):
        generation["max_cache_len"] = measurement["max_cache_len"]
    figures = {k: v for k, v in measurement.items() if k not in ("environment", "traceback", "runs")}
    model = study_attrs["model"]
    return Preset(
        model=model,
        load_kwargs=candidate.load_kwargs(),
        generation_config=generation,
        runtime=candidate.runtime(),
        measurement={**figures, "candidate": candidate.to_dict()},
        environment=measurement.get("environment", {}),
        study={"name": study_attrs["study_name"], "trial": trial.number, "role": role(trial),
               "device": study_attrs["device"], "min_agreement": study_attrs["min_agreement"],
               "gate": Gate.of_attrs(study_attrs).rule, "objective": metric_of(study_attrs),
               "command": study_attrs.get("command")},
        workload=Workload.from_dict(workload).record(),
        note=models.describe(model) if models.is_random(model) else None,
    )


def chosen_trial(study: optuna.Study, number: int | None):
    """The best feasible trial, or the feasible trial `number` (InputError where it is not one)."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        return best_feasible_trial(trials)
    found = next((t for t in trials if t.number == number), None)
    if found is None or not is_feasible(found):
        why = "has no such trial" if found is None else \
            f"has it {found.user_attrs.get('status') or found.state.name.lower()}, not feasible"
        raise InputError(f"--trial {number}: the study {why}; export a feasible trial ('autotune show' lists them "
                         "with their status), or leave --trial out for the best")
    return found


def export_study(study: optuna.Study, out: str | Path, study_dir: str | Path, trial: int | None = None) -> Path:
    """Export the study's best feasible trial (or the feasible trial `trial`) as a Preset, atomically, with its
    confirmations where they were made.

    Args:
        study: a study made by autotune.
        out: the preset's path, or a model folder's (`is_folder_target`): `write_folder`.
        study_dir: the study's folder (its result files hold the full measurement).
        trial: the number of a feasible trial to export instead of the best.

    Returns:
        The path written (a folder's preset: `<folder>/autotune_preset.json`). Raises NoFeasibleTrialError where no trial is feasible, InputError where `trial` is not
        a feasible trial (nothing is written).
    """
    attrs = recorded(study)
    best = chosen_trial(study, trial)
    number = best.user_attrs.get("duplicate_of")
    number = best.number if number is None else number
    measurement = Records.read(study_dir, number) or dict(best.user_attrs)
    stability = study.user_attrs.get(STABILITY_ATTR)
    if stability and stability.get("trial") in (best.number, number):
        measurement["stability"] = stability
    preset = preset_from_trial(best, attrs, measurement)
    if is_folder_target(out):
        return write_folder(preset, out) / PRESET_IN_FOLDER
    return preset.write(out)


def is_folder_target(out: str | Path) -> bool:
    """An export target that is a model folder: a path ending in '/', or an existing folder."""
    return str(out).endswith(("/", os.sep)) or Path(out).is_dir()




def write_folder(preset: Preset, folder: str | Path) -> Path:
    """Write `preset` as a model folder that plain transformers runs (autotune.runtime.folder), in a process of
    its own, so that the orchestrator never loads a model (nor touches a device).

    Args:
        preset: the preset.
        folder: the folder (replaced where an earlier export wrote it).

    Returns:
        The folder. FolderExportError (with the exporter's last words) where it could not be written.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = preset.write(folder.with_name(f".{folder.name}.preset.json"))
    try:
        done = subprocess.run([sys.executable, "-m", "autotune.runtime.folder", str(staged), str(folder)],
                              capture_output=True, text=True)
    finally:
        staged.unlink(missing_ok=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FolderExportError(f"the preset could not be written as a model folder at {folder}: {last}")
    return folder
