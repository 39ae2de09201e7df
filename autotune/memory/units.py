"""Memory amounts as users write them (`--vram 24GB`, `24GiB`, `0.5`) and as autotune prints them."""

from __future__ import annotations

import re

from autotune.errors import InputError

KiB, MiB, GiB = 2**10, 2**20, 2**30

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": KiB, "mib": MiB, "gib": GiB, "tib": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
BUDGET_FORMS = ("an amount with a unit: 24GB, 24000MB (powers of 10), 24GiB, 512MiB (powers of 2); "
                "or a fraction of the device's memory between 0 and 1, like 0.5")


def parse_budget(text: str, total_bytes: int | None = None) -> int:
    """A memory budget in bytes from `24GB` (10^9), `24GiB` (2^30), `24000MB`, `512MiB`, ... or from a
    fraction of `total_bytes` (`0.5`: half of the card, or of the RAM on CPU).

    Raises InputError naming the accepted forms for anything else (`24`, `-1GB`, `1.5`, `abc`)."""
    text = str(text)
    match = _BUDGET.match(text)
    if not match:
        raise InputError(f"memory budget {text!r} is not understood: give {BUDGET_FORMS}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not unit:
        if not 0 < number <= 1:
            hint = f" (did you mean {match.group(1)}GB or {match.group(1)}GiB?)" if number > 1 else ""
            raise InputError(f"memory budget {text!r} has no unit, so it would be a fraction of the device's "
                             f"memory, which must be between 0 and 1{hint}: give {BUDGET_FORMS}")
        if total_bytes is None:
            raise InputError(f"memory budget {text!r} is a fraction of the device's memory, which is not known "
                             "here: give an amount with a unit instead, like 24GB or 24GiB")
        return int(number * total_bytes)
    if unit not in _UNITS:
        raise InputError(f"memory budget {text!r} has an unknown unit {match.group(2)!r}: give {BUDGET_FORMS}")
    value = int(round(number * _UNITS[unit]))
    if value <= 0:
        raise InputError(f"memory budget {text!r} must be more than zero: give {BUDGET_FORMS}")
    return value


def is_fraction(text: str) -> bool:
    """Whether `text` is a budget given as a fraction of the device's memory (a plain number in (0, 1])."""
    match = _BUDGET.match(str(text))
    return bool(match) and not match.group(2) and 0 < float(match.group(1)) <= 1


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / MiB:.1f} MiB"
