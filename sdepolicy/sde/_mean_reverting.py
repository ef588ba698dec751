r"""The mean-reverting SDE of IR-SDE / ER-DP-QE, with every closed form it admits.

$$dx = \theta(t)\,(\mu - x)\,dt + \sigma(t)\,dW, \qquad \sigma(t)^2 = 2\lambda^2\theta(t).$$

Derivations: `proofs/transition.md`, `proofs/posterior.md`, `proofs/score_and_noise.md`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._typing import RealScalarLike
from ._errors import (
    SDEInputError,
    _times_details,
    as_state,
    check_broadcasts_to,
    check_same_shape,
    check_times,
    concrete,
    require,
    time_conditions,
    xp_for,
)
from ._gaussian import DiagonalGaussian
from ._schedules import AbstractSchedule, check_schedule_contract

#: A state at a public edge: a jax or numpy array, a Python number, or a (nested) list; it is
#: converted with `jnp.asarray` (integers to the default float).
StateLike = Float[ArrayLike, "*shape"] | Sequence[Any]
#: The second state of a closed form: its shape is checked against the first by the floor itself
#: (an `SDEInputError` that says what to do), not left to the annotation.
OtherStateLike = Float[ArrayLike, "..."] | Sequence[Any]

#: A score (or any vector field a solver or sampler calls) in diffrax's calling convention:
#: ``f(t, x, args) -> array like x``, with `args` whatever the sampler was given (default
#: `None`; README, "Calling convention").
ScoreFn = Callable[[Float[Array, ""], Float[Array, "*shape"], Any], Float[Array, "*shape"]]


def _as_float_array(x) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _tol(dtype, *scales):
    """Rounding allowance for $\\Theta(s, t) \\ge 0$ computed as a difference of cumulatives."""
    eps = float(jnp.finfo(dtype).eps)
    return 16 * eps * (1 + sum(abs(v) for v in scales))


class MeanRevertingSDE(eqx.Module):
    r"""$dx = \theta(t)(\mu - x)\,dt + \sqrt{2\lambda^2\theta(t)}\,dW$.

    **Arguments:**

    - `schedule`: the rate $\theta(t)$ (an `AbstractSchedule`). Its contract
        ($\theta \ge 0$, $\Theta_0 = 0$, $\Theta$ non-decreasing) is probed at construction
        when its arrays are concrete (`check_schedule_contract`): a schedule that breaks
        it raises `SDEInputError` (it would give negative variances and NaN diffusions).
    - `mean`: $\mu$, an array that broadcasts *to* the state's shape (it may differ per
        sample, e.g. conditioned on an RL state). Default 0.
    - `stationary_std`: $\lambda > 0$; $\lambda^2$ is the stationary variance. Default 1.

    With $\mu = 0$, $\lambda = 1$ this is the VP-SDE with $\beta(t) = 2\theta(t)$.
    Times must satisfy $0 \le s \le t$ for the transition and $0 \le s < t$ for the
    posterior; they are checked on concrete values (an `SDEInputError` now) and on traced
    ones (a run-time error with the same message under `jit`/`vmap`; `docs/sde.md`).

    The closed forms take their states positionally and their times keyword-only, so the
    earlier time cannot be confused with the later state:
    `sde.marginal(x_0, t=t)`, `sde.transition(x_s, s=s, t=t)`,
    `sde.posterior(x_t, x_0, s=s, t=t)`, `sde.x0_from_noise(x_t, eps, t=t)`. Functions of time
    alone (`decay(s, t)`, `marginal_variance(t)`, ...) stay positional, and the vector fields
    (`drift`, `diffusion`, the terms' fields) are diffrax's `f(t, y, args)` (README, "Calling
    convention"). States are float32 or float64 arrays or array-likes; the states of one
    closed form have one shape, and the result has that shape and dtype.
    """

    schedule: AbstractSchedule
    mean: Float[Array, "*mshape"]
    stationary_std: Float[Array, ""]

    def __init__(
        self,
        schedule: AbstractSchedule,
        mean: Float[ArrayLike, "*mshape"] = 0.0,
        stationary_std: RealScalarLike = 1.0,
    ):
        self.schedule = schedule
        self.mean = _as_float_array(mean)
        self.stationary_std = _as_float_array(stationary_std)

    def __check_init__(self):
        std = self.stationary_std
        if jnp.ndim(std) != 0:
            raise SDEInputError("MeanRevertingSDE: `stationary_std` must be a scalar.")
        try:
            ok = float(std) > 0
        except Exception:  # traced: cannot check
            ok = True
        if not ok:
            raise SDEInputError("MeanRevertingSDE: `stationary_std` must be positive.")
        check_schedule_contract(self.schedule, "MeanRevertingSDE")

    @property
    def horizon(self) -> float:
        return self.schedule.horizon

    # --- coefficients ------------------------------------------------------------------------

    def decay(self, s: RealScalarLike, t: RealScalarLike) -> Float[Array, ""]:
        r"""$e^{-\Theta(s, t)}$: how much of $x_s - \mu$ survives until $t$."""
        return jnp.exp(-self.schedule.integral(s, t))

    def transition_variance(self, s: RealScalarLike, t: RealScalarLike) -> Float[Array, ""]:
        r"""$\lambda^2 (1 - e^{-2\Theta(s,t)})$."""
        return self.stationary_std**2 * -jnp.expm1(-2 * self.schedule.integral(s, t))

    def marginal_variance(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""$v_t = \lambda^2(1 - e^{-2\Theta_t})$."""
        return self.transition_variance(0.0, t)

    def _posterior_coefficients(self, s, t, name: str | None = None):
        # Unchecked unless `name` is given (the samplers' loops check their grid once).
        th_s = self.schedule.cumulative(s)
        th_t = self.schedule.cumulative(t)
        th_st = th_t - th_s
        if name is not None:
            xp = xp_for(s, t, th_s, th_t)
            tol = _tol(th_t.dtype, 1.0)
            conditions = time_conditions(s=s, t=t, strict=True) + [
                (
                    xp.asarray(th_st) >= -tol * (1 + xp.abs(xp.asarray(th_t))),
                    "Theta(s, t) < 0: the schedule's rate is negative between s and t (it must "
                    "be >= 0)",
                ),
                (
                    xp.asarray(th_t) > 0,
                    "Theta_t = 0, so v_t = 0 and x_t = x_0: the posterior divides by v_t; the "
                    "schedule's rate is zero on [0, t] (e.g. a leading zero increment of a "
                    "PiecewiseConstantSchedule): take t where Theta_t > 0",
                ),
            ]
            th_s, th_t, th_st = require(name, (th_s, th_t, th_st), conditions, _times_details(s, t))
        th_st = jnp.maximum(th_st, 0)
        one_s = -jnp.expm1(-2 * th_s)
        one_st = -jnp.expm1(-2 * th_st)
        one_t = -jnp.expm1(-2 * th_t)
        coef_t = one_s * jnp.exp(-th_st) / one_t
        coef_0 = one_st * jnp.exp(-th_s) / one_t
        var = self.stationary_std**2 * one_s * one_st / one_t
        return coef_t, coef_0, var

    def posterior_coefficients(
        self, s: RealScalarLike, t: RealScalarLike
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
        r"""$(c_t, c_0, \tilde\beta)$ with $\tilde\mu - \mu = c_t (x_t - \mu) + c_0 (x_0 - \mu)$.

        $c_t = (1 - e^{-2\Theta_s}) e^{-\Theta(s,t)} / (1 - e^{-2\Theta_t})$,
        $c_0 = (1 - e^{-2\Theta(s,t)}) e^{-\Theta_s} / (1 - e^{-2\Theta_t})$,
        $\tilde\beta = \lambda^2 (1 - e^{-2\Theta_s})(1 - e^{-2\Theta(s,t)})
        / (1 - e^{-2\Theta_t})$. Needs finite $0 \le s < t$ with $\Theta_t > 0$ (checked on
        concrete and on traced values, see the class docstring).
        """
        return self._posterior_coefficients(s, t, "posterior_coefficients")

    def theta(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""The rate $\theta(t)$."""
        return self.schedule.rate(t)

    def sigma(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""The diffusion coefficient $\sigma(t) = \lambda\sqrt{2\theta(t)}$."""
        return self.stationary_std * jnp.sqrt(2 * self.schedule.rate(t))

    # --- helpers of the public edges ---------------------------------------------------------

    def _state(self, name: str, x, *times):
        """A state at a public edge: converted, of a supported dtype; the mean and the times
        broadcast to its shape."""
        x = as_state(name, x)
        check_broadcasts_to(name, "the SDE's mean", jnp.shape(self.mean), x.shape)
        for time in times:
            check_broadcasts_to(name, "a time", jnp.shape(time), x.shape)
        return x

    def _states(self, name: str, a, b, names: tuple[str, str], *times):
        a, b = self._state(name, a, *times), self._state(name, b)
        check_same_shape(name, **{names[0]: a, names[1]: b})
        if a.dtype != b.dtype:
            b = b.astype(a.dtype)  # the first state's dtype is the result's
        return a, b

    # --- closed-form laws --------------------------------------------------------------------

    def transition(
        self, x_s: StateLike, *, s: RealScalarLike, t: RealScalarLike
    ) -> DiagonalGaussian:
        r"""$p(x_t \mid x_s) = \mathcal N(\mu + (x_s - \mu)e^{-\Theta(s,t)},\ \lambda^2(1 -
        e^{-2\Theta(s,t)}) I)$ for $0 \le s \le t$ ($s = t$ is the point mass at $x_s$).

        Raises `SDEInputError` when the times break $0 \le s \le t$ or are not finite, or
        when $\Theta(s, t) < 0$ (the formula would return a negative variance); on traced
        values the same checks stop the computation at run time.
        """
        return self._transition(x_s, s, t, "transition")

    def _transition(self, x_s, s, t, name: str) -> DiagonalGaussian:
        x_s = self._state(name, x_s, s, t)
        dt = x_s.dtype
        integral = self.schedule.integral(s, t)
        xp = xp_for(s, t, integral)
        conditions = time_conditions(s=s, t=t, strict=False) + [
            (
                xp.asarray(integral) >= -_tol(integral.dtype, 1.0),
                "Theta(s, t) < 0: the schedule's rate is negative between s and t (it must be "
                ">= 0)",
            )
        ]
        integral = require(name, integral, conditions, _times_details(s, t))
        integral = jnp.maximum(integral, 0)
        mu = self.mean.astype(dt)
        mean = mu + (x_s - mu) * jnp.exp(-integral).astype(dt)
        var = self.stationary_std**2 * -jnp.expm1(-2 * integral)
        return DiagonalGaussian(mean, var.astype(dt))

    def marginal(self, x_0: OtherStateLike, *, t: RealScalarLike) -> DiagonalGaussian:
        r"""$p(x_t \mid x_0)$: the transition from time 0."""
        return self._transition(x_0, 0.0, t, "marginal")

    def prior(self, shape: int | Sequence[int] = (), dtype=None) -> DiagonalGaussian:
        r"""The stationary law $\mathcal N(\mu, \lambda^2 I)$ with the given shape (an int or a
        sequence of ints), where the reverse samplers start."""
        shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
        dtype = dtype or jnp.result_type(self.mean)
        mean = jnp.broadcast_to(self.mean, shape).astype(dtype)
        return DiagonalGaussian(mean, (self.stationary_std**2).astype(dtype))

    def _posterior(self, x_t, x_0, s, t, name: str | None = None) -> DiagonalGaussian:
        dt = x_t.dtype
        coef_t, coef_0, var = self._posterior_coefficients(s, t, name)
        mu = self.mean.astype(dt)
        mean = mu + coef_t.astype(dt) * (x_t - mu) + coef_0.astype(dt) * (x_0 - mu)
        return DiagonalGaussian(mean, var.astype(dt))

    def posterior(
        self,
        x_t: StateLike,
        x_0: OtherStateLike,
        *,
        s: RealScalarLike,
        t: RealScalarLike,
    ) -> DiagonalGaussian:
        r"""$p(x_s \mid x_t, x_0) = \mathcal N(\tilde\mu, \tilde\beta I)$ for $0 \le s < t$.

        See `posterior_coefficients`; the mean is also the optimal reverse path
        $\arg\max_{x_s} p(x_s \mid x_t, x_0)$ (`proofs/posterior.md`). `x_t` and `x_0` must
        have the same shape. Raises `SDEInputError` when the times break $0 \le s < t$ or
        are not finite, or when $\Theta_t = 0$ (the formula divides by
        $1 - e^{-2\Theta_t}$ and its variance turns negative for $s > t$); on traced values the
        same checks stop the computation at run time.
        """
        x_t, x_0 = self._states("posterior", x_t, x_0, ("x_t", "x_0"), s, t)
        return self._posterior(x_t, x_0, s, t, "posterior")

    def _ddim_coefficients(self, s, t, eta, name: str | None = None):
        if name is not None:
            xp = xp_for(eta)
            eta_arr = xp.asarray(eta)
            eta = require(
                name,
                eta,
                [((eta_arr >= 0) & (eta_arr <= 1), "needs 0 <= eta <= 1")],
                lambda: f"got eta = {concrete(eta)}",
            )
        coef_t, _, var = self._posterior_coefficients(s, t, name)
        v_t = self.marginal_variance(t)
        eta2 = jnp.asarray(eta, var.dtype) ** 2
        k_t = jnp.sqrt((coef_t**2 * v_t + (1 - eta2) * var) / v_t)
        k_0 = self.decay(0.0, s) - k_t * self.decay(0.0, t)
        return k_t, k_0, eta2 * var

    def ddim_coefficients(
        self, s: RealScalarLike, t: RealScalarLike, eta: RealScalarLike = 0.0
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
        r"""$(k_t, k_0, \sigma^2)$ of the DDIM kernel with $\tilde\mu - \mu = k_t (x_t - \mu) +
        k_0 (x_0 - \mu)$ and variance $\sigma^2 = \eta^2\tilde\beta$ (`proofs/ddim.md`).

        With $\hat\varepsilon = (x_t - m_t(x_0))/\sqrt{v_t}$ re-used, the step is
        $x_s = m_s(x_0) + \sqrt{v_s - \sigma^2}\,\hat\varepsilon + \sigma z$, so
        $k_t = \sqrt{v_s - \sigma^2}/\sqrt{v_t}$ and $k_0 = e^{-\Theta_s} - k_t e^{-\Theta_t}$;
        $v_s - \sigma^2 = c_t^2 v_t + (1 - \eta^2)\tilde\beta$ is computed in that form (no
        cancellation). $\eta = 1$ gives `posterior_coefficients` (the posterior is the
        $\eta = 1$ member), $\eta = 0$ the deterministic DDIM step. Needs $0 \le s < t$ and
        $0 \le \eta \le 1$ (checked as `posterior_coefficients`).
        """
        return self._ddim_coefficients(s, t, eta, "ddim_coefficients")

    def _ddim(self, x_t, x_0, s, t, eta, name: str | None = None) -> DiagonalGaussian:
        dt = x_t.dtype
        k_t, k_0, var = self._ddim_coefficients(s, t, eta, name)
        mu = self.mean.astype(dt)
        mean = mu + k_t.astype(dt) * (x_t - mu) + k_0.astype(dt) * (x_0 - mu)
        return DiagonalGaussian(mean, var.astype(dt))

    def ddim(
        self,
        x_t: StateLike,
        x_0: OtherStateLike,
        *,
        s: RealScalarLike,
        t: RealScalarLike,
        eta: RealScalarLike = 0.0,
    ) -> DiagonalGaussian:
        r"""The DDIM kernel $q_\eta(x_s \mid x_t, x_0) = \mathcal N(\mu + k_t(x_t - \mu) +
        k_0(x_0 - \mu),\ \eta^2\tilde\beta I)$ for $0 \le s < t$ (see
        `ddim_coefficients`).

        Every member keeps the conditional marginals: if $x_t \sim p(x_t \mid x_0)$ then
        $x_s \sim p(x_s \mid x_0)$. At $\eta = 1$ it is `posterior`; at $\eta = 0$ it is a
        point mass, the exact solution over $[s, t]$ of the probability-flow ODE with the noise
        prediction held fixed (`proofs/ddim.md`).
        """
        x_t, x_0 = self._states("ddim", x_t, x_0, ("x_t", "x_0"), s, t)
        return self._ddim(x_t, x_0, s, t, eta, "ddim")

    # --- score and noise parametrisations ----------------------------------------------------

    def _check_positive_variance(self, name: str, x, t):
        """`x` carrying the checks of a formula that divides by $v_t$: finite $t > 0$ and
        $\\Theta_t > 0$."""
        th_t = self.schedule.cumulative(t)
        xp = xp_for(t, th_t)
        conditions = time_conditions(t=t, strict=True) + [
            (
                xp.asarray(th_t) > 0,
                "Theta_t = 0, so v_t = 0 and the formula divides by zero; take t where the "
                "schedule has started (Theta_t > 0)",
            )
        ]
        return require(name, x, conditions, _times_details(None, t))

    def score(
        self, x_t: StateLike, x_0: OtherStateLike, *, t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""$\nabla_{x_t} \log p(x_t \mid x_0) = -(x_t - m_t)/v_t$ for $t > 0$."""
        x_t, x_0 = self._states("score", x_t, x_0, ("x_t", "x_0"), t)
        x_t = self._check_positive_variance("score", x_t, t)
        law = self.marginal(x_0, t=t)
        return -(x_t - law.mean) / law.variance

    def noise_from_x0(
        self, x_t: StateLike, x_0: OtherStateLike, *, t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""$\varepsilon = (x_t - m_t)/\sqrt{v_t}$, the noise that carries $x_0$ to $x_t$
        ($t > 0$)."""
        x_t, x_0 = self._states("noise_from_x0", x_t, x_0, ("x_t", "x_0"), t)
        x_t = self._check_positive_variance("noise_from_x0", x_t, t)
        law = self.marginal(x_0, t=t)
        return (x_t - law.mean) / jnp.sqrt(law.variance)

    def _x0_from_noise(self, x_t, noise, t):
        dt = x_t.dtype
        th = self.schedule.cumulative(t)
        std = jnp.sqrt(self.marginal_variance(t)).astype(dt)
        mu = self.mean.astype(dt)
        return mu + (x_t - mu - std * noise.astype(dt)) * jnp.exp(th).astype(dt)

    def x0_from_noise(
        self, x_t: StateLike, noise: OtherStateLike, *, t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""$\hat x_0 = \mu + (x_t - \mu - \sqrt{v_t}\,\hat\varepsilon)\,e^{\Theta_t}$ for
        finite $t \ge 0$."""
        x_t, noise = self._states("x0_from_noise", x_t, noise, ("x_t", "noise"), t)
        x_t = check_times("x0_from_noise", x_t, t=t, strict=False)
        return self._x0_from_noise(x_t, noise, t)

    def _score_from_noise(self, noise, t):
        return -noise / jnp.sqrt(self.marginal_variance(t)).astype(noise.dtype)

    def score_from_noise(self, noise: StateLike, *, t: RealScalarLike) -> Float[Array, "*shape"]:
        r"""$-\hat\varepsilon / \sqrt{v_t}$ for $t > 0$ (at $t = 0$ it divides by zero)."""
        noise = self._state("score_from_noise", noise, t)
        noise = self._check_positive_variance("score_from_noise", noise, t)
        return self._score_from_noise(noise, t)

    # --- diffrax terms -----------------------------------------------------------------------

    def drift(
        self, t: RealScalarLike, x: Float[Array, "*shape"], args=None
    ) -> Float[Array, "*shape"]:
        r"""$f(t, x) = \theta(t)(\mu - x)$."""
        return self.theta(t).astype(x.dtype) * (self.mean.astype(x.dtype) - x)

    def diffusion(self, t: RealScalarLike, x: Float[Array, "*shape"], args=None):
        r"""$g(t) = \sigma(t) I$, as a diagonal `lineax` operator acting on a Brownian increment."""
        return lx.DiagonalLinearOperator(self.sigma(t).astype(x.dtype) * jnp.ones_like(x))

    def forward_terms(self, brownian: diffrax.AbstractBrownianPath) -> diffrax.MultiTerm:
        """The forward SDE as diffrax terms: `MultiTerm(ODETerm(drift), ControlTerm(g, W))`."""
        return diffrax.MultiTerm(
            diffrax.ODETerm(self.drift), diffrax.ControlTerm(self.diffusion, brownian)
        )

    def reverse_drift(self, score_fn: ScoreFn) -> Callable:
        r"""$f - \sigma^2 \nabla\log p_t$: the drift of the reverse-time SDE (Anderson)."""

        def vector_field(t, x, args):
            score = jnp.asarray(score_fn(t, x, args)).astype(x.dtype)
            return self.drift(t, x) - self.sigma(t).astype(x.dtype) ** 2 * score

        return vector_field

    def reverse_terms(
        self, score_fn: ScoreFn, brownian: diffrax.AbstractBrownianPath
    ) -> diffrax.MultiTerm:
        r"""The reverse-time SDE $dx = [f - \sigma^2\nabla\log p_t]\,dt + \sigma\,d\bar W$ in
        forward time $\tau = T - t$: for $y(\tau) = x(T - \tau)$,
        $dy = [\sigma^2 \nabla\log p_t - f](T - \tau)\,d\tau + \sigma(T - \tau)\,dW_\tau$.

        Integrate $\tau$ from 0 to $T - t_{end}$ with `brownian` defined on that interval
        (what `ReverseSDESampler` does). diffrax's SDE solvers assume increasing time; a
        solve of the reverse SDE in $t$ from $T$ down to 0 is right only for Euler–Maruyama.
        """
        horizon = float(self.schedule.horizon)
        return diffrax.MultiTerm(
            diffrax.ODETerm(_ReverseTimeDrift(self, score_fn, horizon)),
            diffrax.ControlTerm(_ReverseTimeDiffusion(self, horizon), brownian),
        )

    def probability_flow_term(self, score_fn: ScoreFn) -> diffrax.ODETerm:
        r"""The probability-flow ODE $dx/dt = f - \tfrac12\sigma^2\nabla\log p_t$."""
        return diffrax.ODETerm(_ProbabilityFlowField(self, score_fn))


class _ReverseTimeDrift(eqx.Module):
    # A module, not a closure: the arrays of the SDE and of an `eqx.Module` score stay visible
    # to `filter_jit` and to adjoints that differentiate through the terms.
    sde: MeanRevertingSDE
    score_fn: ScoreFn
    horizon: float = eqx.field(static=True)

    def __call__(self, tau, y, args):
        t = self.horizon - tau
        sigma2 = self.sde.sigma(t).astype(y.dtype) ** 2
        # The state keeps its dtype whatever the score computes in (docs/sde.md).
        score = jnp.asarray(self.score_fn(t, y, args)).astype(y.dtype)
        return sigma2 * score - self.sde.drift(t, y)


class _ReverseTimeDiffusion(eqx.Module):
    sde: MeanRevertingSDE
    horizon: float = eqx.field(static=True)

    def __call__(self, tau, y, args):
        return self.sde.diffusion(self.horizon - tau, y)


class _ProbabilityFlowField(eqx.Module):
    # A module for the same reason as `_ReverseTimeDrift` (`BacksolveAdjoint` cannot close
    # over traced arrays).
    sde: MeanRevertingSDE
    score_fn: ScoreFn

    def __call__(self, t, x, args):
        half_sigma2 = 0.5 * self.sde.sigma(t).astype(x.dtype) ** 2
        score = jnp.asarray(self.score_fn(t, x, args)).astype(x.dtype)
        return self.sde.drift(t, x) - half_sigma2 * score
