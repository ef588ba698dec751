"""The one error the SDE floor raises for bad input, and the checks that raise it.

Every check runs in one of two ways (`docs/sde.md`, "What is checked"):

- on values known now (Python numbers, concrete arrays, also inside a `jit` trace when the
  value is a constant): it raises `SDEInputError` at once, with the offending values;
- on traced values (under `jax.jit`, `jax.vmap`, `jax.grad`): it is attached to the result with
  `equinox.branched_error_if`, so the computation stops at run time with the same message,
  prefixed ``SDEInputError:``. JAX cannot raise a Python class out of compiled code: the
  exception is equinox's `EquinoxRuntimeError` under `eqx.filter_jit` (the samplers') and
  `jax.errors.JaxRuntimeError` under `jax.jit`, both `RuntimeError`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import SdepolicyError

#: The state dtypes the floor computes in (`docs/sde.md`, "Supported dtypes").
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class SDEInputError(SdepolicyError, ValueError):
    """Bad input to the SDE floor: times out of order, a grid that does not span $[0, T]$, a
    sampler setting that would silently return a wrong answer or NaN, a state of an
    unsupported dtype or of a shape that does not match.

    An `SdepolicyError` (defined in the low module `sdepolicy._errors`, so the floor
    imports nothing above it; a CLI prints it as one `error:` line and exits 2) and a
    `ValueError` (so `except ValueError` keeps working), with a one-line message that says
    what is wrong and what to do. Under `jit`/`vmap` the same checks stop the computation at
    run time with the same message (see the module docstring).
    """


def is_traced(*xs) -> bool:
    """Whether any leaf of `xs` is a JAX tracer (its value is not known now)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(xs))


def concrete(x) -> np.ndarray | None:
    """`x` as a float64 numpy array when its value is known now, `None` when it is traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError):  # pragma: no cover - defensive
        return None


#: One condition of a check: ``(ok, message)``, `ok` a boolean (array) that must hold
#: everywhere, computed with numpy on concrete values or with jax.numpy on traced ones.
Condition = tuple[object, str]


def require(name: str, x, conditions: Sequence[Condition], details: Callable[[], str] = str):
    """Check `conditions` on behalf of `name`; return `x` (a pytree), carrying the check.

    Concrete conditions that fail raise `SDEInputError` now (the message is
    ``f"{name}: {message}"`` followed by `details()`, e.g. the values given). When any
    condition is traced, every condition is attached to `x` by one
    `equinox.branched_error_if`: use the returned `x`, or the check is optimised away.
    """
    traced = []
    for ok, message in conditions:
        if isinstance(ok, jax.core.Tracer):
            traced.append((ok, message))
        elif not bool(np.all(np.asarray(ok))):
            extra = details()
            raise SDEInputError(f"{name}: {message}" + (f" ({extra})" if extra else ""))
    if not traced:
        return x
    bad = jnp.stack([~jnp.all(ok) for ok, _ in traced])
    msgs = [f"SDEInputError: {name}: {message}" for _, message in traced]
    return eqx.branched_error_if(x, jnp.any(bad), jnp.argmax(bad), msgs)


def xp_for(*xs):
    """`jax.numpy` when any leaf is traced, else `numpy` (cheap checks on concrete values)."""
    return jnp if is_traced(*xs) else np


def _times_details(s, t) -> Callable[[], str]:
    def details() -> str:
        got = [] if s is None else [f"s = {concrete(s)}"]
        return "got " + ", ".join([*got, f"t = {concrete(t)}"])

    return details


def time_conditions(*, s=None, t, strict: bool = True) -> list[Condition]:
    """The domain of a closed form in time: finite times; with `s`, $0 \\le s < t$ (`strict`)
    or $0 \\le s \\le t$; without, $t > 0$ (`strict`) or $t \\ge 0$."""
    xp = xp_for(s, t)
    t_arr = xp.asarray(t)
    out: list[Condition] = [(xp.isfinite(t_arr), "the time t is not finite")]
    if s is None:
        if strict:
            need = "needs t > 0 (the formula divides by the marginal variance v_t, 0 at t = 0)"
            out.append((t_arr > 0, need))
        else:
            out.append((t_arr >= 0, "needs t >= 0"))
        return out
    s_arr = xp.asarray(s)
    out.append((xp.isfinite(s_arr), "the time s is not finite"))
    out.append((s_arr >= 0, "needs s >= 0"))
    if strict:
        out.append((s_arr < t_arr, "needs s < t (s is the earlier time)"))
    else:
        out.append((s_arr <= t_arr, "needs s <= t (s is the earlier time)"))
    return out


def check_times(name: str, x=None, *, s=None, t, strict: bool = True):
    """`require` the `time_conditions`; returns `x` (default: `t`) carrying the
    check."""
    return require(
        name, t if x is None else x, time_conditions(s=s, t=t, strict=strict), _times_details(s, t)
    )


def check_state_dtype(name: str, dtype) -> None:
    """Refuse a state dtype outside `SUPPORTED_DTYPES` (a static check: free under jit)."""
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED_DTYPES:
        return
    if jnp.issubdtype(dtype, jnp.floating):
        raise SDEInputError(
            f"{name}: {dtype} states are not supported (the mean-reverting chain drifts in half "
            "precision: a mean of 0.42 instead of 0.5 after 400 bf16 posterior steps); use "
            "float32 or float64, e.g. x.astype(jnp.float32), and cast the result back if you "
            "need to."
        )
    raise SDEInputError(f"{name}: states must be real floating point, got {dtype}.")


def as_state(name: str, x):
    """A state at a public edge as a jax array: array-likes (numbers, lists, numpy arrays) are
    converted, integers and booleans become the default float; the dtype must be float32 or
    float64 (see `check_state_dtype`)."""
    if isinstance(x, jax.Array) and x.dtype in SUPPORTED_DTYPES:
        return x  # the common case, kept cheap: this runs on every eager sampler call
    if not isinstance(x, jax.Array):
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError) as e:
            raise SDEInputError(
                f"{name}: a state must be an array or array-like (a number, a nested list, a "
                f"numpy array), got {type(x).__name__}."
            ) from e
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(float)
    check_state_dtype(name, x.dtype)
    return x


def check_same_shape(name: str, **states) -> None:
    """The shape rule: the states of one closed form have one shape (no numpy broadcasting
    between them; a static check)."""
    shapes = {k: tuple(jnp.shape(v)) for k, v in states.items()}
    if len(set(shapes.values())) > 1:
        got = ", ".join(f"{k}: {v}" for k, v in shapes.items())
        raise SDEInputError(
            f"{name}: the states must have the same shape ({got}); broadcast or reshape them "
            "yourself, e.g. jnp.broadcast_to(x_0, x_t.shape), or jax.vmap over a batch."
        )


def check_broadcasts_to(name: str, what: str, shape, target) -> None:
    """`what` (of `shape`: the SDE's mean, a time array) must broadcast *to* the state's shape
    `target` without enlarging it."""
    shape, target = tuple(shape), tuple(target)
    try:
        ok = np.broadcast_shapes(shape, target) == target
    except ValueError:
        ok = False
    if not ok:
        raise SDEInputError(
            f"{name}: {what} of shape {shape} does not broadcast to the state's shape {target}; "
            "the result would not have the state's shape."
        )
