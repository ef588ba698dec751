"""The command line of a run, derived from `RunSpec`: one flag per field, its kind,
choices and default from the field's annotation, its help from the class docstring's bullet,
so a field is declared once."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any

from ._errors import SdepolicyError
from ._runner import RunSpec


def _field_help(cls: type) -> dict[str, str]:
    """`{field: text}` from the docstring's bullets "- `field`: text" (continued on the
    indented lines below it), Markdown backticks dropped."""
    doc = cls.__doc__ or ""
    bullets = re.finditer(r"^\s*- `(\w+)`: (.*?)(?=^\s*- `|^\s*$|\Z)", doc, re.M | re.S)
    return {m.group(1): " ".join(m.group(2).replace("`", "").split()) for m in bullets}


def _without_none(tp: Any) -> Any:
    """`X` for an annotation `X | None`, else the annotation itself; the tuple of
    `tuple[str, ...] | str | None` (a field that also takes one item as a string from Python)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        tuples = [a for a in args if typing.get_origin(a) is tuple]
        if len(tuples) == 1 and all(a is str for a in args if a is not tuples[0]):
            return tuples[0]
    return tp


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every field of `RunSpec` to `parser`: `--field-name` (or the
    field's `flag` metadata), `choices` for a `Literal`, `nargs="+"` for a tuple, a switch for
    a bool (`--no-field` when it defaults to True), `FIELD=VALUE` strings appended for the
    agent overrides; the default is the field's. `run_spec_from_args` reads them back."""
    hints = typing.get_type_hints(RunSpec)
    helps = _field_help(RunSpec)
    for field in dataclasses.fields(RunSpec):
        tp = _without_none(hints[field.name])
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        default = (
            field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else field.default
        )
        flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": field.name, "help": helps.get(field.name)}
        if tp is bool:
            if default:
                flag = field.metadata.get("flag", "--no-" + field.name.replace("_", "-"))
                kwargs.update(action="store_false", default=True)
                # The flag turns the field off: say so before the field's own description.
                if kwargs["help"]:
                    kwargs["help"] = f"turn off what is on by default: {kwargs['help']}"
            else:
                kwargs.update(action="store_true", default=False)
        elif origin is dict:
            kwargs.update(action="append", default=[], metavar=field.metadata.get("metavar"))
        elif origin is tuple:
            kwargs.update(nargs="+", type=args[0], default=default)
        elif origin is typing.Literal:
            kwargs.update(choices=list(args), default=default)
        else:
            kwargs.update(type=tp, default=default)
        parser.add_argument(flag, **kwargs)


def run_spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The `RunSpec` of arguments parsed by a parser built with `add_run_arguments`.

    **Raises:**

    `SdepolicyError` for a `--set` item that is not `FIELD=VALUE`, or that names a field
    an earlier one did (which would silently win); its value is coerced to the config field's
    type, and checked, when the run builds its config.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunSpec)}
    overrides = {}
    for item in values["overrides"]:
        if "=" not in item:
            raise SdepolicyError(f"--set expects FIELD=VALUE, got {item!r}.")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in overrides:
            raise SdepolicyError(
                f"--set {key} is given twice ({key}={overrides[key]}, {key}={value}): give it once."
            )
        overrides[key] = value
    values["overrides"] = overrides
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return RunSpec(**values)
