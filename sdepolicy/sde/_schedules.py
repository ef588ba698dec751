r"""Rate schedules $\theta(t)$ of a mean-reverting SDE and their integrals $\Theta(s, t)$.

Every schedule is a function of continuous time so that diffrax can integrate the SDE built on
it. The discrete schedules of the reference code are piecewise-constant schedules on the unit grid
$0, 1, \dots, T$: the discrete grid is a *view* of the same object, never a second definition.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._typing import RealScalarLike
from ._errors import SDEInputError


class AbstractSchedule(eqx.Module):
    r"""A non-negative rate $\theta(t)$ on $[0, T]$ and its integral.

    Concrete schedules implement `rate` and `cumulative`; `integral(s, t)` is
    $\Theta(t) - \Theta(s)$.

    **Attributes:**

    - `horizon`: the terminal diffusion time $T$, a Python float in a **static** field. The
        samplers build their step grids from it in Python, so under `jax.jit` (which traces
        every non-static leaf) an array-valued horizon cannot work. A subclass declares it as

        ```python
        class MySchedule(AbstractSchedule):
            rate_scale: Float[Array, ""]
            horizon: float = eqx.field(static=True)

            def rate(self, t): ...
            def cumulative(self, t): ...
        ```

        Fields keep the order the subclass declares them in, so the generated `__init__`
        takes `(rate_scale, horizon)` here, and a defaulted horizon
        (`eqx.field(static=True, default=1.0)`) may come last. A `@property` returning a
        number works too. Construction raises a clear error when `horizon` is missing, is a
        non-static field, or is not a positive finite number.
    """

    # `horizon` is deliberately not declared here (not even as an `eqx.AbstractVar`): a field
    # declared on the base class comes first in every subclass's generated `__init__`, which
    # silently swapped the arguments of `MySchedule(rate, horizon)`. __check_init__ enforces it.
    if TYPE_CHECKING:
        horizon: float

    def __check_init__(self):
        name = type(self).__name__
        if not hasattr(self, "horizon"):
            raise SDEInputError(
                f"{name}: a schedule needs `horizon: float = eqx.field(static=True)`."
            )
        fields = {f.name: f for f in dataclasses.fields(self)}
        if "horizon" in fields and not fields["horizon"].metadata.get("static", False):
            raise SDEInputError(
                f"{name}: declare `horizon: float = eqx.field(static=True)` (a static field); "
                "a non-static horizon becomes a tracer under jax.jit and the samplers cannot "
                "build their grids from it."
            )
        horizon = self.horizon
        if isinstance(horizon, jax.core.Tracer) or not isinstance(
            horizon, int | float | np.integer | np.floating
        ):
            raise SDEInputError(
                f"{name}: `horizon` must be a Python number, got {type(horizon).__name__}."
            )
        if not (math.isfinite(float(horizon)) and float(horizon) > 0):
            raise SDEInputError(f"{name}: the horizon must be positive and finite, got {horizon}.")

    @abc.abstractmethod
    def rate(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""$\theta(t)$."""

    @abc.abstractmethod
    def cumulative(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""$\Theta_t = \int_0^t \theta(u)\,du$."""

    def integral(self, s: RealScalarLike, t: RealScalarLike) -> Float[Array, ""]:
        r"""$\Theta(s, t) = \int_s^t \theta(u)\,du$ (negative when $t < s$)."""
        return self.cumulative(t) - self.cumulative(s)

    def grid(self, times: Float[ArrayLike, " n"]) -> Float[Array, " n-1"]:
        r"""The discrete view: $\Theta(t_{i-1}, t_i)$ for consecutive entries of `times`."""
        times = jnp.asarray(times)
        cum = eqx.filter_vmap(self.cumulative)(times)
        return cum[1:] - cum[:-1]

    @property
    def jump_times(self) -> np.ndarray:
        """Times where $\\theta$ is discontinuous (for `diffrax.PIDController(jump_ts=...)`)."""
        return np.zeros((0,))


class ConstantSchedule(AbstractSchedule):
    r"""$\theta(t) = c$ on $[0, T]$; $\Theta(s, t) = c\,(t - s)$."""

    value: Float[Array, ""]
    horizon: float = eqx.field(static=True)

    def __init__(self, value: RealScalarLike, horizon: float = 1.0):
        self.value = jnp.asarray(value, dtype=float)
        self.horizon = float(horizon)

    def __check_init__(self):
        if not _nonnegative(self.value):
            raise SDEInputError("ConstantSchedule: the rate must be non-negative.")

    def rate(self, t: RealScalarLike) -> Float[Array, ""]:
        return self.value

    def cumulative(self, t: RealScalarLike) -> Float[Array, ""]:
        return self.value * jnp.asarray(t, dtype=self.value.dtype)


class LinearSchedule(AbstractSchedule):
    r"""$\theta(t) = a + (b - a)\,t / T$; $\Theta_t = a t + (b - a) t^2 / (2T)$."""

    start: Float[Array, ""]
    end: Float[Array, ""]
    horizon: float = eqx.field(static=True)

    def __init__(self, start: RealScalarLike, end: RealScalarLike, horizon: float = 1.0):
        self.start = jnp.asarray(start, dtype=float)
        self.end = jnp.asarray(end, dtype=float)
        self.horizon = float(horizon)

    def __check_init__(self):
        if not (_nonnegative(self.start) and _nonnegative(self.end)):
            raise SDEInputError("LinearSchedule: the rates at both ends must be non-negative.")

    def rate(self, t: RealScalarLike) -> Float[Array, ""]:
        t = jnp.asarray(t, dtype=self.start.dtype)
        return self.start + (self.end - self.start) * t / self.horizon

    def cumulative(self, t: RealScalarLike) -> Float[Array, ""]:
        t = jnp.asarray(t, dtype=self.start.dtype)
        return self.start * t + 0.5 * (self.end - self.start) * t * t / self.horizon


class PiecewiseConstantSchedule(AbstractSchedule):
    r"""The rate is constant on each unit interval $(k, k+1]$, $k = 0, \dots, T-1$.

    `increments[k]` $= \Theta(k, k+1)$, the integrated rate of step $k$ (the reference code's
    $\theta_k\,dt$). $\Theta_t$ is the piecewise-linear interpolation of the cumulative sums, so
    every closed form of the SDE holds at any real time, and the integer grid reproduces the
    discrete chain exactly. Outside $[0, T]$ the first/last rate is extended.
    """

    increments: Float[Array, " T"]
    horizon: float = eqx.field(static=True)

    def __init__(self, increments: Float[ArrayLike, " T"]):
        increments = jnp.asarray(increments)
        if not jnp.issubdtype(increments.dtype, jnp.floating):
            increments = increments.astype(float)
        if increments.ndim != 1 or increments.shape[0] < 1:
            raise SDEInputError(
                "PiecewiseConstantSchedule: `increments` must be a non-empty 1-D array."
            )
        if not _nonnegative(increments):
            raise SDEInputError("PiecewiseConstantSchedule: increments must be non-negative.")
        self.increments = increments
        self.horizon = float(increments.shape[0])

    @property
    def num_steps(self) -> int:
        return self.increments.shape[0]

    def rate(self, t: RealScalarLike) -> Float[Array, ""]:
        t = jnp.asarray(t, dtype=self.increments.dtype)
        # Left-continuous: on (k, k+1] the rate is increments[k].
        k = jnp.clip(jnp.ceil(t) - 1, 0, self.num_steps - 1).astype(jnp.int32)
        return self.increments[k]

    def cumulative(self, t: RealScalarLike) -> Float[Array, ""]:
        t = jnp.asarray(t, dtype=self.increments.dtype)
        zero = jnp.zeros((1,), self.increments.dtype)
        knots = jnp.concatenate([zero, jnp.cumsum(self.increments)])
        k = jnp.clip(jnp.floor(t), 0, self.num_steps - 1)
        i = k.astype(jnp.int32)
        return knots[i] + (t - k) * self.increments[i]

    @property
    def jump_times(self) -> np.ndarray:
        return np.arange(1, self.num_steps, dtype=float)


# --- the discrete schedules of the reference code -------------------------------------------


def normalised_schedule(
    thetas: Float[ArrayLike, " T"], terminal_decay: float = 1e-3
) -> PiecewiseConstantSchedule:
    r"""The reference code's step-size rule applied to per-step rates $\theta_k$.

    Chooses $dt = -\ln(\text{terminal\_decay}) / \sum_k \theta_k$ so that
    $e^{-\Theta_T} = \text{terminal\_decay}$, and returns increments $\theta_k\,dt$.
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    if not 0 < terminal_decay < 1:
        raise SDEInputError("terminal_decay must lie in (0, 1).")
    if np.any(thetas < 0) or thetas.sum() <= 0:
        raise SDEInputError("thetas must be non-negative with a positive sum.")
    with np.errstate(over="ignore"):
        dt = -math.log(terminal_decay) / thetas.sum()
    # A (sub)normal-tiny sum overflows dt to inf and the increments to inf/nan.
    if not (np.isfinite(dt) and np.all(np.isfinite(thetas * dt))):
        raise SDEInputError("thetas are too small to normalise (the step size overflows).")
    return PiecewiseConstantSchedule(jnp.asarray(thetas * dt))


def cosine_thetas(num_steps: int, offset: float = 0.008) -> np.ndarray:
    r"""Per-step rates of the reference code's cosine schedule (docs/method.md §2).

    $\bar\alpha(x) = \cos^2\!\big(\tfrac{x/(T+1) + s}{1 + s}\tfrac{\pi}{2}\big) /
    \cos^2\!\big(\tfrac{s}{1+s}\tfrac{\pi}{2}\big)$ on $x = 0..T+1$ and
    $\theta_k = 1 - \bar\alpha(k + 1)$, $k = 0..T-1$.
    """
    _check_steps(num_steps)
    x = np.arange(num_steps + 2, dtype=np.float64)
    f = np.cos(((x / (num_steps + 1)) + offset) / (1 + offset) * np.pi * 0.5) ** 2
    alphas_cumprod = f / f[0]
    return 1.0 - alphas_cumprod[1 : num_steps + 1]


def cosine_schedule(
    num_steps: int = 5, offset: float = 0.008, terminal_decay: float = 1e-3
) -> PiecewiseConstantSchedule:
    """The ER-DP-QE default: cosine rates, normalised so $e^{-\\Theta_T}$ = `terminal_decay`."""
    return normalised_schedule(cosine_thetas(num_steps, offset), terminal_decay)


def linear_theta_schedule(
    num_steps: int = 5, terminal_decay: float = 1e-3
) -> PiecewiseConstantSchedule:
    r"""Rates linearly spaced from $10^{-4}$ to $2\cdot10^{-2}$ (times $1000/T$, the IR-SDE
    convention), normalised. Only the ratio 1:200 survives the normalisation."""
    _check_steps(num_steps)
    scale = 1000.0 / num_steps
    return normalised_schedule(np.linspace(scale * 1e-4, scale * 2e-2, num_steps), terminal_decay)


def constant_theta_schedule(
    num_steps: int = 5, terminal_decay: float = 1e-3
) -> PiecewiseConstantSchedule:
    """Equal rates on every step, normalised: $\\Theta(k, k+1) = -\\ln(\\text{terminal})/T$."""
    _check_steps(num_steps)
    return normalised_schedule(np.ones(num_steps), terminal_decay)


def ddpm_schedule(betas: Float[ArrayLike, " T"]) -> PiecewiseConstantSchedule:
    r"""DDPM with noise levels $\beta_i$ as a mean-reverting SDE ($\mu = 0$, $\lambda = 1$):
    $\Theta(i-1, i) = -\tfrac12 \ln(1 - \beta_i)$ (see `proofs/vp_ddpm.md`)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or np.any(betas <= 0) or np.any(betas >= 1):
        raise SDEInputError("ddpm_schedule: betas must be a 1-D array with entries in (0, 1).")
    return PiecewiseConstantSchedule(jnp.asarray(-0.5 * np.log1p(-betas)))


def vp_betas(num_steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    r"""Diffusion-QL's VP betas: $\beta_i = 1 - \exp(-\beta_{min}/T - \tfrac12(\beta_{max} -
    \beta_{min})(2i - 1)/T^2)$, $i = 1..T$."""
    _check_steps(num_steps)
    i = np.arange(1, num_steps + 1, dtype=np.float64)
    T = float(num_steps)
    return 1.0 - np.exp(-beta_min / T - 0.5 * (beta_max - beta_min) * (2 * i - 1) / T**2)


def vp_schedule(
    num_steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0
) -> PiecewiseConstantSchedule:
    """Diffusion-QL's discrete VP schedule as a piecewise-constant mean-reverting schedule."""
    return ddpm_schedule(vp_betas(num_steps, beta_min, beta_max))


def _nonnegative(x) -> bool:
    """True when `x` is non-negative, or when it is traced and cannot be checked."""
    if isinstance(x, jax.core.Tracer):
        return True
    return bool(np.all(np.asarray(x) >= 0))


def _check_steps(num_steps: int) -> None:
    if int(num_steps) != num_steps or num_steps < 1:
        raise SDEInputError(f"num_steps must be a positive integer, got {num_steps!r}.")


# --- the schedule contract ------------------------------------------------------------------


def contract_violation(schedule: AbstractSchedule, times) -> str | None:
    r"""What breaks the contract of a schedule at `times` (in $[0, T]$), or `None`.

    The contract: $\theta(t) \ge 0$ and finite, $\Theta_0 = 0$, $\Theta$ non-decreasing (up to
    rounding). `rate` and `cumulative` are evaluated eagerly (under
    `jax.ensure_compile_time_eval`, so this works inside a `jit` trace too) and `vmap`ped over
    `times`.
    """
    times = np.unique(np.concatenate([[0.0], np.asarray(times, dtype=np.float64).reshape(-1)]))
    with jax.ensure_compile_time_eval():
        ts = jnp.asarray(times)
        rate = np.asarray(jax.vmap(schedule.rate)(ts), dtype=np.float64)
        cum = np.asarray(jax.vmap(schedule.cumulative)(ts), dtype=np.float64)
    eps = float(jnp.finfo(jnp.result_type(float)).eps)
    if not np.all(np.isfinite(rate)):
        i = int(np.argmin(np.isfinite(rate)))
        return f"the rate is not finite at t = {times[i]:.6g}"
    if np.any(rate < 0):
        i = int(np.argmin(rate))
        return (
            f"the rate is negative at t = {times[i]:.6g} (theta = {rate[i]:.6g}); a "
            "mean-reverting SDE needs theta(t) >= 0 on [0, T] (a negative rate gives negative "
            "variances and NaN diffusions)"
        )
    if not np.all(np.isfinite(cum)):
        i = int(np.argmin(np.isfinite(cum)))
        return f"cumulative is not finite at t = {times[i]:.6g}"
    scale = 1.0 + float(np.max(np.abs(cum)))
    if abs(cum[0]) > 16 * eps * scale:
        return f"cumulative(0) = {cum[0]:.6g}, but Theta_0 = int_0^0 theta must be 0"
    drops = np.diff(cum)
    if np.any(drops < -16 * eps * scale):
        i = int(np.argmin(drops))
        return (
            f"cumulative decreases between t = {times[i]:.6g} and {times[i + 1]:.6g} "
            f"({cum[i]:.6g} -> {cum[i + 1]:.6g}); Theta must be non-decreasing (theta >= 0)"
        )
    return None


def contract_probe_times(schedule: AbstractSchedule, num: int = 129) -> np.ndarray:
    """A uniform grid of $[0, T]$ with the rate's jumps and their one-sided neighbours."""
    horizon = float(schedule.horizon)
    jumps = np.asarray(schedule.jump_times, dtype=np.float64).reshape(-1)
    side = 1e-9 * max(1.0, horizon)
    extra = np.concatenate([jumps - side, jumps + side]) if jumps.size else np.zeros((0,))
    grid = np.concatenate([np.linspace(0.0, horizon, num), extra])
    return grid[(grid >= 0) & (grid <= horizon)]


def check_schedule_contract(schedule: AbstractSchedule, name: str = "MeanRevertingSDE") -> None:
    r"""Raise `SDEInputError` when a schedule visibly breaks its contract.

    The package's own schedules check their parameters when built, so this probes only other
    schedules, on `contract_probe_times` (129 points and the jumps), and only when their
    arrays are concrete (a schedule built from traced arrays cannot be evaluated now). A
    schedule whose `rate` or `cumulative` cannot be evaluated on a batch of times is left to
    fail where it is used. `sdepolicy.testing.check_schedule` checks the same contract on a
    denser grid.
    """
    if type(schedule) in (ConstantSchedule, LinearSchedule, PiecewiseConstantSchedule):
        return
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(schedule)):
        return
    try:
        problem = contract_violation(schedule, contract_probe_times(schedule))
    except Exception:  # noqa: BLE001 - the probe is best effort; use will show the error
        return
    if problem is not None:
        raise SDEInputError(f"{name}: {type(schedule).__name__}: {problem}.")
