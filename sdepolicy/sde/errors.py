"""The one error the SDE floor raises for bad input, and the eager checks that raise it."""

from __future__ import annotations

import jax
import numpy as np

from .._errors import SdepolicyError


class SDEInputError(SdepolicyError, ValueError):
    """Bad input to the SDE floor: times out of order, a grid that does not span $[0, T]$, a
    sampler setting that would silently return a wrong answer or NaN.

    An [`SdepolicyError`][] (defined in the low module `sdepolicy._errors`, so the floor
    imports nothing above it; a CLI prints it as one `error:` line and exits 2) and a
    `ValueError` (so `except ValueError` keeps working), with a one-line message that says
    what is wrong and what to do.
    """


def concrete(x) -> np.ndarray | None:
    """`x` as a numpy array when its value is known now, `None` when it is traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError):  # pragma: no cover - defensive
        return None


def check_times(name: str, *, s=None, t, strict: bool = True) -> None:
    """Raise [`SDEInputError`][] when concrete times break the domain of a closed form.

    With `s`: $0 \\le s < t$ (`strict`) or $0 \\le s \\le t$. Without: $t > 0$ (`strict`) or
    $t \\ge 0$. Traced values pass unchecked: under `jit` the check would need a runtime
    branch on the hot path.
    """
    t_val = concrete(t)
    s_val = None if s is None else concrete(s)
    if t_val is not None and not np.all(np.isfinite(t_val)):
        raise SDEInputError(f"{name}: the time t = {t_val} is not finite.")
    if s is None:
        if t_val is None:
            return
        bad = np.any(t_val <= 0) if strict else np.any(t_val < 0)
        if bad:
            need = "t > 0 (the formula divides by the marginal variance v_t, 0 at t = 0)"
            raise SDEInputError(f"{name}: needs {need if strict else 't >= 0'}, got t = {t_val}.")
        return
    if s_val is not None and np.any(s_val < 0):
        raise SDEInputError(f"{name}: needs s >= 0, got s = {s_val}.")
    if s_val is None or t_val is None:
        return
    bad = np.any(s_val >= t_val) if strict else np.any(s_val > t_val)
    if bad:
        order = "s < t" if strict else "s <= t"
        raise SDEInputError(
            f"{name}: needs {order} (s is the earlier time), got s = {s_val}, t = {t_val}."
        )
