"""SearchSpace: knobs, their values and the conditions between them, loaded from `search_spaces/*.yaml`.

A space file looks like this (see `search_spaces/default.yaml`)::

    knobs:
      cache_implementation: {values: [dynamic, static]}
      compile:
        values: [off, default]
        when: {cache_implementation: [static]}   # only suggested when the condition holds
    invalid:                                     # combinations rejected before any process starts
      - if: {decoding: [prompt_lookup], cache_implementation: [static]}
        reason: prompt lookup decoding runs with a dynamic cache

Knob names and values are those of `Candidate`. The baseline value of every knob (the Candidate
default) is always part of the space, because trial 0 — the baseline — uses it.

`autotune.config.availability.for_machine` drops the values the machine, workload or model cannot run
(float16 on CPU, assisted decoding with no assistant, ...) and records why, so the study can show what was
left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from autotune.config.candidate import KNOBS, Candidate, normalize_knob_value
from autotune.errors import CandidateError, SpaceError
from autotune.files import read_text

_BASELINE = Candidate()
_FILE_KEYS = {"knobs", "invalid", "description"}
# A space is bounded: a knob lists at most MAX_VALUES values, an invalid-rule list at most MAX_RULES rules, a
# file is at most MAX_FILE_BYTES; everything that handles a space is linear in its values.
MAX_VALUES = 256
MAX_RULES = 256
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple
    when: tuple[tuple[str, tuple], ...] = ()  # (knob, allowed values) pairs, all must hold

    def applies(self, chosen: dict) -> bool:
        return all(chosen.get(other) in allowed for other, allowed in self.when)


@dataclass(frozen=True)
class Rule:
    """An invalid combination: every listed knob has one of the listed values."""

    conditions: tuple[tuple[str, tuple], ...]
    reason: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(knob for knob, _ in self.conditions)

    def holds(self, values) -> str | None:
        """The reason, where every listed knob of `values` (a mapping of field to value) has a listed value."""
        return self.reason if all(values[knob] in allowed for knob, allowed in self.conditions) else None

    def matches(self, candidate: Candidate) -> bool:
        return all(getattr(candidate, knob) in values for knob, values in self.conditions)


@dataclass(frozen=True)
class BuiltInRule:
    """A combination no space may launch, whatever its file says: the fields it reads and its test."""

    fields: tuple[str, ...]
    test: Callable[[Any], bool]
    reason: str  # a format string over the fields

    def holds(self, values) -> str | None:
        return self.reason.format(**{f: values[f] for f in self.fields}) if self.test(values) else None


BUILT_IN_RULES = (
    BuiltInRule(("compile", "cache_implementation"),
                lambda v: v["compile"] != "off" and v["cache_implementation"] == "dynamic",
                "torch.compile is searched with a static cache only (a dynamic cache recompiles every step)"),
    BuiltInRule(("sdpa_backend", "attn_implementation"),
                lambda v: v["sdpa_backend"] != "auto" and v["attn_implementation"] != "sdpa",
                "an SDPA backend applies to attn_implementation=sdpa only"),
    BuiltInRule(("decoding", "cache_implementation"),
                lambda v: v["decoding"] != "standard" and v["cache_implementation"] != "dynamic",
                "{decoding} decoding runs with a dynamic cache in transformers"),
    BuiltInRule(("decoding", "assistant"), lambda v: v["decoding"] == "assisted" and not v["assistant"],
                "assisted decoding needs an assistant model (--assistant)"),
)


class _Fields:
    """A Candidate's fields by name (what a rule reads)."""

    def __init__(self, candidate: Candidate):
        self.candidate = candidate

    def __getitem__(self, name):
        return getattr(self.candidate, name)


class _Chosen(dict):
    """The knob values chosen so far, the baseline's for the rest (what a Candidate built from them holds)."""

    def __missing__(self, name):
        return getattr(_BASELINE, name)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    knobs: tuple[Knob, ...]
    rules: tuple[Rule, ...] = ()
    left_out: tuple[tuple[str, Any, str], ...] = field(default=())  # (knob, value, why)

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, name_or_path: str) -> "SearchSpace":
        """Load a space by name (`default` -> the bundled `search_spaces/default.yaml`) or by file path."""
        path = Path(name_or_path)
        if path.suffix in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                raise SpaceError(f"search-space file {name_or_path!r} does not exist")
            text = read_text(path, "search-space file", SpaceError, limit=MAX_FILE_BYTES)
            return cls.from_yaml(text, name=path.stem, source=str(path))
        bundled = resources.files("autotune.config.search_spaces") / f"{name_or_path}.yaml"
        if not bundled.is_file():
            names = sorted(p.name[:-5] for p in resources.files("autotune.config.search_spaces").iterdir()
                           if p.name.endswith(".yaml"))
            raise SpaceError(f"no search space named {name_or_path!r}: use one of {names} or a path to a YAML file")
        return cls.from_yaml(bundled.read_text(encoding="utf-8"), name=name_or_path, source=f"{name_or_path}.yaml")

    @classmethod
    def from_yaml(cls, text: str, name: str = "custom", source: str = "<string>",
                  recorded: bool = False) -> "SearchSpace":
        """A space from YAML text. `recorded`: a space `to_dict` recorded after `availability.for_machine`,
        whose knobs may have no values left (each left out on that machine)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"search-space file {source} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("knobs"), dict) or not data["knobs"]:
            raise SpaceError(f"search-space file {source} must be a mapping with a non-empty 'knobs' mapping")
        extra = set(data) - _FILE_KEYS
        if extra:
            raise SpaceError(f"search-space file {source}: unknown top-level key(s) {sorted(extra)}; "
                             f"allowed: {sorted(_FILE_KEYS)}")
        if len(data.get("invalid") or []) > MAX_RULES:
            raise SpaceError(f"search-space file {source} lists more than {MAX_RULES} invalid rules: merge them")
        try:
            knobs = tuple(_parse_knob(knob, spec, source, recorded) for knob, spec in data["knobs"].items())
            rules = tuple(_parse_rule(i, spec, source) for i, spec in enumerate(data.get("invalid") or []))
        except CandidateError as exc:
            raise SpaceError(f"search-space file {source}: {exc}") from None
        names = [k.name for k in knobs]
        for knob in knobs:
            for other, _ in knob.when:
                if other not in names or names.index(other) >= names.index(knob.name):
                    raise SpaceError(f"search-space file {source}: knob {knob.name!r} depends on {other!r}, "
                                     "which must be a knob listed before it")
        return cls(name=name, knobs=knobs, rules=rules)

    # ---- sampling and checking -------------------------------------------------------------------

    def suggest(self, trial) -> Candidate:
        """Ask an Optuna trial for one value of every knob whose condition holds; build the Candidate."""
        chosen: dict[str, Any] = {}
        for knob in self.knobs:
            if not knob.values:  # every value was left out on this machine: keep the Candidate default
                continue
            if len(knob.values) > 1 and knob.applies(chosen):
                chosen[knob.name] = trial.suggest_categorical(knob.name, list(knob.values))
            elif knob.applies(chosen):
                chosen[knob.name] = knob.values[0]
        return Candidate(**chosen)

    def candidates(self) -> Iterator[Candidate]:
        """Every Candidate `suggest` can produce, each once, in knob order: a knob is varied only where its
        `when` condition holds (as in `suggest`). Invalid combinations (`invalid_reason`) are included."""
        return self._walk(None, lambda candidate: candidate)

    def valid_candidates(self, assistant: str | None = None) -> Iterator[Candidate]:
        """Every configuration a study of this space may launch: `candidates()` as the study runs them
        (assisted decoding with `assistant`), invalid combinations left out. A branch of the walk ends as soon
        as a rule whose knobs are all chosen holds, so the work follows the valid candidates, not the product
        of every knob's values."""
        def launchable(candidate: Candidate) -> Candidate | None:
            candidate = candidate.with_assistant(assistant)
            return candidate if self.invalid_reason(candidate) is None else None

        return self._walk(rules_by_depth(self), launchable)

    def _walk(self, checks: list[list] | None, keep: Callable[[Candidate], Candidate | None]) -> Iterator[Candidate]:
        """The candidates in knob order, a knob varied only where its `when` condition holds; a branch ends where
        one of `checks` (per depth) holds; `keep` maps each candidate to what is yielded (None: nothing)."""
        def walk(index: int, chosen: _Chosen) -> Iterator[Candidate]:
            if checks is not None and any(rule.holds(chosen) for rule in checks[index]):
                return
            if index == len(self.knobs):
                candidate = keep(Candidate(**chosen))
                if candidate is not None:
                    yield candidate
                return
            knob = self.knobs[index]
            if not knob.values or not knob.applies(chosen):
                yield from walk(index + 1, chosen)
                return
            for value in knob.values:
                yield from walk(index + 1, _Chosen({**chosen, knob.name: value}))

        return walk(0, _Chosen())

    def count_candidates(self) -> int:
        """How many candidates `candidates()` yields, invalid ones included, without making them: the count
        below a knob depends only on the chosen values that later `when` conditions read."""
        read_later = [set().union(*(dict(k.when) for k in self.knobs[i:]), set()) for i in range(len(self.knobs))]
        memo: dict = {}

        def count(index: int, chosen: dict) -> int:
            if index == len(self.knobs):
                return 1
            key = (index, tuple(sorted((k, v) for k, v in chosen.items() if k in read_later[index])))
            if key not in memo:
                knob = self.knobs[index]
                if not knob.values or not knob.applies(chosen):
                    memo[key] = count(index + 1, chosen)
                else:
                    memo[key] = sum(count(index + 1, {**chosen, knob.name: v}) for v in knob.values)
            return memo[key]

        return count(0, {})


    def params_of(self, candidate: Candidate) -> dict:
        """The Optuna params that `suggest` would ask for to produce `candidate` (for enqueue_trial)."""
        chosen: dict[str, Any] = {}
        for knob in self.knobs:
            if knob.applies(chosen):
                chosen[knob.name] = getattr(candidate, knob.name)
        return {name: value for name, value in chosen.items()
                if len(self.knob(name).values) > 1}

    def contains(self, candidate: Candidate) -> bool:
        """Whether `suggest` can produce `candidate`: every applicable knob holds one of its values, and
        every other knob field keeps the baseline's value."""
        chosen: dict[str, Any] = {}
        for knob in self.knobs:
            if knob.applies(chosen) and knob.values:
                chosen[knob.name] = getattr(candidate, knob.name)
                if chosen[knob.name] not in knob.values:
                    return False
        return all(getattr(candidate, name) == getattr(_BASELINE, name) for name in KNOBS if name not in chosen)

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise KeyError(name)

    def invalid_reason(self, candidate: Candidate) -> str | None:
        """Why `candidate` must not be launched, or None. Checked before any process starts."""
        for rule in self.rules:
            if rule.matches(candidate):
                return rule.reason
        values = _Fields(candidate)
        for rule in BUILT_IN_RULES:
            reason = rule.holds(values)
            if reason is not None:
                return reason
        return None

    # ---- identity --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "knobs": {k.name: {"values": list(k.values), "when": {o: list(v) for o, v in k.when}}
                      for k in self.knobs},
            "invalid": [{"if": {k: list(v) for k, v in r.conditions}, "reason": r.reason} for r in self.rules],
            "left_out": [{"knob": k, "value": v, "why": why} for k, v, why in self.left_out],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        """The space `to_dict` recorded (in a study: workers that join it search the space it was made with)."""
        knobs = {name: {"values": spec["values"], **({"when": spec["when"]} if spec.get("when") else {})}
                 for name, spec in data["knobs"].items()}
        space = cls.from_yaml(yaml.safe_dump({"knobs": knobs, "invalid": data.get("invalid") or []}, sort_keys=False),
                              name=data.get("name", "recorded"), source="the study's recorded space", recorded=True)
        left_out = tuple((item["knob"], item["value"], item["why"]) for item in data.get("left_out", ()))
        return replace(space, left_out=left_out)

    def fingerprint(self) -> str:
        """Identifies the searched space (knobs, values, conditions), for refusing a changed space on resume."""
        data = self.to_dict()
        data.pop("name")
        data.pop("left_out")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]



def rules_by_depth(space: SearchSpace) -> list[list]:
    """For each depth of `valid_candidates`' walk (knobs chosen so far), the rules first decided there; a rule
    that reads the assistant is left to the whole candidate."""
    position = {knob.name: i for i, knob in enumerate(space.knobs)}
    checks: list[list] = [[] for _ in range(len(space.knobs) + 1)]
    for rule in (*space.rules, *BUILT_IN_RULES):
        if "assistant" in rule.fields:
            continue
        depth = max((position.get(f, -1) + 1 for f in rule.fields), default=0)
        checks[depth].append(rule)
    return checks

def _parse_conditions(spec: Any, where: str) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(spec, dict) or not spec:
        raise SpaceError(f"{where} must be a mapping of knob -> list of values")
    conditions = []
    for knob, values in spec.items():
        values = values if isinstance(values, list) else [values]
        if len(values) > MAX_VALUES:
            raise SpaceError(f"{where} lists more than {MAX_VALUES} values of {knob!r}")
        conditions.append((knob, tuple(normalize_knob_value(knob, v) for v in values)))
    return tuple(conditions)


def _parse_knob(name: str, spec: Any, source: str, recorded: bool = False) -> Knob:
    if name == "assistant":
        raise SpaceError(f"search-space file {source}: the assistant model is given with --assistant, not as a knob")
    if recorded and isinstance(spec, dict) and spec.get("values") == []:  # every value left out on that machine
        return Knob(name, (), _parse_conditions(spec["when"], f"{source}: 'when' of knob {name!r}")
                    if spec.get("when") else ())
    if not isinstance(spec, dict) or not isinstance(spec.get("values"), list) or not spec["values"]:
        raise SpaceError(f"search-space file {source}: knob {name!r} needs a non-empty list under 'values'")
    if len(spec["values"]) > MAX_VALUES:
        raise SpaceError(f"search-space file {source}: knob {name!r} lists {len(spec['values'])} values, more than "
                         f"the {MAX_VALUES} a study can measure: list the values worth measuring")
    unknown = set(spec) - {"values", "when"}
    if unknown:
        raise SpaceError(f"search-space file {source}: knob {name!r} has unknown key(s) {sorted(unknown)}; "
                         "allowed: values, when")
    values = [normalize_knob_value(name, v) for v in spec["values"]]
    baseline_value = getattr(_BASELINE, name)
    if baseline_value not in values and not spec.get("when"):
        values.insert(0, baseline_value)  # trial 0, the baseline, uses it
    if len(set(map(repr, values))) != len(values):
        raise SpaceError(f"search-space file {source}: knob {name!r} lists a value twice")
    when = _parse_conditions(spec["when"], f"search-space file {source}: 'when' of knob {name!r}") \
        if "when" in spec else ()
    return Knob(name, tuple(values), when)


def _parse_rule(index: int, spec: Any, source: str) -> Rule:
    where = f"search-space file {source}: invalid rule {index}"
    if not isinstance(spec, dict) or set(spec) != {"if", "reason"} or not isinstance(spec["reason"], str):
        raise SpaceError(f"{where} must have exactly the keys 'if' (knob -> values) and 'reason' (text)")
    return Rule(_parse_conditions(spec["if"], f"{where} 'if'"), spec["reason"])
