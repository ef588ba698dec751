r"""How fast do the three samplers reach the data law, given the *exact* score?

For data laws whose every quantity under the mean-reverting SDE is known in closed form
(a Gaussian, a two-component Gaussian mixture in 1-D, a two-component diagonal mixture in 2-D),
run

- (a) the reverse-time SDE (`sp.ReverseSDESampler`, Euler–Maruyama),
- (b) the probability-flow ODE (`sp.ProbabilityFlowSampler`, Heun),
- (c) the posterior sampler (`sp.PosteriorSampler`) with the exact $E[x_0 \mid x_t]$ on the
  uniform grid `linspace(0, T, N + 1)` ($N = T$ is the reference code's integer grid),

on the ER-DP-QE cosine schedule ($T = 5$, $\mu = 0$, $\lambda = 1$), for several step counts $N$,
and measure the distance of the samples to the data law: the exact Wasserstein-1 distance
between the empirical law and the data law (sliced over fixed directions in 2-D), and the errors
of the mean and the variance.

Two starting laws: the exact marginal at $T$ (isolates the discretisation error; the main
tables) and the prior $\mathcal N(\mu, \lambda^2)$ that a sampler really starts from (the
marginal at $T$ differs from it by $e^{-\Theta_T} = 10^{-3}$ in scale).

Exact laws. For $x_0 \sim \mathcal N(m, s^2)$ (per coordinate), with $a_t = e^{-\Theta_t}$ and
$v_t = \lambda^2(1 - a_t^2)$:

$$x_t \sim \mathcal N(\mu + (m - \mu)a_t,\ s^2 a_t^2 + v_t), \qquad
E[x_0 \mid x_t] = m + \frac{s^2 a_t}{s^2 a_t^2 + v_t}\,\big(x_t - \mu - (m - \mu)a_t\big).$$

A mixture propagates component by component with the same weights; its score and its
$E[x_0 \mid x_t]$ are the responsibility-weighted component scores and posterior means.

Run: `python examples/sde_convergence.py` (about 2 minutes of CPU time, mostly compiling one
sampler per step count; measured 126 s of user time, 5.7 min of wall time on 2 cores shared
with other jobs). Writes
`results.json`, `table.md`, `convergence.png` and `histograms.png` to `--out`
(default `runs/sde_convergence`). See `docs/convergence.md` for the numbers and what they mean.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

import sdepolicy as sp

SAMPLERS = ("reverse_sde", "pf_ode", "posterior")
SAMPLER_LABELS = {
    "reverse_sde": "reverse SDE (Euler–Maruyama)",
    "pf_ode": "probability-flow ODE (Heun)",
    "posterior": "posterior sampler, exact E[x0|xt]",
}
DEFAULT_STEPS = (5, 10, 20, 50, 100, 200, 400)


# --- exact data laws --------------------------------------------------------------------------


class DiagonalMixture(eqx.Module):
    r"""$\sum_k w_k \mathcal N(m_k, \operatorname{diag} s_k^2)$ in $d$ dimensions.

    A Gaussian is the one-component case. Samples and states are arrays of shape `(n, d)`.
    """

    weights: Float[Array, " k"]
    means: Float[Array, "k d"]
    stds: Float[Array, "k d"]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Float[Array, " d"]:
        return self.weights @ self.means

    def covariance(self) -> Float[Array, "d d"]:
        m = self.mean()
        second = jnp.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        second = second + jnp.diag(self.weights @ self.stds**2)
        return second - jnp.outer(m, m)

    def sample(self, key, n: int) -> Float[Array, "n d"]:
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, self.weights.shape[0], (n,), p=self.weights)
        z = jax.random.normal(kz, (n, self.dim), self.means.dtype)
        return self.means[comp] + self.stds[comp] * z

    def _log_joint(self, x: Float[Array, "n d"]) -> Float[Array, "n k"]:
        """$\\log w_k + \\log \\mathcal N(x; m_k, s_k^2)$ for every sample and component."""
        var = self.stds[None] ** 2
        diff = x[:, None, :] - self.means[None]
        logn = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * math.pi * var), axis=-1)
        return jnp.log(self.weights)[None] + logn

    def responsibilities(self, x: Float[Array, "n d"]) -> Float[Array, "n k"]:
        return jax.nn.softmax(self._log_joint(x), axis=-1)

    def log_prob(self, x: Float[Array, "n d"]) -> Float[Array, " n"]:
        return jax.nn.logsumexp(self._log_joint(x), axis=-1)

    def score(self, x: Float[Array, "n d"]) -> Float[Array, "n d"]:
        r"""$\nabla \log p(x) = \sum_k r_k(x)\,(m_k - x)/s_k^2$."""
        r = self.responsibilities(x)
        comp = (self.means[None] - x[:, None, :]) / self.stds[None] ** 2
        return jnp.sum(r[:, :, None] * comp, axis=1)

    def propagate(self, sde: sp.MeanRevertingSDE, t) -> DiagonalMixture:
        """The marginal law of $x_t$ when $x_0$ has this law."""
        a = sde.decay(0.0, t)
        v = sde.marginal_variance(t)
        means = sde.mean + (self.means - sde.mean) * a
        stds = jnp.sqrt(self.stds**2 * a**2 + v)
        return DiagonalMixture(self.weights, means, stds)

    def posterior_mean_x0(self, sde: sp.MeanRevertingSDE, x: Float[Array, "n d"], *, t):
        r"""$E[x_0 \mid x_t = x] = \sum_k r_k(x)\,\big(m_k + \tfrac{s_k^2 a_t}{s_k^2 a_t^2 +
        v_t}(x - m_{k,t})\big)$, with $r_k$ the responsibilities under the law of $x_t$."""
        a = sde.decay(0.0, t)
        law_t = self.propagate(sde, t)
        gain = self.stds**2 * a / law_t.stds**2
        per_comp = self.means[None] + gain[None] * (x[:, None, :] - law_t.means[None])
        r = law_t.responsibilities(x)
        return jnp.sum(r[:, :, None] * per_comp, axis=1)

    def project(self, direction: Float[Array, " d"]) -> DiagonalMixture:
        """The 1-D law of $u^\\top x$ (exact: each diagonal component projects to a Gaussian)."""
        means = (self.means @ direction)[:, None]
        stds = jnp.sqrt(self.stds**2 @ direction**2)[:, None]
        return DiagonalMixture(self.weights, means, stds)


def gaussian_law(mean: float = 0.5, std: float = 0.5) -> DiagonalMixture:
    """$\\mathcal N(m, s^2)$, written as two identical components: the same law, but the same
    array shapes as `mixture_law`, so the compiled samplers are shared (compilation is most of
    this study's run time)."""
    return DiagonalMixture(
        jnp.array([0.5, 0.5]), jnp.array([[mean], [mean]]), jnp.array([[std], [std]])
    )


def mixture_law() -> DiagonalMixture:
    """The 1-D mixture 0.3 N(-1, 0.3²) + 0.7 N(1.5, 0.3²)."""
    return DiagonalMixture(
        jnp.array([0.3, 0.7]), jnp.array([[-1.0], [1.5]]), jnp.array([[0.3], [0.3]])
    )


def mixture_law_2d() -> DiagonalMixture:
    """0.3 N((-1, 1), diag(0.3², 0.5²)) + 0.7 N((1.5, -0.5), diag(0.3², 0.2²)): correlated."""
    return DiagonalMixture(
        jnp.array([0.3, 0.7]),
        jnp.array([[-1.0, 1.0], [1.5, -0.5]]),
        jnp.array([[0.3, 0.5], [0.3, 0.2]]),
    )


LAWS = {"gaussian": gaussian_law, "mixture": mixture_law, "mixture_2d": mixture_law_2d}


# --- exact 1-D Wasserstein-1 distance between an empirical law and a Gaussian mixture ---------


def _cdf(law: DiagonalMixture, x: Float[Array, " m"]) -> Float[Array, " m"]:
    z = (x[:, None] - law.means[None, :, 0]) / law.stds[None, :, 0]
    return jnp.sum(law.weights[None] * jax.scipy.special.ndtr(z), axis=-1)


def _partial_mean(law: DiagonalMixture, x: Float[Array, " m"]) -> Float[Array, " m"]:
    r"""$M(x) = \int_{-\infty}^x y\,p(y)\,dy = \sum_k w_k (m_k \Phi(z_k) - s_k \varphi(z_k))$."""
    m, s = law.means[None, :, 0], law.stds[None, :, 0]
    z = (x[:, None] - m) / s
    phi = jnp.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return jnp.sum(law.weights[None] * (m * jax.scipy.special.ndtr(z) - s * phi), axis=-1)


def _quantile(law: DiagonalMixture, u):
    """Inverse CDF by bisection: 64 halvings of a bracket ~100 wide reach machine precision."""
    m, s = law.means[:, 0], law.stds[:, 0]
    lo = jnp.full_like(u, jnp.min(m - 40 * s))
    hi = jnp.full_like(u, jnp.max(m + 40 * s))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = _cdf(law, mid) < u
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, body, (lo, hi))
    return 0.5 * (lo + hi)


@jax.jit
def wasserstein1(samples: Float[Array, " n"], law: DiagonalMixture) -> Float[Array, ""]:
    r"""$W_1(\hat p_n, p) = \int_0^1 |F_n^{-1}(u) - F^{-1}(u)|\,du$, exactly.

    On $u \in ((i-1)/n, i/n]$ the empirical quantile is the $i$-th order statistic $x_{(i)}$;
    splitting at $u^* = F(x_{(i)})$ and using $\int_a^b F^{-1}(u)\,du = M(F^{-1}(b)) -
    M(F^{-1}(a))$ gives every piece in closed form (no quadrature, no reference sample).
    """
    x = jnp.sort(samples)
    n = x.shape[0]
    levels = jnp.arange(n + 1, dtype=x.dtype) / n
    q = _quantile(law, levels[1:-1])
    total_mean = law.weights @ law.means[:, 0]
    zero = jnp.zeros((1,), x.dtype)
    m_at_levels = jnp.concatenate([zero, _partial_mean(law, q), total_mean[None]])
    a, b = levels[:-1], levels[1:]
    m_a, m_b = m_at_levels[:-1], m_at_levels[1:]
    u_star = jnp.clip(_cdf(law, x), a, b)
    # M(F^{-1}(u*)): u* is a, b or F(x_i) itself, where F^{-1}(F(x_i)) = x_i.
    m_star = jnp.where(u_star <= a, m_a, jnp.where(u_star >= b, m_b, _partial_mean(law, x)))
    below = x * (u_star - a) - (m_star - m_a)  # ∫_a^{u*} (x - F^{-1})
    above = (m_b - m_star) - x * (b - u_star)  # ∫_{u*}^b (F^{-1} - x)
    return jnp.sum(below + above)


def directions(dim: int, count: int = 4) -> Float[Array, "m d"]:
    """Fixed unit directions: the axes in 1-D; `count` equally spaced angles in 2-D."""
    if dim == 1:
        return jnp.ones((1, 1))
    if dim != 2:
        raise ValueError("directions: only 1-D and 2-D laws are supported.")
    angles = jnp.arange(count, dtype=float) * (math.pi / count)
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)


def errors(samples: Float[Array, "n d"], law: DiagonalMixture) -> dict[str, float]:
    """W1 (sliced and averaged over fixed directions in 2-D), and mean / covariance errors."""
    dirs = directions(law.dim)
    w1 = jnp.mean(jnp.stack([wasserstein1(samples @ u, law.project(u)) for u in dirs]))
    mean_err = jnp.linalg.norm(jnp.mean(samples, axis=0) - law.mean())
    cov = jnp.atleast_2d(jnp.cov(samples, rowvar=False))
    cov_true = law.covariance()
    out = {
        "w1": float(w1),
        "mean_error": float(mean_err),
        "var_error": float(jnp.linalg.norm(cov - cov_true)),  # Frobenius; |Δvar| in 1-D
        "var_ratio": float(jnp.trace(cov) / jnp.trace(cov_true)),
    }
    return out


# --- samplers with the exact score / x0 predictor ---------------------------------------------


def make_sde() -> sp.MeanRevertingSDE:
    return sp.MeanRevertingSDE(sp.cosine_schedule(5), mean=0.0, stationary_std=1.0)


def exact_score(sde: sp.MeanRevertingSDE, law: DiagonalMixture):
    """The exact score of `law` propagated to time t, as a sampler calls it: `f(t, x, args)`."""
    return lambda t, x, args: law.propagate(sde, t).score(x)


def exact_x0(sde: sp.MeanRevertingSDE, law: DiagonalMixture):
    r"""The exact $E[x_0 \mid x_t]$ under `law`, as `f(t, x, args)`."""
    return lambda t, x, args: law.posterior_mean_x0(sde, x, t=t)


@eqx.filter_jit
def run_sampler(name: str, num_steps: int, sde, law, x_T, key):
    """One sampler at `num_steps` steps, from the states `x_T` (shape `(n, d)`) at $T$."""
    if name == "reverse_sde":
        # UnsafeBrownianPath: one normal draw per step, ~25x cheaper than a VirtualBrownianTree
        # here (we never differentiate through the sampler).
        sampler = sp.ReverseSDESampler(sde, num_steps, brownian="unsafe")
        return sampler(exact_score(sde, law), x_T, key)
    if name == "pf_ode":
        return sp.ProbabilityFlowSampler(sde, num_steps)(exact_score(sde, law), x_T)
    if name == "posterior":
        times = jnp.linspace(0.0, sde.horizon, num_steps + 1)
        return sp.PosteriorSampler(sde, times)(exact_x0(sde, law), x_T, key)
    raise ValueError(name)


def starting_states(sde, law: DiagonalMixture, n: int, key, start: str):
    """`"marginal"`: the exact law of $x_T$; `"prior"`: $\\mathcal N(\\mu, \\lambda^2)$."""
    if start == "marginal":
        return law.propagate(sde, sde.horizon).sample(key, n)
    if start == "prior":
        return sde.prior((n, law.dim), jnp.float64).sample(key)
    raise ValueError(start)


def noise_floor(law: DiagonalMixture, n: int, key, replicates: int = 20) -> dict[str, float]:
    """The errors of `n` exact samples of the data law: what Monte-Carlo noise alone gives."""
    keys = jax.random.split(key, replicates)
    rows = [errors(law.sample(k, n), law) for k in keys]
    out = {}
    for name in rows[0]:
        vals = np.array([r[name] for r in rows])
        out[name + "_mean"] = float(vals.mean())
        out[name + "_std"] = float(vals.std(ddof=1))
    return out


# --- Gaussian data: the exact law of each discrete chain (no Monte-Carlo) ----------------------


def _diffrax_times(horizon: float, num_steps: int) -> np.ndarray:
    """The times diffrax's `ConstantStepSize` visits from `horizon` down to 0 (its formula
    $t_0 + (t_1 - t_0)\\,k/N$, the last time exactly $t_1$): rates are read where it reads them."""
    k = np.arange(num_steps + 1, dtype=np.float64)
    ts = horizon + (0.0 - horizon) * (k / num_steps)
    ts[-1] = 0.0
    return ts


@eqx.filter_jit
def _schedule_values(sde: sp.MeanRevertingSDE, times):
    """$(e^{-\\Theta_t}, v_t, \\theta(t))$ at every time."""
    return (
        jax.vmap(lambda t: sde.decay(0.0, t))(times),
        jax.vmap(sde.marginal_variance)(times),
        jax.vmap(sde.theta)(times),
    )


@eqx.filter_jit
def _posterior_coefficients(sde: sp.MeanRevertingSDE, s, t):
    return jax.vmap(sde.posterior_coefficients)(s, t)


def _padded(fn, sde, *times, block: int = 512) -> list[np.ndarray]:
    """`fn(sde, *times)` on arrays padded (with their last entry) to a multiple of `block`, so
    that every step count reuses one compilation."""
    n = len(times[0])
    size = block * math.ceil(n / block)
    padded = [jnp.asarray(np.concatenate([t, np.full(size - n, t[-1])])) for t in times]
    return [np.asarray(o, dtype=np.float64)[:n] for o in fn(sde, *padded)]


def gaussian_chain_moments(
    sampler: str,
    num_steps: int,
    sde: sp.MeanRevertingSDE,
    m0: float,
    s0: float,
    m_T: float,
    v_T: float,
    jump_aware: bool = True,
) -> tuple[float, float]:
    r"""Exact mean and variance of a sampler's output for 1-D data $x_0 \sim \mathcal N(m_0, s_0^2)$
    started from $x_T \sim \mathcal N(m_T, v_T)$.

    With Gaussian data the score $-(x - m_t)/S_t$ and $E[x_0 \mid x_t]$ are affine in $x$, so one
    step of each sampler is an affine map plus independent Gaussian noise and the output law is
    Gaussian with moments given by a recursion:

    - Euler–Maruyama (diffrax `Euler`, drift and $\sigma$ read at the step's start $t$):
      $x \leftarrow x + h(\alpha_t x + \beta_t) + \sigma_t\,\Delta W$, $h = s - t < 0$,
      $\operatorname{Var}\Delta W = |h|$, where the reverse drift is $\alpha_t x + \beta_t$.
    - Heun (diffrax `Heun`): $k_1 = f(t, x)$, $k_2 = f(s, x + h k_1)$,
      $x \leftarrow x + \tfrac h2 (k_1 + k_2)$. `jump_aware=True` (what the samplers do: they
      split their grid at the rate's jumps) reads $\theta$ inside the step in both stages;
      `False` reads it at the step ends, where a step ending on an integer jump gets the next
      interval's rate (plain `ConstantStepSize`, the samplers before the fix; first order).
    - Posterior: $x \leftarrow \mu + c_t(x - \mu) + c_0(\hat x_0 - \mu) + \sqrt{\tilde\beta}\,z$
      on `linspace(0, T, N + 1)`.

    This is an independent check of the samplers (the test compares them against it) and gives
    the discretisation error without Monte-Carlo noise.
    """
    mu = float(sde.mean)
    lam2 = float(sde.stationary_std) ** 2
    m, V = m_T, v_T

    def marginal(times):
        """Mean and variance of $x_t$, and $a_t = e^{-\\Theta_t}$, at each time."""
        a, v, _ = _padded(_schedule_values, sde, times)
        return mu + (m0 - mu) * a, s0**2 * a**2 + v, a

    if sampler == "posterior":
        times = np.asarray(jnp.linspace(0.0, sde.horizon, num_steps + 1))
        s_all, t_all = times[-2::-1], times[:0:-1]  # (s, t) from the top of the grid down
        m_t, S_t, a = marginal(t_all)
        c_t, c_0, beta = _padded(_posterior_coefficients, sde, s_all, t_all)
        for i in range(num_steps):
            gain = s0**2 * a[i] / S_t[i]  # x0_hat = m0 + gain (x - m_t)
            lin = c_t[i] + c_0[i] * gain
            m = mu + c_t[i] * (m - mu) + c_0[i] * (m0 + gain * (m - m_t[i]) - mu)
            V = lin**2 * V + beta[i]
        return float(m), float(V)

    ts = _diffrax_times(sde.horizon, num_steps)
    ode = sampler == "pf_ode"
    if sampler not in ("pf_ode", "reverse_sde"):
        raise ValueError(sampler)
    weight = 1.0 if ode else 2.0  # the score enters with ½σ² (ODE) or σ² (SDE)
    m_ts, S_ts, _ = marginal(ts)
    theta_ts = _padded(_schedule_values, sde, ts)[2]
    theta_mid = _padded(_schedule_values, sde, 0.5 * (ts[:-1] + ts[1:]))[2]

    def affine(i, theta):
        """(α, β) with reverse drift α x + β at time ts[i]: score -(x - m_t)/S_t, σ² = 2λ²θ."""
        k = weight * lam2 * theta / S_ts[i]
        return -theta + k, theta * mu - k * m_ts[i]

    for i in range(num_steps):
        h = ts[i + 1] - ts[i]
        if ode:
            a1, b1 = affine(i, theta_mid[i] if jump_aware else theta_ts[i])
            a2, b2 = affine(i + 1, theta_mid[i] if jump_aware else theta_ts[i + 1])
            # k1 = a1 x + b1; k2 = a2 (x + h k1) + b2; x' = x + h/2 (k1 + k2)
            lin = 1 + 0.5 * h * (a1 + a2 + h * a2 * a1)
            off = 0.5 * h * (b1 + h * a2 * b1 + b2)
            m, V = lin * m + off, lin**2 * V
        else:
            a1, b1 = affine(i, theta_ts[i])
            lin = 1 + h * a1
            m, V = lin * m + h * b1, lin**2 * V + 2 * lam2 * theta_ts[i] * abs(h)
    return float(m), float(V)


class _ArrayBrownianPath(diffrax.AbstractBrownianPath):
    r"""A Brownian path whose increments over the steps of a known grid are explicit standard
    normals: $W = \sqrt{h}\,z_i$ and space-time Lévy area $H = \sqrt{h/12}\,\eta_i$ (independent
    of $W$, as for Brownian motion). A solver that reads one increment per step then computes
    an affine function of $(x_T, z, \eta)$ on Gaussian data, whose exact law forward-mode
    autodiff gives (see `srk_chain_moments`)."""

    ts: Float[Array, " n1"]
    z: Float[Array, "n *shape"]
    eta: Float[Array, "n *shape"]
    levy_area: type = eqx.field(static=True, default=diffrax.SpaceTimeLevyArea)

    @property
    def t0(self):
        return self.ts[0]

    @property
    def t1(self):
        return self.ts[-1]

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        i = jnp.clip(jnp.searchsorted(self.ts, 0.5 * (t0 + t1)) - 1, 0, self.z.shape[0] - 1)
        h = t1 - t0
        w = jnp.sqrt(h) * self.z[i]
        if not use_levy:
            return w
        return diffrax.SpaceTimeLevyArea(dt=h, W=w, H=jnp.sqrt(h / 12) * self.eta[i])


def srk_chain_moments(
    solver, num_steps: int, sde: sp.MeanRevertingSDE, law: DiagonalMixture, m_T: float, v_T: float
) -> tuple[float, float]:
    r"""The exact mean and variance of `sp.ReverseSDESampler(sde, num_steps, solver)`'s output
    for 1-D Gaussian data (exact score) from $x_T \sim \mathcal N(m_T, v_T)$.

    The score is affine in $x$ and the noise additive, so each step of any Runge–Kutta SDE
    solver is affine in the state and in the step's $(W, H)$. The chain is run on the
    sampler's own grid (`_reverse_step_grid`, split at the rate's jumps) with
    `_ArrayBrownianPath`; its output is affine in $(x_T, z, \eta)$, so the mean is the
    output at $(m_T, 0, 0)$ and the variance is $\sum_k (\partial\,\text{out}/\partial
    \xi_k)^2 \operatorname{Var}\xi_k$ (one reverse-mode gradient, float64).
    """
    from sdepolicy.sde._samplers import _reverse_step_grid, _solve

    T = float(sde.horizon)
    grid = _reverse_step_grid(T, 0.0, num_steps, sde.schedule.jump_times)
    if grid is None:
        grid = np.linspace(0.0, T, num_steps + 1)
    ts = jnp.asarray(grid, jnp.float64)
    n = ts.shape[0] - 1
    score = exact_score(sde, law)

    def out(x_T, z, eta):
        path = _ArrayBrownianPath(ts, z, eta)
        terms = sde.reverse_terms(score, path)
        sol = _solve(terms, solver, 0.0, T, num_steps, x_T, grid=grid)
        return sol.ys[-1, 0, 0]

    x0 = jnp.full((1, 1), m_T)
    zeros = jnp.zeros((n, 1, 1))
    mean = float(out(x0, zeros, zeros))
    jx, jz, jh = jax.grad(out, argnums=(0, 1, 2))(x0, zeros, zeros)
    var = float(jnp.sum(jx**2) * v_T + jnp.sum(jz**2) + jnp.sum(jh**2))
    return mean, var


def gaussian_w1(m1: float, v1: float, m2: float, v2: float) -> float:
    r"""$W_1$ between two 1-D Gaussians: $E|\Delta m + \Delta s\,Z|$ (a folded normal mean)."""
    dm, ds = m1 - m2, abs(math.sqrt(v1) - math.sqrt(v2))
    if ds == 0.0:
        return abs(dm)
    z = dm / ds
    return ds * math.sqrt(2 / math.pi) * math.exp(-0.5 * z * z) + dm * math.erf(z / math.sqrt(2))


def gaussian_exact_table(sde, law: DiagonalMixture, steps, start: str = "marginal") -> dict:
    """For 1-D Gaussian data: every sampler's exact output law and its errors, per N."""
    m0, s0 = float(law.means[0, 0]), float(law.stds[0, 0])
    if start == "marginal":
        law_T = law.propagate(sde, sde.horizon)
        m_T, v_T = float(law_T.means[0, 0]), float(law_T.stds[0, 0]) ** 2
    else:
        m_T, v_T = float(sde.mean), float(sde.stationary_std) ** 2
    table: dict = {}
    variants = [*SAMPLERS, "pf_ode_naive"]
    for name in variants:
        rows = table.setdefault(name, {})
        for N in steps:
            base = "pf_ode" if name == "pf_ode_naive" else name
            m, V = gaussian_chain_moments(
                base, int(N), sde, m0, s0, m_T, v_T, jump_aware=name != "pf_ode_naive"
            )
            rows[str(N)] = {
                "mean": m,
                "var": V,
                "w1": gaussian_w1(m, V, m0, s0**2),
                "mean_error": abs(m - m0),
                "var_error": abs(V - s0**2),
                "var_ratio": V / s0**2,
            }
    return table


# --- the study --------------------------------------------------------------------------------


def study(
    laws: dict[str, DiagonalMixture],
    steps,
    n: int,
    seed: int,
    starts=("marginal", "prior"),
    keep_samples_at=(),
    log=print,
):
    """Errors for every law × start × sampler × step count. Returns (results, kept samples)."""
    sde = make_sde()
    results: dict = {}
    kept: dict = {}
    key = jax.random.key(seed)
    for li, (law_name, law) in enumerate(laws.items()):
        k_law = jax.random.fold_in(key, li)
        results[law_name] = {
            "noise_floor": noise_floor(law, n, jax.random.fold_in(k_law, 999)),
            "true_mean": np.asarray(law.mean()).tolist(),
            "true_cov": np.asarray(law.covariance()).tolist(),
        }
        for si, start in enumerate(starts):
            x_T = starting_states(sde, law, n, jax.random.fold_in(k_law, 100 + si), start)
            per_start = results[law_name].setdefault(start, {})
            # The prior differs from the marginal at T by e^{-Θ_T} = 1e-3 in scale. One step count
            # shows it is below the Monte-Carlo noise (the exact Gaussian chain shows it at every
            # N); the fine grids of the reverse SDE are what the runtime is spent on.
            start_steps = steps if start == "marginal" else [min(steps)]
            for sampler in SAMPLERS:
                rows = per_start.setdefault(sampler, {})
                for N in start_steps:
                    # Same x_T for every sampler and N; fresh but fixed noise per N.
                    k_run = jax.random.fold_in(jax.random.fold_in(k_law, 200 + si), N)
                    t0 = time.perf_counter()
                    x0 = run_sampler(sampler, int(N), sde, law, x_T, k_run)
                    x0 = jax.block_until_ready(x0)
                    row = errors(x0, law)
                    row["seconds"] = time.perf_counter() - t0
                    rows[str(N)] = row
                    if start == "marginal" and N in keep_samples_at and law.dim == 1:
                        kept[(law_name, sampler, int(N))] = np.asarray(x0[:, 0])
                    log(
                        f"{law_name:10s} {start:8s} {sampler:11s} N={N:4d}  "
                        f"W1={row['w1']:.4f}  |Δmean|={row['mean_error']:.4f}  "
                        f"var ratio={row['var_ratio']:.4f}  ({row['seconds']:.1f}s)"
                    )
    return results, kept


SHORT = {"reverse_sde": "SDE", "pf_ode": "ODE", "posterior": "post", "pf_ode_naive": "ODE†"}


def markdown_table(rows_by_sampler: dict, steps, samplers=SAMPLERS, floor=None) -> str:
    """Rows N; for each metric (W1, variance ratio, mean error) one column per sampler."""
    metrics = (("w1", "W1"), ("var_ratio", "var ratio"), ("mean_error", "mean err"))
    head = ["N"] + [f"{label} {SHORT[s]}" for _, label in metrics for s in samplers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for N in steps:
        cells = [str(N)]
        for metric, _ in metrics:
            for s in samplers:
                row = rows_by_sampler[s].get(str(N))
                cells.append("" if row is None else f"{row[metric]:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    if floor is not None:
        cells = ["exact samples"]
        for metric, _ in metrics:
            cells.append(f"{floor[metric + '_mean']:.2g} ± {floor[metric + '_std']:.1g}")
            cells += [""] * (len(samplers) - 1)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prior_table(results: dict, laws, steps) -> str:
    """W1 from the exact marginal at T and from the prior, where both were run."""
    ends = [min(steps)]
    head = ["law", "N"] + [
        f"W1 {SHORT[s]} ({start})" for s in SAMPLERS for start in ("marginal", "prior")
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for law_name in laws:
        for N in ends:
            cells = [law_name, str(N)]
            for s in SAMPLERS:
                for start in ("marginal", "prior"):
                    cells.append(f"{results[law_name][start][s][str(N)]['w1']:.4g}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict, laws, steps, n: int) -> str:
    parts = []
    for law_name in laws:
        parts.append(
            f"### {law_name} (Monte-Carlo, {n} samples, started from the exact marginal at T)\n\n"
            + markdown_table(
                results[law_name]["marginal"], steps, floor=results[law_name]["noise_floor"]
            )
        )
    if "gaussian" in laws:
        exact = results["gaussian"]["exact_chain"]["marginal"]
        parts.append(
            "### gaussian, exact law of each discrete chain (no Monte-Carlo; ODE† = Heun with "
            "the rate read at the step ends, as plain constant steps across the rate's jumps "
            "do)\n\n" + markdown_table(exact, steps, samplers=(*SAMPLERS, "pf_ode_naive"))
        )
    parts.append(
        "### starting from the prior N(0, 1) instead of the marginal at T\n\n"
        + prior_table(results, laws, steps)
    )
    return "\n\n".join(parts) + "\n"


def plot(results, kept, laws, steps, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"reverse_sde": "C3", "pf_ode": "C0", "posterior": "C2"}
    fig, axes = plt.subplots(1, len(laws), figsize=(5.4 * len(laws), 5.6), squeeze=False)
    legend: dict = {}
    for ax, law_name in zip(axes[0], laws, strict=True):
        res = results[law_name]
        exact = res.get("exact_chain", {}).get("marginal")
        for s in SAMPLERS:
            y = [res["marginal"][s][str(N)]["w1"] for N in steps]
            ax.loglog(
                steps,
                y,
                "o" if exact else "-o",
                color=colours[s],
                ms=5,
                label=SAMPLER_LABELS[s] + ": Monte-Carlo",
            )
            if exact:
                ax.loglog(
                    steps,
                    [exact[s][str(N)]["w1"] for N in steps],
                    "-",
                    color=colours[s],
                    lw=1.2,
                    label=SAMPLER_LABELS[s] + ": exact chain law (Gaussian)",
                )
            if "prior" in res:
                ns = sorted(int(N) for N in res["prior"][s])
                ax.loglog(
                    ns,
                    [res["prior"][s][str(N)]["w1"] for N in ns],
                    "x",
                    color=colours[s],
                    ms=9,
                    label=SAMPLER_LABELS[s] + ": started from the prior",
                )
        if exact:
            ax.loglog(
                steps,
                [exact["pf_ode_naive"][str(N)]["w1"] for N in steps],
                "--",
                color="C0",
                lw=1.0,
                label="PF-ODE Heun, θ read across jumps (exact)",
            )
        floor = res["noise_floor"]
        ax.axhspan(
            max(floor["w1_mean"] - 2 * floor["w1_std"], 1e-6),
            floor["w1_mean"] + 2 * floor["w1_std"],
            color="grey",
            alpha=0.3,
            label="W1 of exact samples (mean ± 2 sd)",
        )
        ref = np.array(steps, dtype=float)
        ax.loglog(ref, 1.0 / ref, "k:", lw=0.8, label="∝ 1/N")
        ax.loglog(ref, 2.0 / ref**2, "k-.", lw=0.8, label="∝ 1/N²")
        ax.set_ylim(bottom=1e-5 if exact else 1e-3)
        ax.set_xlabel("steps N")
        ax.set_ylabel(
            "W1 to the data law" + (" (sliced, 4 directions)" if laws[law_name].dim > 1 else "")
        )
        ax.set_title(law_name)
        ax.grid(True, which="both", alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("Exact score, cosine schedule T = 5 (μ = 0, λ = 1): error vs number of steps")
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(out / "convergence.png", dpi=120)
    plt.close(fig)

    one_d = [name for name in laws if laws[name].dim == 1]
    n_lo, n_hi = min(steps), max(steps)
    fig, axes = plt.subplots(len(one_d), 3, figsize=(14, 3.6 * len(one_d)), squeeze=False)
    for row, law_name in zip(axes, one_d, strict=True):
        law = laws[law_name]
        lo = float(jnp.min(law.means - 4 * law.stds))
        hi = float(jnp.max(law.means + 4 * law.stds))
        grid = jnp.linspace(lo, hi, 400)
        density = np.exp(np.asarray(law.log_prob(grid[:, None])))
        bins = np.linspace(lo, hi, 80)
        for ax, s in zip(row, SAMPLERS, strict=True):
            for N, colour in ((n_lo, "C1"), (n_hi, "C0")):
                x = kept[(law_name, s, N)]
                outside = np.mean((x < lo) | (x > hi))
                ax.hist(
                    x,
                    bins=bins,
                    density=True,
                    histtype="stepfilled",
                    alpha=0.35,
                    color=colour,
                    label=f"N={N} ({outside:.1%} outside)",
                )
            ax.plot(np.asarray(grid), density, "k-", lw=1.2, label="data law")
            ax.set_title(f"{law_name}: {SAMPLER_LABELS[s]}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "histograms.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/sde_convergence")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    jax.config.update("jax_enable_x64", True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    laws = {name: make() for name, make in LAWS.items()}
    steps = sorted(args.steps)

    t0 = time.perf_counter()
    results, kept = study(
        laws, steps, args.samples, args.seed, keep_samples_at=(min(steps), max(steps))
    )

    sde = make_sde()
    exact = {
        start: gaussian_exact_table(sde, laws["gaussian"], steps, start)
        for start in ("marginal", "prior")
    }
    results["gaussian"]["exact_chain"] = exact

    summary = {
        "config": {
            "schedule": "cosine_schedule(5)",
            "mu": 0.0,
            "lambda": 1.0,
            "samples": args.samples,
            "steps": steps,
            "seed": args.seed,
            "laws": {
                name: {
                    "weights": np.asarray(law.weights).tolist(),
                    "means": np.asarray(law.means).tolist(),
                    "stds": np.asarray(law.stds).tolist(),
                }
                for name, law in laws.items()
            },
        },
        "results": results,
        "seconds": time.perf_counter() - t0,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1))

    text = report(results, laws, steps, args.samples)
    (out / "table.md").write_text(text)
    print(text)
    plot(results, kept, laws, steps, out)
    print(
        f"wrote {out}/results.json, table.md, convergence.png, histograms.png "
        f"in {summary['seconds']:.0f}s"
    )


if __name__ == "__main__":
    main()
