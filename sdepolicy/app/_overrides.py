"""Agent configs from names and values: the overrides of presets and of `--set`
(`apply_overrides`), and the record a run stores of its config (`config_record`,
read back by `config_from_record`).

The options themselves, their defaults and ranges are the configs' (`sdepolicy.rl.agents`);
nothing here lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from ..rl._options import renamed_value_message
from ..rl.agents import CONFIGS, ActorCriticConfig
from ..rl.experimental import EXTENSIONS
from ._errors import ConfigError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _tuple_of(tp: Any) -> tuple[Any, int | None]:
    """The element type of a tuple annotation and its fixed length (None: any length)."""
    args = typing.get_args(tp)
    if not args:
        return Any, None
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], None
    return args[0], len(args)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp`: strings are parsed, ints widen to floats, the rest is checked."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"`{key}`: cannot take {value!r}.")
    if origin is typing.Literal:
        choices = {str(a): a for a in args}
        if value in args:
            return value
        if str(value) in choices:
            return choices[str(value)]
        raise ConfigError(f"`{key}` must be one of {', '.join(choices)}, not {value!r}.")
    if origin is tuple and isinstance(value, str | list | tuple):
        elem, length = _tuple_of(tp)
        items = value
        if isinstance(value, str):
            items = [v.strip() for v in value.replace("(", "").replace(")", "").split(",")]
            items = [v for v in items if v]
        if length is not None and len(items) != length:
            name = getattr(elem, "__name__", str(elem))
            raise ConfigError(
                f"`{key}` expects {length} values of type {name} separated by commas, "
                f"got {value!r}."
            )
        return tuple(_coerce(v, elem, key) for v in items)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
        elif isinstance(value, bool):
            pass  # a bool is an int to Python, never to a config
        elif tp is int:
            if isinstance(value, int):
                return value
            number = float(value)
            if number.is_integer():
                return int(number)
        elif tp is float:
            if isinstance(value, int | float | str):
                return float(value)
        elif isinstance(tp, type) and isinstance(value, tp):
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"`{key}` expects {name}, got {value!r}.")


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def option_names(algo: str) -> set[str]:
    """Every option an override may name for an algorithm: its config's fields and those of
    its experimental extension (`sdepolicy.rl.experimental`)."""
    cls = CONFIGS[algo]
    return set(_names(cls)) | set(_names(EXTENSIONS[cls]) if cls in EXTENSIONS else ())


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a dataclass config with fields replaced, coercing strings to the field types.

    `"3e-4"` becomes a float, `"5"` an int, `"true"`/`"false"` a bool, `"none"` None for an
    optional field, `"256,256"` a tuple; a `Literal` field checks its choices. An option of the
    config's experimental extension (`sdepolicy.rl.experimental.EXTENSIONS`:
    `critic_conservatism` for an `ERDPQEConfig`) makes the copy that extension's config.

    **Arguments:**

    - `config`: a dataclass instance (an agent config).
    - `overrides`: field name → value (typed, or a string as given on a command line).

    **Returns:**

    `dataclasses.replace(config, **coerced)` (or the extension's config with these values).

    **Raises:**

    `ConfigError` for an unknown field (listing the valid ones), a retired one (naming
    what replaced it), an old spelling of a value (naming the new one) or a value that does
    not fit.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"apply_overrides expects a dataclass instance, got {type(config)}.")
    cls = type(config)
    extension = EXTENSIONS.get(cls)
    if extension is not None and any(
        k not in _names(cls) and k in _names(extension) for k in overrides
    ):
        cls = extension
    valid = _names(cls)
    retired = getattr(cls, "retired", {})
    hints = typing.get_type_hints(cls)
    changes = {}
    for key, value in overrides.items():
        if key in retired:
            raise ConfigError(f"{cls.__name__} has no option `{key}` any more: {retired[key]}.")
        if key not in valid:
            offered = valid + sorted(set(_names(extension)) - set(valid)) if extension else valid
            close = difflib.get_close_matches(key, offered, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ConfigError(
                f"{cls.__name__} has no field `{key}`{hint}; valid: {', '.join(offered)}."
            )
        message = renamed_value_message(cls, key, value)
        if message is not None:
            raise ConfigError(message)
        changes[key] = _coerce(value, hints.get(key, Any), key)
    if cls is not type(config):
        base = {name: getattr(config, name) for name in _names(type(config))}
        return cls(**(base | changes))
    return dataclasses.replace(config, **changes)


# --- the record of a config ----------------------------------------------------------------
# A run stores its config in its checkpoint's description, and the description's hash is the
# checkpoint's fingerprint: a resumed run must give the same record for the same algorithm.
# The record keeps the layout every checkpoint has had, so that those written before the
# options were regrouped (issue 29) still resume:
# - `lr_decay` as the switch `lr_decay` and the numbers `lr_decay_every`, `lr_decay_t_max`
#   (50000 and 2000, their old defaults, when it is off);
# - `critic_backward` (now an argument of `init`) as "fused", what every run has used;
# - an experimental extension's options at their defaults when the config has none of them;
# - a renamed value in its old spelling (`q_scale` "abs", `q_weighting` "jacobian");
# - an option added since (not in `_STORED`) only where it differs from its default, so that a
#   checkpoint written before the option existed still resumes. (Its default is what the code
#   did before it; a config's defaults are the papers' and stay: a new project default goes to
#   `PROJECT_DEFAULTS`, which reaches the record as a value.)
_DECAY_OFF = (50_000, 2000)
#: The options in every record, per algorithm: the layout of the checkpoints written so far.
#: Frozen (what old checkpoints hold), not a list of today's options.
_STORED = {
    "erdpqe": frozenset(
        "actor_lr alpha batch_size critic_backward critic_conservatism critic_diversity "
        "critic_hidden critic_lr diffusion_steps ema_decay ema_every ema_start entropy eta "
        "eval_actor eval_candidates eval_temperature eval_temperature_scale gamma grad_norm "
        "hidden lcb_beta loss lr_decay lr_decay_every lr_decay_t_max max_q_backup max_q_samples "
        "num_critics q_aggregate q_scale q_weighting schedule target_aggregate tau x0_clip".split()
    ),
    "diffusion-ql": frozenset(
        "actor_lr batch_size beta_max beta_min critic_backward critic_hidden critic_lr "
        "diffusion_steps ema_decay ema_every ema_start eta eval_actor eval_candidates "
        "eval_temperature eval_temperature_scale gamma grad_norm hidden lr_decay lr_decay_every "
        "lr_decay_t_max max_q_backup max_q_samples tau".split()
    ),
    "bc": frozenset(
        "batch_size diffusion_steps ema_decay ema_every ema_start grad_norm hidden loss lr "
        "schedule x0_clip".split()
    ),
}


def _old_spelling(cls: type) -> dict[str, dict[Any, Any]]:
    """Field -> {new value: old value} for the fields with a renamed value."""
    return {
        f.name: {new: old for old, new in f.metadata.get("renamed", {}).items()}
        for f in dataclasses.fields(cls)
        if f.metadata.get("renamed")
    }


def config_record(config: Any) -> dict[str, Any]:
    """The JSON-able record of an agent config that a run's checkpoint stores and hashes
    (layout: the comment above); `config_from_record` reads it back."""
    algo = next(a for a, c in CONFIGS.items() if isinstance(config, c))
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    values = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name in _STORED[algo] or getattr(config, f.name) != defaults[f.name]
    }
    extension = next(
        (e for b, e in EXTENSIONS.items() if isinstance(config, b) and not isinstance(config, e)),
        None,
    )
    if extension is not None:  # the extension's stored options, at their defaults
        own = dataclasses.fields(extension)
        own = {f.name: f.default for f in own if f.name not in defaults and f.name in _STORED[algo]}
        values = own | values
    spellings = _old_spelling(type(config)) | (_old_spelling(extension) if extension else {})
    for name, old in spellings.items():
        if name in values:
            values[name] = old.get(values[name], values[name])
    if isinstance(config, ActorCriticConfig):
        decay = values.pop("lr_decay")
        every, t_max = decay or _DECAY_OFF
        values |= {"lr_decay": decay is not None, "lr_decay_every": every}
        values |= {"lr_decay_t_max": t_max, "critic_backward": "fused"}
    return values


def config_from_record(algo: str, record: dict[str, Any]) -> Any:
    """The config of a record written by `config_record` (in a checkpoint's description,
    `header["description"]["config"]`), by any version of the package: the experimental
    extension's config when the record sets one of its options, else the algorithm's own."""
    cls = CONFIGS[algo]
    values = dict(record)
    if isinstance(values.get("lr_decay"), bool):  # the stored layout (above)
        on = values.pop("lr_decay")
        every = values.pop("lr_decay_every", _DECAY_OFF[0])
        t_max = values.pop("lr_decay_t_max", _DECAY_OFF[1])
        values["lr_decay"] = (int(every), int(t_max)) if on else None
    elif isinstance(values.get("lr_decay"), list):
        values["lr_decay"] = tuple(values["lr_decay"])
    values.pop("critic_backward", None)
    extension = EXTENSIONS.get(cls)
    for klass in (cls, extension) if extension else (cls,):
        for field in dataclasses.fields(klass):
            renamed = field.metadata.get("renamed", {})
            if field.name in values:
                values[field.name] = renamed.get(values[field.name], values[field.name])
    if extension is not None:
        new = {f.name: f for f in dataclasses.fields(extension) if f.name not in _names(cls)}
        if all(values.get(name, f.default) == f.default for name, f in new.items()):
            values = {k: v for k, v in values.items() if k not in new}
        else:
            cls = extension
    return cls(**values)
