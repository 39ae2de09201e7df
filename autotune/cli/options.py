"""Click options made from the settings' one declaration (autotune.config.settings.OPTIONS): a flag, its
default and its help are written once, there; a command may only say that an option is required or give it
a help of its own."""

from __future__ import annotations

import click

from autotune.config.settings import OPTIONS, Option, check_study_name
from autotune.errors import InputError


def click_kwargs(option: Option) -> dict:
    """click.option keyword arguments for a declared option."""
    kwargs = {"help": option.help, "required": option.required}
    kind = option.kind
    if kind == "flag":
        return {**kwargs, "is_flag": True}
    if kind == "switch":
        return {**kwargs, "default": option.default, "show_default": True}
    if isinstance(kind, tuple):
        kwargs["type"] = click.Choice(list(kind))
    elif kind in ("int", "float"):
        kwargs["type"] = {"int": int, "float": float}[kind]
    elif kind == "path":
        kwargs["type"] = click.Path(dir_okay=False)
    elif kind == "target":
        kwargs["type"] = click.Path()
    if option.default is not None:
        kwargs.update(default=option.default, show_default=True)
    return kwargs


def option(name: str, **overrides):
    """The click option of the declared setting `name` (`overrides`: `required`, `help`)."""
    declared = OPTIONS[name]
    unknown = set(overrides) - {"required", "help"}
    if unknown:
        raise TypeError(f"an option's default and kind are declared once, in autotune.config.settings; "
                        f"{sorted(unknown)} cannot be changed per command")
    checks = {"study_name": plain_study_name}
    if name in checks:
        overrides = {**overrides, "callback": checks[name]}
    return click.option(*declared.flags, name, **{**click_kwargs(declared), **overrides})


def plain_study_name(ctx, param, value):
    """--study is checked before a command runs: a name that is not plain is bad input (exit 2)."""
    if value is None:
        return value
    try:
        return check_study_name(value)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


def options(*names: str):
    """A decorator applying the declared options `names`, in that order on the command's help."""
    def apply(command):
        for name in reversed(names):
            command = option(name)(command)
        return command
    return apply
