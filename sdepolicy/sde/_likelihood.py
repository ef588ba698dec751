r"""The exact log-likelihood of a score model through the probability-flow ODE.

Along the probability-flow ODE $\dot x = f(t, x) = \theta(t)(\mu - x) - \tfrac12\sigma(t)^2
s(t, x)$ the density of $x_t$ obeys the instantaneous change of variables
$\tfrac{d}{dt}\log p_t(x_t) = -\nabla\!\cdot f(t, x_t)$ (`proofs/likelihood.md`), so

$$\log p_{t_0}(x) = \log p_T(x_T) + \int_{t_0}^T \nabla\!\cdot f(t, x_t)\,dt,
\qquad \nabla\!\cdot f = -\theta(t)\,d - \tfrac12\sigma(t)^2\,\nabla\!\cdot s(t, x),$$

one diffrax solve of the state and the integral together from $t_0$ up to $T$. When $s$ is the
exact score of the data law the answer is exact up to the solver's error (measured at 5-55
times `rtol = atol`, see `LogLikelihood`) and the difference between $p_T$ and the density
used for it (the stationary law by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._typing import PRNGKey
from ._errors import SDEInputError, require, xp_for
from ._mean_reverting import MeanRevertingSDE
from ._samplers import NoiseToScore, prepare_call, static_horizon

#: A score with diffrax's calling convention: ``score(t, x, args) -> array like x``.
ArgsScoreFn = Callable[[Float[Array, ""], Float[Array, "*shape"], Any], Float[Array, "*shape"]]
#: The density used at the horizon: ``log_density(x_T, args) -> scalar``.
TerminalLogDensity = Callable[[Float[Array, "*shape"], Any], Float[Array, ""]]

_DIVERGENCES = ("auto", "exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")


class LogLikelihood(eqx.Module):
    r"""$\log p_{t_0}(x)$ of the model whose score is `score_fn`, by the probability-flow ODE.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `solver`: any diffrax ODE solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the default adaptive controller (a `PIDController`,
        clipped at the rate's jumps for a piecewise-constant schedule). They bound the local
        error per step, not the answer's: measured with the exact score and the exact
        terminal law of Gaussian data (float64, Tsit5, cosine schedule T = 5, 8 points up to
        about 2 data standard deviations out), the log-density error is 5-12 times
        `rtol = atol` in 1-D, 7-23 times in 2-D, 15-55 times in 3-D and 17-53 times in 8-D
        over tolerances 1e-4 ... 1e-10 (the larger factors at the looser tolerances; e.g.
        4.0e-4 at 1e-5 and 2.4e-5 at 1e-6 in 3-D). For an error $\varepsilon$ ask for about
        $\varepsilon / 60$ (`tests/sde/test_likelihood.py`, `docs/sde.md`).
    - `stepsize_controller`: replaces the default controller (e.g.
        `diffrax.ConstantStepSize()` with `dt0`).
    - `dt0`: the initial step (default `None`: diffrax chooses; required for constant steps).
    - `t0`: the time at which $x$ is observed (default 0). A score made by
        `noise_to_score` is infinite at $t = 0$ and needs `t0 > 0` (then the answer is
        $\log p_{t_0}(x)$, the density of the slightly noised data).
    - `divergence`: `"exact"` (the trace of the Jacobian by forward-mode autodiff, $d$
        Jacobian-vector products per evaluation), `"hutchinson"` (the unbiased estimate
        $v^\top \partial_x s\, v$ with probes $v$ drawn once per solve, FFJORD's choice), or
        `"auto"` (exact up to `exact_max_dim` elements, Hutchinson above).
    - `exact_max_dim`: the largest state size `"auto"` treats exactly (default 32).
    - `num_probes`: Hutchinson probes averaged per solve (default 1).
    - `probe`: `"rademacher"` (lower variance; exact when $\partial_x s$ is diagonal) or
        `"gaussian"`.
    - `max_steps`: the solver's step budget (finite, so reverse-mode autodiff works).
    - `adjoint`: diffrax adjoint (default `RecursiveCheckpointAdjoint()`; e.g.
        `diffrax.BacksolveAdjoint()` for memory-light gradients).

    The whole array `x` is one event: the divergence sums over all its elements. For a batch,
    `jax.vmap` over it. The call is differentiable in `x`, in `args` and in the arrays of an
    `eqx.Module` score (`eqx.filter_grad`), which is what an entropy estimator needs.
    """

    sde: MeanRevertingSDE
    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    # Arrays, not static floats: one compilation serves every tolerance.
    rtol: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1e-6)
    atol: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1e-6)
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    dt0: float | None = eqx.field(static=True, default=None)
    t0: float = eqx.field(static=True, default=0.0)
    divergence: str = eqx.field(static=True, default="auto")
    exact_max_dim: int = eqx.field(static=True, default=32)
    num_probes: int = eqx.field(static=True, default=1)
    probe: str = eqx.field(static=True, default="rademacher")
    max_steps: int = eqx.field(static=True, default=4096)
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()

    def __check_init__(self):
        if self.divergence not in _DIVERGENCES:
            raise SDEInputError(f"LogLikelihood: divergence must be one of {_DIVERGENCES}.")
        if self.probe not in _PROBES:
            raise SDEInputError(f"LogLikelihood: probe must be one of {_PROBES}.")
        if int(self.num_probes) < 1 or int(self.max_steps) < 1:
            raise SDEInputError("LogLikelihood: num_probes and max_steps must be positive.")
        horizon = static_horizon(self.sde)
        if not 0 <= self.t0 < horizon:
            raise SDEInputError(f"LogLikelihood: needs 0 <= t0 < T = {horizon}, got {self.t0}.")

    def uses_exact_divergence(self, size: int) -> bool:
        """Whether a state of `size` elements gets the exact divergence."""
        if self.divergence == "auto":
            return size <= self.exact_max_dim
        return self.divergence == "exact"

    def __call__(
        self,
        score_fn: ArgsScoreFn,
        x: Float[ArrayLike, "*shape"],
        args: PyTree = None,
        *,
        key: PRNGKey | None = None,
        terminal_log_density: TerminalLogDensity | None = None,
    ) -> Float[Array, ""]:
        r"""$\log p_{t_0}(x)$.

        **Arguments:**

        - `score_fn`: the score $s(t, x, \text{args})$ (diffrax's calling convention).
        - `x`: the point, observed at `t0`.
        - `args`: passed to `score_fn` and `terminal_log_density` (e.g. parameters or an RL
            state to condition on); differentiable.
        - `key`: PRNG key for the Hutchinson probes (required when they are used).
        - `terminal_log_density`: $\log p_T$ as `f(x_T, args)`; default the stationary law
            $\mathcal N(\mu, \lambda^2 I)$ (exact only as $e^{-\Theta_T} \to 0$).

        **Returns:** the scalar log-density, in `x`'s dtype (float32 or float64; the solve runs
        in it, times included).
        """
        if isinstance(score_fn, NoiseToScore) and self.t0 <= 0:
            raise SDEInputError(
                "LogLikelihood: a score from `noise_to_score` is infinite at t = 0; set t0 > 0 "
                "(e.g. 1e-3 * T)."
            )
        score_fn, x, args = prepare_call("LogLikelihood", score_fn, x, args)
        xp = xp_for(x)
        # A NaN x made the solver reject every step ("maximum number of solver steps").
        x = require(
            "LogLikelihood",
            x,
            [(xp.all(xp.isfinite(x)), "x is not finite (it has NaN or inf entries)")],
        )
        return self._run(score_fn, x, args, key, terminal_log_density)

    @eqx.filter_jit
    def _run(self, score_fn, x, args, key, terminal_log_density):
        dtype, shape, size = x.dtype, x.shape, math.prod(x.shape)
        if self.uses_exact_divergence(size):
            probes = None
        else:
            if key is None:
                raise SDEInputError(
                    "LogLikelihood: the Hutchinson divergence needs `key` (or use "
                    "divergence='exact')."
                )
            pshape = (self.num_probes, *shape)
            if self.probe == "rademacher":
                probes = jax.random.rademacher(key, pshape, dtype)
            else:
                probes = jax.random.normal(key, pshape, dtype)
        sde = self.sde
        num_probes = self.num_probes

        # Everything the field reads travels in diffrax's `args` (nothing closed over), so that
        # adjoints that re-solve backwards (`BacksolveAdjoint`) see every array.
        def vector_field(t, y, packed):
            sde, score_fn, probes, args = packed
            x, _ = y
            theta = sde.theta(t).astype(dtype)
            half_sigma2 = (0.5 * sde.sigma(t) ** 2).astype(dtype)
            score, lin = jax.linearize(lambda z: jnp.asarray(score_fn(t, z, args)).astype(dtype), x)
            if probes is None:
                basis = jnp.eye(size, dtype=dtype).reshape(size, *shape)
                div_score = jnp.sum(jax.vmap(lin)(basis).reshape(size, size).diagonal())
            else:
                jv = jax.vmap(lin)(probes)
                div_score = jnp.mean(jnp.sum((probes * jv).reshape(num_probes, -1), -1))
            dx = theta * (sde.mean.astype(dtype) - x) - half_sigma2 * score
            return dx, -theta * size - half_sigma2 * div_score

        horizon = static_horizon(sde)
        controller = self.stepsize_controller
        if controller is None:
            pid = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
            jumps = [j for j in sde.schedule.jump_times if self.t0 < j < horizon]
            if jumps:
                controller = diffrax.ClipStepSizeController(pid, jump_ts=jnp.asarray(jumps, dtype))
            else:
                controller = pid
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            self.solver,
            # Times in x's dtype: diffrax promotes the state to the times' dtype, which broke a
            # float32 x under x64 (the probes and basis are in x's dtype).
            t0=jnp.asarray(self.t0, dtype),
            t1=jnp.asarray(horizon, dtype),
            dt0=None if self.dt0 is None else jnp.asarray(self.dt0, dtype),
            y0=(x, jnp.zeros((), dtype)),
            args=(sde, score_fn, probes, args),
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            max_steps=self.max_steps,
            adjoint=self.adjoint,
        )
        x_T, integral = sol.ys[0][0], sol.ys[1][0]
        if terminal_log_density is None:
            log_p_T = sde.prior(shape, dtype).log_prob(x_T)
        else:
            log_p_T = terminal_log_density(x_T, args)
        return log_p_T + integral


def log_likelihood(
    sde: MeanRevertingSDE,
    score_fn: ArgsScoreFn,
    x: Float[ArrayLike, "*shape"],
    args: PyTree = None,
    *,
    key: PRNGKey | None = None,
    terminal_log_density: TerminalLogDensity | None = None,
    **options,
) -> Float[Array, ""]:
    r"""`LogLikelihood(sde, **options)(score_fn, x, args, key=key, ...)`: $\log p_{t_0}(x)$
    through the probability-flow ODE (see `LogLikelihood` for the options)."""
    return LogLikelihood(sde, **options)(
        score_fn, x, args, key=key, terminal_log_density=terminal_log_density
    )
