"""What a study is run with: every setting a user gives, declared once (`OPTIONS`), and `SearchSettings`.

Each `Option` names a setting, its command-line flag, its default and its help. The dataclass defaults of
`SearchSettings` and `Workload`'s command-line defaults are read from it, and the CLI builds its click options
from it (`autotune.cli.options`), so a default is written in one place only. docs/cli.md is generated from the
CLI's help, which is generated from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from autotune.config.gate import DEFAULT_GATE, GATES, Gate
from autotune.config.objective import DEFAULT_OBJECTIVE, METRICS, OBJECTIVES
from autotune.config.workload import Workload
from autotune.errors import InputError

DEVICES = ("auto", "cpu", "cuda")
# A study's name becomes file names (<root>/<name>.db, <root>/<name>/) and part of a storage URL: letters,
# digits, '_', '-' and '.', starting with a letter or digit, so that '.', '..', a path or a URL-significant
# character ('?', '#', '%', ...) is never taken for a name.
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Option:
    """One setting as a user gives it. `kind`: "text", "int", "float", "path" (a file), "target" (a file,
    or a folder), "flag" (on when
    given), "switch" (--x/--no-x), or a tuple of choices."""

    name: str
    flags: tuple[str, ...]
    help: str
    default: Any = None
    kind: Any = "text"
    required: bool = False


# `--workload`: common shapes of traffic, as the options they set
WORKLOADS = {
    "short-chat": {"prompts": "chat", "max_new_tokens": 128, "objective": "decode"},
    "long-context": {"prompts": "long", "max_new_tokens": 64, "objective": "e2e"},
}

_OPTIONS = (
    Option("model", ("--model",), "Model folder, hub id, or random:<architecture> (random:gemma-2b, random:llama-3-8b, "
           "random:mistral-7b, random:qwen2.5-0.5b: random weights, for speed only).", required=True),
    Option("study_name", ("--study",), "Study name (default: the model folder's name)."),
    Option("trials", ("--trials",), "Total trials of the study (resume counts earlier ones).", 20, "int"),
    Option("device", ("--device",), "auto: cuda when available, else cpu.", "auto", DEVICES),
    Option("storage", ("--storage",), "Optuna storage URL (default: sqlite:///<root>/<study>.db)."),
    Option("space", ("--space",), "Search space: a bundled one (default: every knob; quick: a first look on a CPU, "
           "no compiling) or a YAML file.", "default"),
    Option("prompts", ("--prompts",), 'JSONL file, one {"prompt": ...} or {"messages": [...]} (a chat, rendered '
           "with the model's chat template) per line, or a built-in set: code (the default), chat, long (documents of "
           "1-4k tokens to summarise).", None, "path"),
    Option("workload", ("--workload",), "A workload of a common shape, setting --prompts, --max-new-tokens and "
           "--objective: short-chat (chat, 128, decode) or long-context (long, 64, e2e).", None, tuple(WORKLOADS)),
    Option("objective", ("--objective",), "What the study maximizes: decode (decode tok/s, after the first token) "
           "or e2e (end-to-end tok/s of a request, prefill included: the lowest request latency).",
           DEFAULT_OBJECTIVE, OBJECTIVES),
    Option("batch_size", ("--batch-size",), "Prompts per generate call.", 1, "int"),
    Option("max_new_tokens", ("--max-new-tokens",), "Tokens generated per prompt.", 64, "int"),
    Option("assistant", ("--assistant",), "Assistant model for assisted decoding (folder or hub id); enables that "
           "knob."),
    Option("min_agreement", ("--min-agreement",), "Constraint: teacher-forced top-1 agreement with the baseline "
           "(--gate baseline), or how far below the baseline's own agreement with float32 a candidate's may fall, as "
           "1 - this (--gate noise-floor).", 0.99, "float"),
    Option("gate", ("--gate",), "Equivalence rule: noise-floor judges each candidate against the model in float32, "
           "relative to the baseline's own distance from it (top-1 and KL); baseline: top-1 agreement with the "
           "baseline at least --min-agreement.", DEFAULT_GATE, GATES),
    Option("sampling", ("--sampling",), "Measure seeded sampling instead of greedy decoding (equivalence: "
           "teacher-forced distributions).", False, "flag"),
    Option("sampling_seed", ("--sampling-seed",), "Seed of the sampled workload (torch is seeded with it before "
           "each batch).", 0, "int"),
    Option("vram", ("--vram",), "Memory budget: 24GB, 24GiB, 512MiB, ... or a fraction of the device's memory (0.5). "
           "Candidates estimated over it are not launched; on CUDA workers are capped to it."),
    Option("seed", ("--seed",), "Seed of the TPE sampler.", 0, "int"),
    Option("trial_timeout", ("--trial-timeout",), "Seconds before a trial's worker is killed.", 900, "float"),
    Option("overlap", ("--overlap",), "Trials run side by side: they start, load and compile at once, and measure one "
           "at a time with the others paused (the best's confirmations too). 0: as many as the GPU's memory (at --vram "
           "each) and cores allow, 1 on a CPU; 1: one trial at a time.", 0, "int"),
    Option("repeats", ("--repeats",), "Measured passes over the prompts (median).", 3, "int"),
    Option("warmup", ("--warmup",), "Unmeasured passes first (compilation happens here).", 1, "int"),
    Option("out", ("-o", "--out"), "Preset path (default: <root>/<study>.preset.json); a path ending in '/' (or "
           "an existing folder) gets a model folder that plain transformers runs, with the preset inside.", None,
           "target"),
    Option("folder", ("--folder",), "Also write the preset as a model folder here: weights, tokenizer, "
           "generation_config.json and custom_generate/, which from_pretrained(FOLDER, trust_remote_code=True) "
           "runs as tuned.", None, "target"),
    Option("root", ("--root",), "Folder of the default storage, the studies' results and logs, and presets.",
           "studies"),
    Option("new_study", ("--new-study",), "Delete an existing study of this name and start over (its results "
           "folder and preset are moved aside).", False, "flag"),
    Option("confirm", ("--confirm",), "Re-measure the best configuration this many times in fresh processes "
           "(stability check).", 3, "int"),
    Option("max_retry", ("--max-retry",), "Retries of a trial that crashed, hung or errored.", 1, "int"),
    Option("early_stop", ("--early-stop",), "Stop a trial after its first timed pass when it runs under this "
           "fraction of the best decode tok/s so far (it is PRUNED: it cannot win); 0: run every trial to the end.",
           0.5, "float"),
    Option("cover", ("--cover/--no-cover",), "After the baseline and the seed recipe, run covering trials (up to "
           "half of --trials) until every knob value of the space has been measured; --no-cover: the sampler "
           "draws every trial.", True, "switch"),
    Option("max_initial_failures", ("--max-initial-failures",), "Stop the study when this many configurations "
           "after the baseline failed and none ran.", 3, "int"),
    Option("heartbeat_interval", ("--heartbeat-interval",), "Seconds between heartbeats of a running trial.", 10,
           "int"),
    Option("grace_period", ("--grace-period",), "Seconds without a heartbeat after which a running trial is "
           "considered dead.", 60, "int"),
    Option("quiet", ("--quiet",), "No progress lines; the final table and preset path only.", False, "flag"),
    Option("json_progress", ("--json-progress",), "Progress as JSON lines on stdout (one object per event: trial, "
           "phase, elapsed_s, best); the table and messages go to stderr.", False, "flag"),
    Option("gpus", ("--gpus",), "Run one worker per device on this host (0,1,2,3; each worker's trials see one "
           "device) on a shared storage: --storage postgresql://..., or by default a journal file "
           "<root>/<study>.log. A SQLite --storage is refused for more than one."),
    Option("as_json", ("--json",), "Print JSON instead of a table.", False, "flag"),
    Option("runs", ("--runs",), "Measured runs of the preset's configuration, each in a fresh process (their median "
           "and spread are judged).", 3, "int"),
    Option("threshold", ("--threshold",), "Fail when the median decode tok/s is more than this fraction below the "
           "preset's recorded figure.", 0.1, "float"),
)
OPTIONS: dict[str, Option] = {option.name: option for option in _OPTIONS}


def default(name: str) -> Any:
    """The declared default of the setting `name`."""
    return OPTIONS[name].default


# The options of `autotune search` that become SearchSettings (the rest are the command's own: where the
# preset goes, how progress is shown, which GPUs run workers).
WORKLOAD_OPTIONS = ("prompts", "batch_size", "max_new_tokens", "sampling", "sampling_seed")
SEARCH_OPTIONS = ("model", "study_name", "trials", "device", "storage", "space", "prompts", "batch_size",
                  "max_new_tokens", "workload", "objective", "assistant", "min_agreement", "gate", "sampling", "sampling_seed", "vram", "seed",
                  "trial_timeout", "overlap", "repeats", "warmup", "out", "root", "new_study", "confirm", "max_retry",
                  "early_stop", "cover", "max_initial_failures", "heartbeat_interval", "grace_period", "quiet",
                  "json_progress", "gpus")

# The options of `autotune verify` (and of `autotune.verify`): how the preset is measured again.
VERIFY_OPTIONS = ("device", "runs", "threshold", "prompts", "repeats", "warmup", "trial_timeout", "as_json")


def with_workload_preset(options: dict) -> dict:
    """The options with what `--workload` sets (WORKLOADS); InputError where one of those is also given.

    Args:
        options: a command's options by name (absent ones take their declared default).

    Returns:
        The options, the preset's settings in place.
    """
    name = options.get("workload")
    if not name:
        return options
    if name not in WORKLOADS:
        raise InputError(f"--workload is one of {', '.join(WORKLOADS)}, got {name!r}")
    preset = WORKLOADS[name]
    given = [key for key in preset if options.get(key, default(key)) not in (None, default(key), preset[key])]
    if given:
        sets = ", ".join(f"{OPTIONS[key].flags[0]} {preset[key]}" for key in preset)
        raise InputError(f"--workload {name} sets {sets}: leave out {', '.join(OPTIONS[k].flags[0] for k in given)}, "
                         "or give them without --workload")
    return {**options, **preset}


def workload_from_options(options: dict) -> Workload:
    """The Workload of a command's options (`WORKLOAD_OPTIONS`, or what `--workload` sets; absent ones take their
    declared default)."""
    options = with_workload_preset(options)
    get = {name: options.get(name, default(name)) for name in WORKLOAD_OPTIONS}
    settings = dict(batch_size=get["batch_size"], max_new_tokens=get["max_new_tokens"], sampling=get["sampling"],
                    seed=get["sampling_seed"])
    if get["prompts"]:
        return Workload.from_file(get["prompts"], model=options.get("model"), **settings)
    return Workload.default(**settings)


@dataclass(frozen=True)
class SearchSettings:
    """Everything one study runs with, validated on construction; recorded in the study (`to_dict`), so
    that workers joining it need only its name and storage."""

    model: str
    workload: Workload
    study_name: str
    trials: int = default("trials")
    space: str = default("space")
    device: str = default("device")
    storage: str | None = None
    root: str = default("root")
    assistant: str | None = None
    min_agreement: float = default("min_agreement")
    gate: str = default("gate")
    objective: str = default("objective")
    seed: int = default("seed")
    trial_timeout: float = default("trial_timeout")
    overlap: int = default("overlap")
    repeats: int = default("repeats")
    warmup: int = default("warmup")
    max_initial_failures: int = default("max_initial_failures")
    max_retry: int = default("max_retry")
    heartbeat_interval: int = default("heartbeat_interval")
    grace_period: int = default("grace_period")
    confirm: int = default("confirm")
    new_study: bool = False
    command: str | None = None
    vram: int | None = None  # memory budget in bytes (--vram); None: no budget
    early_stop: float = default("early_stop")
    cover: bool = default("cover")
    # Test-only: (selector, fault) pairs (autotune.worker.faults); honoured by a worker only when its
    # environment has AUTOTUNE_ALLOW_FAULTS=1.
    faults: tuple = ()

    def __post_init__(self):
        checks = (
            (isinstance(self.trials, int) and self.trials >= 1, f"--trials must be at least 1, got {self.trials}"),
            (0 <= self.min_agreement <= 1,
             f"--min-agreement is a share between 0 and 1, got {self.min_agreement}"),
            (self.trial_timeout > 0, f"--trial-timeout must be positive, got {self.trial_timeout}"),
            (isinstance(self.overlap, int) and self.overlap >= 0,
             f"--overlap is a number of trials side by side (0: as many as fit), got {self.overlap!r}"),
            (self.repeats >= 1 and self.warmup >= 0, "--repeats must be at least 1 and --warmup at least 0"),
            (self.max_retry >= 0 and self.max_initial_failures >= 1 and self.confirm >= 0,
             "--max-retry and --confirm must be at least 0, --max-initial-failures at least 1"),
            (self.heartbeat_interval >= 1 and self.grace_period >= self.heartbeat_interval,
             "--heartbeat-interval must be at least 1 s and --grace-period at least as long"),
            (0 <= self.early_stop < 1, "--early-stop is a fraction of the best tok/s from 0 (never) to below 1, "
                                       f"got {self.early_stop}"),
            (self.vram is None or (isinstance(self.vram, int) and self.vram > 0),
             f"--vram must be a positive number of bytes, got {self.vram!r}"),
            (self.device in DEVICES, f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}"),
            (self.gate in GATES, f"--gate is one of {', '.join(GATES)}, got {self.gate!r}"),
            (self.objective in OBJECTIVES, f"--objective is one of {', '.join(OBJECTIVES)}, got {self.objective!r}"),
        )
        for holds, message in checks:
            if not holds:
                raise InputError(message)
        check_study_name(self.study_name)

    @classmethod
    def from_options(cls, options: dict, **extra) -> "SearchSettings":
        """The settings of a command's options (those of `autotune search`); `extra` sets the fields a
        command computes itself (the budget in bytes, the command line, a study name)."""
        options = with_workload_preset(options)
        names = {f.name for f in fields(cls)} - {"workload", "vram"}
        values = {name: options[name] for name in names if options.get(name) is not None}
        return cls(workload=workload_from_options(options), **{**values, **extra})

    def to_dict(self) -> dict:
        """JSON-ready: recorded in the study (`study create`), so that workers need only its name and storage."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["workload"] = self.workload.to_dict()
        data["faults"] = [list(item) for item in self.faults]
        return data

    @classmethod
    def from_dict(cls, data: dict, **changes) -> "SearchSettings":
        known = {f.name for f in fields(cls)}
        # a study made before the gate existed judged equivalence by the baseline rule, and keeps it
        values = {"gate": "baseline", **{k: v for k, v in data.items() if k in known}}
        values["workload"] = Workload.from_dict(values["workload"])
        values["faults"] = tuple(tuple(item) for item in values.get("faults", ()))
        return cls(**{**values, **changes})

    @property
    def equivalence_gate(self) -> Gate:
        return Gate(self.gate, self.min_agreement)

    @property
    def objective_metric(self) -> str:
        """The Measurement field the study maximizes (autotune.config.objective)."""
        return METRICS[self.objective]

    @property
    def study_dir(self) -> Path:
        return Path(self.root) / self.study_name

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage_url(self.root, self.study_name)


def check_study_name(name) -> str:
    """`name` if it is a plain study name (STUDY_NAME), else InputError saying what a name may hold.

    Args:
        name: a study name as a user gave it.

    Returns:
        The name.
    """
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise InputError(f"--study {name!r} is not a plain name: use letters, digits, '_', '-' and '.', starting "
                         "with a letter or digit, at most 100 characters (it names the study's files)")
    return name


def default_storage_url(root: str | Path, study_name: str) -> str:
    """A study's SQLite file when no storage is given: `<root>/<study>.db`."""
    return f"sqlite:///{Path(root) / (study_name + '.db')}"


def default_preset_path(root: str | Path, study_name: str) -> Path:
    """Where a study's preset goes when no -o is given: `<root>/<study>.preset.json`."""
    return Path(root) / f"{study_name}.preset.json"
