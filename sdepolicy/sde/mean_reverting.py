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
from .errors import SDEInputError, check_times, concrete
from .gaussian import DiagonalGaussian
from .schedules import AbstractSchedule

#: A state at a public edge: a jax or numpy array, a Python number, or a (nested) list; it is
#: converted with `jnp.asarray` (integers to the default float).
StateLike = Float[ArrayLike, "*shape"] | Sequence[Any]

#: A score (or any vector field a solver or sampler calls) in diffrax's calling convention:
#: ``f(t, x, args) -> array like x``, with `args` whatever the sampler was given (default
#: `None`; README, "Calling convention").
ScoreFn = Callable[[Float[Array, ""], Float[Array, "*shape"], Any], Float[Array, "*shape"]]


def _as_float_array(x) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


class MeanRevertingSDE(eqx.Module):
    r"""$dx = \theta(t)(\mu - x)\,dt + \sqrt{2\lambda^2\theta(t)}\,dW$.

    **Arguments:**

    - `schedule`: the rate $\theta(t)$ (an [`AbstractSchedule`][]).
    - `mean`: $\mu$, an array broadcastable against the state (it may differ per sample, e.g.
        conditioned on an RL state). Default 0.
    - `stationary_std`: $\lambda > 0$; $\lambda^2$ is the stationary variance. Default 1.

    With $\mu = 0$, $\lambda = 1$ this is the VP-SDE with $\beta(t) = 2\theta(t)$.
    Times must satisfy $0 \le s \le t$ for the transition and $0 \le s < t$ for the
    posterior.

    The closed forms take their states positionally and their times keyword-only, so the
    earlier time cannot be confused with the later state:
    `sde.marginal(x_0, t=t)`, `sde.transition(x_s, s=s, t=t)`,
    `sde.posterior(x_t, x_0, s=s, t=t)`, `sde.x0_from_noise(x_t, eps, t=t)`. Functions of time
    alone (`decay(s, t)`, `marginal_variance(t)`, ...) stay positional, and the vector fields
    (`drift`, `diffusion`, the terms' fields) are diffrax's `f(t, y, args)` (README, "Calling
    convention").
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

    def posterior_coefficients(
        self, s: RealScalarLike, t: RealScalarLike
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
        r"""$(c_t, c_0, \tilde\beta)$ with $\tilde\mu - \mu = c_t (x_t - \mu) + c_0 (x_0 - \mu)$.

        $c_t = (1 - e^{-2\Theta_s}) e^{-\Theta(s,t)} / (1 - e^{-2\Theta_t})$,
        $c_0 = (1 - e^{-2\Theta(s,t)}) e^{-\Theta_s} / (1 - e^{-2\Theta_t})$,
        $\tilde\beta = \lambda^2 (1 - e^{-2\Theta_s})(1 - e^{-2\Theta(s,t)})
        / (1 - e^{-2\Theta_t})$. Needs $0 \le s < t$ (checked when the times are concrete).
        """
        check_times("posterior_coefficients", s=s, t=t, strict=True)
        th_s = self.schedule.cumulative(s)
        th_t = self.schedule.cumulative(t)
        th_st = th_t - th_s
        one_s = -jnp.expm1(-2 * th_s)
        one_st = -jnp.expm1(-2 * th_st)
        one_t = -jnp.expm1(-2 * th_t)
        coef_t = one_s * jnp.exp(-th_st) / one_t
        coef_0 = one_st * jnp.exp(-th_s) / one_t
        var = self.stationary_std**2 * one_s * one_st / one_t
        return coef_t, coef_0, var

    def theta(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""The rate $\theta(t)$."""
        return self.schedule.rate(t)

    def sigma(self, t: RealScalarLike) -> Float[Array, ""]:
        r"""The diffusion coefficient $\sigma(t) = \lambda\sqrt{2\theta(t)}$."""
        return self.stationary_std * jnp.sqrt(2 * self.schedule.rate(t))

    # --- closed-form laws --------------------------------------------------------------------

    def transition(
        self, x_s: StateLike, *, s: RealScalarLike, t: RealScalarLike
    ) -> DiagonalGaussian:
        r"""$p(x_t \mid x_s) = \mathcal N(\mu + (x_s - \mu)e^{-\Theta(s,t)},\ \lambda^2(1 -
        e^{-2\Theta(s,t)}) I)$ for $0 \le s \le t$ ($s = t$ is the point mass at $x_s$).

        Raises [`SDEInputError`][] when concrete times have $s < 0$ or $t < s$ (the formula
        would return a negative variance); traced times are not checked.
        """
        check_times("transition", s=s, t=t, strict=False)
        x_s = _as_float_array(x_s)
        dt = x_s.dtype
        mean = self.mean + (x_s - self.mean) * self.decay(s, t).astype(dt)
        return DiagonalGaussian(mean, self.transition_variance(s, t).astype(dt))

    def marginal(self, x_0: StateLike, *, t: RealScalarLike) -> DiagonalGaussian:
        r"""$p(x_t \mid x_0)$: the transition from time 0."""
        return self.transition(x_0, s=0.0, t=t)

    def prior(self, shape: int | Sequence[int] = (), dtype=None) -> DiagonalGaussian:
        r"""The stationary law $\mathcal N(\mu, \lambda^2 I)$ with the given shape (an int or a
        sequence of ints), where the reverse samplers start."""
        shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
        dtype = dtype or jnp.result_type(self.mean)
        mean = jnp.broadcast_to(self.mean, shape).astype(dtype)
        return DiagonalGaussian(mean, (self.stationary_std**2).astype(dtype))

    def posterior(
        self,
        x_t: StateLike,
        x_0: StateLike,
        *,
        s: RealScalarLike,
        t: RealScalarLike,
    ) -> DiagonalGaussian:
        r"""$p(x_s \mid x_t, x_0) = \mathcal N(\tilde\mu, \tilde\beta I)$ for $0 \le s < t$.

        See [`posterior_coefficients`][]; the mean is also the optimal reverse path
        $\arg\max_{x_s} p(x_s \mid x_t, x_0)$ (`proofs/posterior.md`). Raises
        [`SDEInputError`][] when concrete times break $0 \le s < t$ (the formula divides by
        $1 - e^{-2\Theta_t}$ and its variance turns negative for $s > t$); traced times are
        not checked.
        """
        check_times("posterior", s=s, t=t, strict=True)
        x_t, x_0 = _as_float_array(x_t), _as_float_array(x_0)
        dt = x_t.dtype
        coef_t, coef_0, var = self.posterior_coefficients(s, t)
        mean = (
            self.mean
            + coef_t.astype(dt) * (x_t - self.mean)
            + coef_0.astype(dt) * (x_0 - self.mean)
        )
        return DiagonalGaussian(mean, var.astype(dt))

    def ddim_coefficients(
        self, s: RealScalarLike, t: RealScalarLike, eta: RealScalarLike = 0.0
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
        r"""$(k_t, k_0, \sigma^2)$ of the DDIM kernel with $\tilde\mu - \mu = k_t (x_t - \mu) +
        k_0 (x_0 - \mu)$ and variance $\sigma^2 = \eta^2\tilde\beta$ (`proofs/ddim.md`).

        With $\hat\varepsilon = (x_t - m_t(x_0))/\sqrt{v_t}$ re-used, the step is
        $x_s = m_s(x_0) + \sqrt{v_s - \sigma^2}\,\hat\varepsilon + \sigma z$, so
        $k_t = \sqrt{v_s - \sigma^2}/\sqrt{v_t}$ and $k_0 = e^{-\Theta_s} - k_t e^{-\Theta_t}$;
        $v_s - \sigma^2 = c_t^2 v_t + (1 - \eta^2)\tilde\beta$ is computed in that form (no
        cancellation). $\eta = 1$ gives [`posterior_coefficients`][] (the posterior is the
        $\eta = 1$ member), $\eta = 0$ the deterministic DDIM step. Needs $0 \le s < t$ and
        $0 \le \eta \le 1$ (checked when concrete).
        """
        check_times("ddim_coefficients", s=s, t=t, strict=True)
        eta_val = concrete(eta)
        if eta_val is not None and not (0.0 <= float(eta_val) <= 1.0):
            raise SDEInputError(f"ddim_coefficients: needs 0 <= eta <= 1, got eta = {eta_val}.")
        coef_t, _, var = self.posterior_coefficients(s, t)
        v_t = self.marginal_variance(t)
        eta2 = jnp.asarray(eta, var.dtype) ** 2
        k_t = jnp.sqrt((coef_t**2 * v_t + (1 - eta2) * var) / v_t)
        k_0 = self.decay(0.0, s) - k_t * self.decay(0.0, t)
        return k_t, k_0, eta2 * var

    def ddim(
        self,
        x_t: StateLike,
        x_0: StateLike,
        *,
        s: RealScalarLike,
        t: RealScalarLike,
        eta: RealScalarLike = 0.0,
    ) -> DiagonalGaussian:
        r"""The DDIM kernel $q_\eta(x_s \mid x_t, x_0) = \mathcal N(\mu + k_t(x_t - \mu) +
        k_0(x_0 - \mu),\ \eta^2\tilde\beta I)$ for $0 \le s < t$ (see
        [`ddim_coefficients`][]).

        Every member keeps the conditional marginals: if $x_t \sim p(x_t \mid x_0)$ then
        $x_s \sim p(x_s \mid x_0)$. At $\eta = 1$ it is [`posterior`][]; at $\eta = 0$ it is a
        point mass, the exact solution over $[s, t]$ of the probability-flow ODE with the noise
        prediction held fixed (`proofs/ddim.md`).
        """
        x_t, x_0 = _as_float_array(x_t), _as_float_array(x_0)
        dt = x_t.dtype
        k_t, k_0, var = self.ddim_coefficients(s, t, eta)
        mean = self.mean + k_t.astype(dt) * (x_t - self.mean) + k_0.astype(dt) * (x_0 - self.mean)
        return DiagonalGaussian(mean, var.astype(dt))

    # --- score and noise parametrisations ----------------------------------------------------

    def score(self, x_t: StateLike, x_0: StateLike, *, t: RealScalarLike) -> Float[Array, "*shape"]:
        r"""$\nabla_{x_t} \log p(x_t \mid x_0) = -(x_t - m_t)/v_t$ for $t > 0$."""
        check_times("score", t=t)
        x_t = _as_float_array(x_t)
        law = self.marginal(x_0, t=t)
        return -(x_t - law.mean) / law.variance

    def noise_from_x0(
        self, x_t: StateLike, x_0: StateLike, *, t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""$\varepsilon = (x_t - m_t)/\sqrt{v_t}$, the noise that carries $x_0$ to $x_t$
        ($t > 0$)."""
        check_times("noise_from_x0", t=t)
        x_t = _as_float_array(x_t)
        law = self.marginal(x_0, t=t)
        return (x_t - law.mean) / jnp.sqrt(law.variance)

    def x0_from_noise(
        self, x_t: StateLike, noise: StateLike, *, t: RealScalarLike
    ) -> Float[Array, "*shape"]:
        r"""$\hat x_0 = \mu + (x_t - \mu - \sqrt{v_t}\,\hat\varepsilon)\,e^{\Theta_t}$."""
        check_times("x0_from_noise", t=t, strict=False)
        x_t, noise = _as_float_array(x_t), _as_float_array(noise)
        dt = x_t.dtype
        th = self.schedule.cumulative(t)
        std = jnp.sqrt(self.marginal_variance(t)).astype(dt)
        return self.mean + (x_t - self.mean - std * noise) * jnp.exp(th).astype(dt)

    def score_from_noise(self, noise: StateLike, *, t: RealScalarLike) -> Float[Array, "*shape"]:
        r"""$-\hat\varepsilon / \sqrt{v_t}$ for $t > 0$ (at $t = 0$ it divides by zero)."""
        check_times("score_from_noise", t=t)
        noise = _as_float_array(noise)
        return -noise / jnp.sqrt(self.marginal_variance(t)).astype(noise.dtype)

    # --- diffrax terms -----------------------------------------------------------------------

    def drift(
        self, t: RealScalarLike, x: Float[Array, "*shape"], args=None
    ) -> Float[Array, "*shape"]:
        r"""$f(t, x) = \theta(t)(\mu - x)$."""
        return self.theta(t).astype(x.dtype) * (self.mean - x)

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
            return self.drift(t, x) - self.sigma(t).astype(x.dtype) ** 2 * score_fn(t, x, args)

        return vector_field

    def reverse_terms(
        self, score_fn: ScoreFn, brownian: diffrax.AbstractBrownianPath
    ) -> diffrax.MultiTerm:
        r"""The reverse-time SDE $dx = [f - \sigma^2\nabla\log p_t]\,dt + \sigma\,d\bar W$ in
        forward time $\tau = T - t$: for $y(\tau) = x(T - \tau)$,
        $dy = [\sigma^2 \nabla\log p_t - f](T - \tau)\,d\tau + \sigma(T - \tau)\,dW_\tau$.

        Integrate $\tau$ from 0 to $T - t_{end}$ with `brownian` defined on that interval
        (what [`ReverseSDESampler`][] does). diffrax's SDE solvers assume increasing time; a
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
        return sigma2 * self.score_fn(t, y, args) - self.sde.drift(t, y)


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
        return self.sde.drift(t, x) - half_sigma2 * self.score_fn(t, x, args)
