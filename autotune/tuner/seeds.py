"""The trials a study starts with: trial 0 the baseline (the model as a user loads it, which every other trial
is compared with), trial 1 the seed guide's recipe (static cache + torch.compile of the forward)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace
from autotune.tuner.trials import role


def seed_recipe(space: SearchSpace) -> Candidate | None:
    """The seed guide's recipe — a static cache plus torch.compile of the forward — in the closest form
    this space holds (reduce-overhead + fullgraph on CUDA, the default mode on CPU)."""
    for mode in ("reduce-overhead", "default"):
        for fullgraph in (True, False):
            candidate = Candidate(cache_implementation="static", compile=mode, compile_fullgraph=fullgraph,
                                  compile_api="explicit")
            if space.contains(candidate) and space.invalid_reason(candidate) is None:
                return candidate
    return None


def enqueue_seeds(study: optuna.Study, space: SearchSpace) -> None:
    """Enqueue the baseline where the study has none (done, waiting or running), and the seed recipe into a
    study with no trial yet: running it twice enqueues nothing more."""
    trials = study.get_trials(deepcopy=False)
    has_baseline = any(role(t) == "baseline" and t.state in (TrialState.COMPLETE, TrialState.WAITING,
                                                              TrialState.RUNNING) for t in trials)
    if not has_baseline:
        study.enqueue_trial(space.params_of(Candidate()), user_attrs={"role": "baseline"})
    if not trials:
        recipe = seed_recipe(space)
        if recipe is not None:
            study.enqueue_trial(space.params_of(recipe), user_attrs={"role": "seed-recipe"})
