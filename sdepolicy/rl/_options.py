"""Config options declared once: a field's default, its range and its old spellings stand beside
it, and one checker reads them.

    hidden: int = option(256, Ints(1, 8192))
    gamma: float = option(0.99, Reals(0.0, 1.0, high_open=True))
    loss: LossKind = "mll"                       # a Literal: its choices are its type

`check_options` (called by every agent config's `__post_init__`) checks each field against
what its declaration allows: a `Literal` against its choices, a number against its range (an
integer field needs an `int`, a float field a finite number), a tuple element by element. A new
option is therefore one line in its config class (and its line in the docstring and in
docs/method.md): nothing else lists the fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from ._errors import ConfigError, check_literal_fields

#: Upper bound of step counts (`ema_start`, `lr_decay`): far past any run, well inside the
#: int32 step counter that jitted code compares them with.
MAX_STEPS = 10**9


@dataclasses.dataclass(frozen=True)
class Ints:
    """The integers in `[low, high]`."""

    low: int
    high: int

    def __contains__(self, value: Any) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"an integer in [{self.low}, {_int(self.high)}]"


@dataclasses.dataclass(frozen=True)
class Reals:
    """The finite numbers from `low` to `high` (None: unbounded on that side), each end closed
    unless said open; `note` adds what a special value means (`"0: no clipping"`)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = (
                f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}"
            )
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = "any number"
        return f"finite and {text}" + (f" ({self.note})" if self.note else "")


Range = Ints | Reals


def _int(n: int) -> str:
    """`n` as Python writes a large literal (`1_000_000_000`)."""
    return f"{n:_}" if n >= 10_000 else str(n)


def option(
    default: Any,
    values: Range | tuple[Range, ...] | None = None,
    *,
    renamed: dict[str, str] | None = None,
) -> Any:
    """A config field with what it allows, read by `check_options`.

    **Arguments:**

    - `default`: the field's default.
    - `values`: its range (`Ints`, `Reals`), or one range per element of a tuple field.
      Every `int` and `float` field has one (a test checks); `Literal` and `bool` fields need
      none (their type says it).
    - `renamed`: for a `Literal` field, old value -> new value: an old spelling is refused
      with a message that names the new one.
    """
    metadata: dict[str, Any] = {}
    if values is not None:
        metadata["values"] = values
    if renamed:
        metadata["renamed"] = dict(renamed)
    return dataclasses.field(default=default, metadata=metadata)


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(tp)
    )


def renamed_value_message(cls: type, name: str, value: Any) -> str | None:
    """The message for an old spelling of a `Literal` field's value (`option(renamed=...)`),
    None when `value` is not one."""
    for field in dataclasses.fields(cls):
        if field.name == name:
            new = field.metadata.get("renamed", {}).get(value)
            if new is not None:
                return f"{cls.__name__}: {name}={value!r} is now {name}={new!r} (the same option)."
    return None


def check_options(config: Any) -> None:
    """Check every field of a config against its declaration (module docstring).

    Called by the agent configs' `__post_init__`, so a bad `--set` value is refused when the
    config is built, before any data is read or code compiled.

    **Raises:**

    `ConfigError` naming the first field that is out of range, its value and what is
    allowed.
    """
    name = type(config).__name__
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        message = renamed_value_message(type(config), field.name, value)
        if message is not None:
            raise ConfigError(message)
    check_literal_fields(config)
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        values = field.metadata.get("values")
        value = getattr(config, field.name)
        if values is None or (value is None and _allows_none(hints.get(field.name))):
            continue
        if isinstance(values, tuple):
            ok = isinstance(value, tuple) and len(value) == len(values)
            ok = ok and all(v in r for v, r in zip(value, values, strict=True))
            each = set(map(str, values))
            allowed = f"a tuple of {len(values)} " + (
                f"(each {each.pop()})"
                if len(each) == 1
                else "(" + "; ".join(map(str, values)) + ")"
            )
        else:
            ok, allowed = value in values, str(values)
        if _allows_none(hints.get(field.name)):
            allowed = "None or " + allowed
        if not ok:
            raise ConfigError(f"{name}: {field.name} must be {allowed}, got {value!r}.")
