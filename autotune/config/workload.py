"""Workload: what is measured — prompts, batch size, new tokens, greedy or seeded sampling."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from autotune.config.chat import check_messages, render_conversations
from autotune.errors import WorkloadError
from autotune.files import read_text

MAX_PROMPT_FILE_BYTES = 64 << 20  # far more text than a study measures; the model's context bounds each prompt
# Prompts up to this size are kept in a preset's workload record; larger ones by their hash only, and
# `autotune verify` asks for their file.
MAX_RECORDED_PROMPT_BYTES = 256 << 10


def read_prompt_lines(path: str | Path) -> tuple[tuple, bool]:
    """The lines of a JSONL prompt file: `{"prompt": "..."}` objects, or `{"messages": [...]}` conversations
    (one kind per file; blank lines are skipped).

    Args:
        path: the file.

    Returns:
        (the prompts as strings, or the conversations as tuples of messages; whether they are conversations).
    """
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"prompt file {str(path)!r} does not exist: give a JSONL file with one "
                            '{"prompt": "..."} or {"messages": [...]} object per line')
    items, kinds = [], set()
    text = read_text(path, "prompt file", WorkloadError, limit=MAX_PROMPT_FILE_BYTES)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{number}: not valid JSON ({exc.msg}); each line must be "
                                '{"prompt": "..."} or {"messages": [...]}') from None
        if isinstance(record, dict) and "messages" in record and "prompt" not in record:
            items.append(check_messages(record["messages"], f"{path}:{number}"))
            kinds.add("messages")
        elif isinstance(record, dict) and isinstance(record.get("prompt"), str) and record["prompt"]:
            items.append(record["prompt"])
            kinds.add("prompt")
        else:
            raise WorkloadError(f'{path}:{number}: expected an object with a non-empty string "prompt" or a '
                                '"messages" list')
        if len(kinds) > 1:
            raise WorkloadError(f'{path}:{number}: the file mixes "prompt" and "messages" lines: give one kind')
    if not items:
        raise WorkloadError(f"{path} holds no prompts")
    return tuple(items), kinds == {"messages"}


def read_prompts_jsonl(path: str | Path, model: str | None = None) -> tuple[tuple[str, ...], bool]:
    """The prompt texts of a JSONL prompt file, conversations rendered with `model`'s chat template.

    Args:
        path: the file (`read_prompt_lines`).
        model: the model folder or hub id, where the file holds conversations.

    Returns:
        (the prompt texts; whether they are rendered conversations).
    """
    items, chat = read_prompt_lines(path)
    return (render_conversations(model, items, str(path)), True) if chat else (items, False)


def bundled_prompt_sets() -> list[str]:
    """The names of the built-in prompt sets (`--prompts code`, `--prompts chat`)."""
    return sorted(p.name[:-6] for p in resources.files("autotune.config.prompts").iterdir() if p.name.endswith(".jsonl"))


def prompt_file(name_or_path: str | Path):
    """The prompt file a `--prompts` value names: a path (it ends in .jsonl or exists), else a built-in set.

    Args:
        name_or_path: a JSONL file's path, or a built-in set's name (`bundled_prompt_sets`).

    Returns:
        A context manager giving the file's path (a built-in set's may be extracted from the package).
    """
    path = Path(name_or_path)
    if path.suffix == ".jsonl" or path.exists() or path.name != str(name_or_path):
        return nullcontext(path)
    bundled = resources.files("autotune.config.prompts") / f"{name_or_path}.jsonl"
    if not bundled.is_file():
        raise WorkloadError(f"no prompt file or built-in prompt set named {str(name_or_path)!r}: give a JSONL file "
                            f"or one of {bundled_prompt_sets()}")
    return resources.as_file(bundled)


def default_prompts() -> tuple[str, ...]:
    """The built-in prompt set `code`: Python code of varied length, which suits code models like the bundled one."""
    with prompt_file("code") as path:
        return read_prompts_jsonl(path)[0]


@dataclass(frozen=True)
class Workload:
    """The prompts and generation settings every trial of a study is measured on.

    `sampling=False` is greedy decoding; `sampling=True` samples with the model's own sampling settings,
    seeding torch with `seed + i` before the i-th batch, so every trial draws the same random numbers.
    A sampled text says nothing about equivalence (one changed draw changes the rest), so sampling
    workloads are compared by their teacher-forced distributions only: `top1_agreement` and `mean_kl`
    on the baseline's own sampled continuation; `prefix_match` is None.
    Every trial generates exactly `max_new_tokens` per sequence (EOS is suppressed while measuring) so
    that all configurations do the same amount of work.
    `chat=True` says the prompts are conversations rendered with the model's chat template (`autotune.config.chat`).
    """

    prompts: tuple[str, ...]
    batch_size: int = 1
    max_new_tokens: int = 64
    sampling: bool = False
    seed: int = 0
    chat: bool = False

    def __post_init__(self):
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if not self.prompts or not all(isinstance(p, str) and p for p in self.prompts):
            raise WorkloadError("a workload needs at least one non-empty prompt")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise WorkloadError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size > len(self.prompts):
            raise WorkloadError(f"batch size {self.batch_size} is larger than the {len(self.prompts)} prompts: "
                                "lower --batch-size or give more prompts with --prompts")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 2:
            raise WorkloadError(f"max new tokens must be an integer of at least 2, got {self.max_new_tokens!r}")
        if not isinstance(self.chat, bool):
            raise WorkloadError(f"chat must be true or false, got {self.chat!r}")

    @classmethod
    def default(cls, **settings) -> "Workload":
        return cls(prompts=default_prompts(), **settings)

    @classmethod
    def from_file(cls, path: str | Path, model: str | None = None, **settings) -> "Workload":
        """The workload of a JSONL prompt file; conversations are rendered with `model`'s chat template.

        Args:
            path: the prompt file (`read_prompt_lines`), or a built-in set's name (`prompt_file`).
            model: the model folder or hub id (needed where the file holds conversations).
            settings: the other fields (batch_size, max_new_tokens, sampling, seed).

        Returns:
            The Workload.
        """
        with prompt_file(path) as found:
            prompts, chat = read_prompts_jsonl(found, model)
        return cls(prompts=prompts, chat=chat, **settings)

    def batches(self) -> list[tuple[str, ...]]:
        """Prompts grouped into batches of `batch_size`; a last partial batch is dropped so every
        batch has the same shape (at least one full batch always exists)."""
        full = len(self.prompts) // self.batch_size * self.batch_size
        return [self.prompts[i:i + self.batch_size] for i in range(0, full, self.batch_size)]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["prompts"] = list(self.prompts)
        if not self.chat:  # absent, as before chat workloads existed: the fingerprints of older studies hold
            del data["chat"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Workload":
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Workload":
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def prompts_sha256(self) -> str:
        return prompts_sha256(self.prompts)

    def record(self) -> dict:
        """What a preset keeps of the workload to measure it again: the settings, the prompts' count and hash,
        and the prompts themselves up to MAX_RECORDED_PROMPT_BYTES."""
        data = {"batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens, "sampling": self.sampling,
                "seed": self.seed, "prompt_count": len(self.prompts), "prompts_sha256": self.prompts_sha256()}
        if sum(len(p.encode()) for p in self.prompts) <= MAX_RECORDED_PROMPT_BYTES:
            data["prompts"] = list(self.prompts)
        if self.chat:
            data["chat"] = True
        return data

    @classmethod
    def from_record(cls, record: dict, prompts_file: str | Path | None = None,
                    model: str | None = None) -> "Workload":
        """The workload a preset's record describes; its prompts from `prompts_file` where given (or where the
        record holds only their hash), which must be the recorded ones (WorkloadError otherwise).

        Args:
            record: a preset's `workload` (`record()`).
            prompts_file: a JSONL prompt file, or None.
            model: the preset's model, whose chat template renders a prompt file of conversations.

        Returns:
            The Workload, with the recorded prompts.
        """
        if prompts_file is not None:
            with prompt_file(prompts_file) as found:
                prompts = read_prompts_jsonl(found, model)[0]
        elif "prompts" in record:
            prompts = tuple(record["prompts"])
        else:
            raise WorkloadError(f"the preset keeps its {record['prompt_count']} prompts by their hash only (they "
                                "are large): give the prompt file it was measured with, --prompts FILE")
        if prompts_sha256(prompts) != record["prompts_sha256"]:
            source = f"the prompts of {prompts_file}" if prompts_file is not None else "the preset's prompts"
            raise WorkloadError(f"{source} ({len(prompts)}) are not the {record['prompt_count']} prompts the preset "
                                "was measured with (their SHA-256 differs): give the prompt file of its study")
        return cls(prompts=prompts, batch_size=record["batch_size"], max_new_tokens=record["max_new_tokens"],
                   sampling=record["sampling"], seed=record["seed"], chat=bool(record.get("chat", False)))


def prompts_sha256(prompts) -> str:
    """The hex SHA-256 of a list of prompts (as one JSON list)."""
    return hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
