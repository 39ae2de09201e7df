"""Which knob values a study has measured, and the covering trials that measure the rest.

A knob value is *measured* when a trial ran a configuration with it to a figure (ok, or stopped early as
hopeless), *failed* when it was only in trials that failed (unsupported, crash, timeout, over budget), and
*never drawn* otherwise. Values are taken from the effective configuration (`Candidate.effective`), and only
for knobs that apply to it (an SDPA backend only with sdpa), so a value counts where it was really built.

The study's first trials after its seeds are *covering* trials (`next_cover`): each one the valid
configuration, within the memory budget, that holds the most values not measured yet, so a dozen trials
measure every value of the default space where TPE alone leaves a third of them unmeasured after 30. They
also serve as the sampler's start-up trials (TPE draws its first 10 at random). A value that fails is tried
again in another covering trial with as few other unproven values as possible; after `MAX_FAILURES` failed
trials it is given up (it stays "failed"). `Covering` enqueues them as the study goes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable

import optuna
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace
from autotune.tuner.trials import FINISHED, role, untold_candidate

# trial statuses that ran to a figure
RAN = ("ok", "stopped")
# failed trials after which a value is given up by the covering trials
MAX_FAILURES = 2
# random valid configurations the covering trials are chosen from
POOL_SIZE = 2000


def reachable(space: SearchSpace) -> list:
    """The knobs a trial can ask for: not those whose condition needs a value the space left out (the
    assistant's knobs without --assistant, prompt lookup's on a random model)."""
    values = {knob.name: set(knob.values) for knob in space.knobs}
    return [knob for knob in space.knobs
            if all(values.get(other, set()) & set(allowed) for other, allowed in knob.when)]


def values_of(space: SearchSpace, candidate: Candidate) -> set[tuple[str, object]]:
    """(knob, value) of every knob of `space` that applies to the effective `candidate`."""
    effective = candidate.effective()
    chosen = {knob.name: getattr(effective, knob.name) for knob in space.knobs}
    return {(knob.name, chosen[knob.name]) for knob in space.knobs if knob.applies(chosen)}


def all_values(space: SearchSpace) -> set[tuple[str, object]]:
    """Every value of every reachable knob (left-out values are not in the space any more)."""
    return {(knob.name, value) for knob in reachable(space) for value in knob.values}


def tally(space: SearchSpace, trials: Iterable[tuple[int, Candidate, str | None]]
          ) -> tuple[dict[tuple, list[int]], dict[tuple, list[int]]]:
    """(measured, failed): trial numbers per (knob, value), from (number, candidate, status) of trials
    that reached a worker or its prescreen (invalid combinations are left out by the caller)."""
    measured, failed = defaultdict(list), defaultdict(list)
    for number, candidate, status in trials:
        for value in values_of(space, candidate):
            (measured if status in RAN else failed)[value].append(number)
    return measured, failed


def ran_trials(trials) -> list[tuple[int, Candidate, str | None]]:
    """(number, candidate, status) of a study's finished trials that reached a worker or its prescreen (not
    the invalid combinations), for `tally`."""
    return [(t.number, Candidate.from_json(t.user_attrs["candidate"]), t.user_attrs.get("status"))
            for t in trials if t.state in FINISHED
            and t.user_attrs.get("candidate") and t.user_attrs.get("failure_kind") != "invalid_combination"]


class _RandomTrial:
    """Answers `SearchSpace.suggest` as a trial would, with uniform random choices."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def suggest_categorical(self, name: str, choices: list):
        return self.rng.choice(choices)


def draw(space: SearchSpace, rng: random.Random, assistant: str | None) -> Candidate:
    """One configuration drawn uniformly knob by knob, through `SearchSpace.suggest`."""
    return space.suggest(_RandomTrial(rng)).with_assistant(assistant)


def pool(space: SearchSpace, seed: int, assistant: str | None, size: int = POOL_SIZE) -> list[Candidate]:
    """Distinct valid configurations (by key), drawn with `seed`."""
    rng, seen, found = random.Random(seed), set(), []
    for _ in range(size):
        candidate = draw(space, rng, assistant)
        if space.invalid_reason(candidate) is None and candidate.key() not in seen:
            seen.add(candidate.key())
            found.append(candidate)
    return found


def next_cover(space: SearchSpace, candidates: list[Candidate], measured: dict, failed: dict,
               tried_keys: set[str], fits: Callable[[Candidate], bool] = lambda c: True,
               pending: Iterable[Candidate] = ()) -> Candidate | None:
    """The configuration among `candidates` (not tried yet, within the budget) that holds the most values
    neither measured nor given up and none that failed and were never measured; where none adds such a
    value, a retry: the most values added with one that failed, the fewest such values, and the fewest values
    of the failed trials (another combination than the one that failed). None when no candidate adds a value.
    New values go first into trials with no value that failed: beside a value that fails they would fail with
    it and stay unmeasured.
    `pending`: the configurations other workers of the study are running now; their values are not wanted
    again meanwhile, and each one a configuration holds counts against what it adds (two workers that choose
    at the same moment would otherwise take the same configuration, one waiting for the other's result)."""
    in_progress = set().union(*(values_of(space, c) for c in pending))
    wanted = {v for v in all_values(space) if v not in measured and v not in in_progress
              and len(failed.get(v, ())) < MAX_FAILURES}
    if not wanted:
        return None
    suspects = {v for v in failed if v not in measured}
    # how many failed trials each value was in: a retry differs most from the combinations that failed
    in_failures = {value: len(numbers) for value, numbers in failed.items()}

    def score(values: set) -> tuple[tuple[int, int, int, int], int]:
        """((no value that failed before, values added less those another worker is measuring now, minus the
        values that failed before, minus how often its values were in failed trials), values added). Values
        added count at most one that failed before."""
        added = len((values & wanted) - suspects) + min(1, len(values & wanted & suspects))
        return (int(not values & suspects), added - len(values & in_progress), -len(values & suspects),
                -sum(in_failures.get(v, 0) for v in values)), added

    ranked = sorted(((score(values_of(space, c)), c) for c in candidates if c.key() not in tried_keys),
                    key=lambda sc: sc[0][0], reverse=True)
    for (_, added), candidate in ranked:
        if added > 0 and fits(candidate):
            return candidate
    return None


class Covering:
    """Enqueues the study's next covering trial while knob values are unmeasured and covering trials are
    fewer than half of `--trials` (nothing is enqueued while another trial waits)."""

    def __init__(self, space: SearchSpace, trials: int, seed: int, assistant: str | None,
                 fits: Callable[[Candidate], bool]):
        self.space, self.trials, self.seed, self.assistant, self.fits = space, trials, seed, assistant, fits
        self.pool: list[Candidate] | None = None  # drawn once, on first use

    def enqueue_next(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return
        if sum(role(t) == "cover" for t in trials) >= self.trials // 2:
            return
        measured, failed = tally(self.space, ran_trials(trials))
        tried = {t.user_attrs.get("candidate_key") or Candidate.from_json(t.user_attrs["candidate"]).key()
                 for t in trials if t.user_attrs.get("candidate")}
        running = self.running_candidates(trials)
        tried |= {c.key() for c in running}
        if self.pool is None:
            self.pool = pool(self.space, self.seed, self.assistant)
        candidate = next_cover(self.space, self.pool, measured, failed, tried, fits=self.fits, pending=running)
        if candidate is not None:
            study.enqueue_trial(self.space.params_of(candidate), user_attrs={"role": "cover"})

    def running_candidates(self, trials) -> list[Candidate]:
        """The configurations of the study's RUNNING trials (other workers' ones; their candidate is recorded
        only when they end), from their drawn and enqueued params."""
        running = (untold_candidate(self.space, t) for t in trials if t.state == TrialState.RUNNING)
        return [c.with_assistant(self.assistant) for c in running if c is not None]
