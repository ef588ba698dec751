r"""The posterior $p(x_s \mid x_t, x_0)$ against numbers it did not produce.

- numerical Gaussian conditioning (numpy, Schur complement) of the joint law of $(x_s, x_t)$
  given $x_0$, for any $s < t$;
- the paper's Proposition 3.1 written out for adjacent grid steps;
- the mean as the argmax of $\log p(x_t \mid x_s) + \log p(x_s \mid x_0)$ (gradients and
  curvature by `jax.grad` / `jax.hessian`);
- the limits $s \to 0$ and $s \to t$;
- DDPM's $q(x_{i-1} \mid x_i, x_0)$ in betas and alpha-bars;
- `DiagonalGaussian` against `scipy.stats.norm` and numerical integration.
"""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.stats
from _sde_strategies import (
    SHAPES,
    condition_gaussian,
    means,
    rng_array,
    schedules,
    times,
)
from hypothesis import given, settings

import sdepolicy.sde as sp


@st.composite
def _setup(draw, shapes=SHAPES, kinds=None):
    schedule = draw(schedules() if kinds is None else schedules(kinds=kinds))
    shape = draw(st.sampled_from(shapes))
    mu = draw(means(shape))
    lam = draw(st.floats(0.2, 3.0))
    seed = draw(st.integers(0, 2**31 - 1))
    x_0 = jnp.asarray(rng_array(seed, shape, 2.0))
    x_t = jnp.asarray(rng_array(seed + 1, shape, 2.0))
    return sp.MeanRevertingSDE(schedule, mu, lam), shape, mu, lam, x_0, x_t


@settings(max_examples=15)
@given(data=st.data())
def test_posterior_is_gaussian_conditioning(data):
    r"""Joint law given $x_0$, per element: $x_s \sim \mathcal N(m_s, V_s)$,
    $x_t \sim \mathcal N(m_t, V_t)$, $\operatorname{Cov}(x_s, x_t) = e^{-\Theta(s,t)} V_s$;
    conditioning on all of $x_t$ (a $2d \times 2d$ covariance) gives the posterior."""
    sde, shape, mu, lam, x_0, x_t = data.draw(_setup())
    s, t = data.draw(times(sde.schedule, 2, min_gap_frac=0.02))
    d = int(np.prod(shape))
    at_s = sde.transition(x_0, s=0.0, t=s)
    at_t = sde.transition(x_0, s=0.0, t=t)
    b = float(sde.decay(s, t))
    v_s = float(at_s.variance)
    v_t = float(at_t.variance)
    mean = np.concatenate([np.ravel(at_s.mean), np.ravel(at_t.mean)])
    cov = np.block([[v_s * np.eye(d), b * v_s * np.eye(d)], [b * v_s * np.eye(d), v_t * np.eye(d)]])
    cond_mean, cond_cov = condition_gaussian(mean, cov, np.arange(d, 2 * d), np.ravel(x_t))
    post = sde.posterior(x_t, x_0, s=s, t=t)
    assert post.mean.shape == shape
    np.testing.assert_allclose(np.ravel(post.mean), cond_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        np.broadcast_to(post.variance, (d,)), np.diag(cond_cov), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(cond_cov - np.diag(np.diag(cond_cov)), 0.0, atol=1e-12)


@settings(max_examples=15)
@given(data=st.data())
def test_adjacent_steps_are_proposition_3_1(data):
    r"""ER-DP-QE Prop. 3.1 ($\mu = 0$, $\lambda = 1$, $\theta'_t = \Theta(t-1, t)$,
    $\bar\Theta_t = \sum_{i \le t}\theta'_i$), written from the increments; the general
    $\mu, \lambda$ case is the same formula applied to $x - \mu$, with variance times
    $\lambda^2$."""
    schedule = data.draw(schedules(kinds=("piecewise", "cosine", "vp", "linear_theta")))
    inc = np.asarray(schedule.increments)
    n = inc.shape[0]
    t = data.draw(st.integers(1, n))
    cum = np.concatenate([[0.0], np.cumsum(inc)])
    th_prev, th_t, step = cum[t - 1], cum[t], inc[t - 1]
    den = 1 - math.exp(-2 * th_t)
    c_xt = (1 - math.exp(-2 * th_prev)) * math.exp(-step) / den
    c_x0 = (1 - math.exp(-2 * step)) * math.exp(-th_prev) / den
    var = (1 - math.exp(-2 * th_prev)) * (1 - math.exp(-2 * step)) / den

    shape = data.draw(st.sampled_from(SHAPES))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x_0 = rng_array(seed, shape, 2.0)
    x_t = rng_array(seed + 1, shape, 2.0)
    post = sp.MeanRevertingSDE(schedule).posterior(jnp.asarray(x_t), jnp.asarray(x_0), s=t - 1, t=t)
    np.testing.assert_allclose(post.mean, c_xt * x_t + c_x0 * x_0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.variance, var, rtol=1e-10, atol=1e-14)

    mu = data.draw(means(shape))
    lam = data.draw(st.floats(0.2, 3.0))
    post = sp.MeanRevertingSDE(schedule, mu, lam).posterior(
        jnp.asarray(x_t), jnp.asarray(x_0), s=t - 1, t=t
    )
    expected = mu + c_xt * (x_t - mu) + c_x0 * (x_0 - mu)
    np.testing.assert_allclose(post.mean, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.variance, lam**2 * var, rtol=1e-10, atol=1e-14)


@settings(max_examples=6)  # eager autodiff is slow; 6 examples x up to 6 elements
@given(data=st.data())
def test_posterior_mean_is_the_argmax(data):
    r"""$f(x_s) = \log p(x_t \mid x_s) + \log p(x_s \mid x_0)$ from the transition log
    densities is, as a function of $x_s$, $\log p(x_s \mid x_t, x_0)$ + const: its gradient
    vanishes at $\tilde\mu$, its curvature is $-1/\tilde\beta$, and one Newton step from
    anywhere lands on $\tilde\mu$ (docs/method.md §1, "optimal reverse path")."""
    sde, shape, mu, lam, x_0, x_t = data.draw(_setup(shapes=[(3,), (2, 3)]))
    # 0 < s < t <= T with gaps (the log density of x_s | x_0 needs s > 0).
    u_s, u_t = data.draw(st.floats(0.0, 1.0)), data.draw(st.floats(0.0, 1.0))
    s = sde.horizon * (0.05 + 0.45 * u_s)
    t = s + sde.horizon * (0.05 + 0.45 * u_t)

    def log_joint(x_s):
        later = sde.transition(x_s, s=s, t=t).log_prob(x_t)
        return later + sde.transition(x_0, s=0.0, t=s).log_prob(x_s)

    post = sde.posterior(x_t, x_0, s=s, t=t)
    beta = float(post.variance)
    grad_at_mean = jax.grad(log_joint)(post.mean)
    np.testing.assert_allclose(grad_at_mean, 0.0, atol=1e-8 / beta)
    # Curvature along a random direction v (a Hessian-vector product): H v = -v / beta.
    v = jnp.asarray(rng_array(11, shape))
    _, hess_v = jax.jvp(jax.grad(log_joint), (post.mean,), (v,))
    np.testing.assert_allclose(hess_v, -v / beta, rtol=1e-8, atol=1e-8 / beta)
    x_any = post.mean + jnp.asarray(rng_array(3, shape, 3.0))
    newton = x_any + beta * jax.grad(log_joint)(x_any)
    np.testing.assert_allclose(newton, post.mean, rtol=1e-8, atol=1e-8)


@settings(max_examples=15)
@given(data=st.data())
def test_posterior_limits(data):
    """$s \\to 0$: the posterior collapses onto $x_0$ (exactly at $s = 0$); $s \\to t$: onto
    $x_t$."""
    sde, shape, mu, lam, x_0, x_t = data.draw(_setup())
    (t,) = data.draw(times(sde.schedule, 1))
    t = max(t, 0.1 * sde.horizon)
    exact = sde.posterior(x_t, x_0, s=0.0, t=t)
    np.testing.assert_allclose(exact.mean, x_0, rtol=1e-13, atol=1e-13)
    assert float(exact.variance) == 0.0
    near = sde.posterior(x_t, x_0, s=1e-7 * t, t=t)
    np.testing.assert_allclose(near.mean, x_0, atol=1e-5)
    assert 0 < float(near.variance) < 1e-5 * lam**2
    close = sde.posterior(x_t, x_0, s=t * (1 - 1e-7), t=t)
    np.testing.assert_allclose(close.mean, x_t, atol=1e-5)
    assert 0 < float(close.variance) < 1e-5 * lam**2


@given(betas=st.lists(st.floats(1e-4, 0.99), min_size=1, max_size=20), data=st.data())
def test_ddpm_posterior(betas, data):
    r"""DDPM (Ho et al. eq. 7): $\tilde\mu = \frac{\sqrt{\bar\alpha_{i-1}}\beta_i}{1-\bar\alpha_i}
    x_0 + \frac{\sqrt{\alpha_i}(1-\bar\alpha_{i-1})}{1-\bar\alpha_i} x_i$,
    $\tilde\beta = \frac{1-\bar\alpha_{i-1}}{1-\bar\alpha_i}\beta_i$, is the posterior of
    `ddpm_schedule(betas)`; with the VP betas, of `vp_schedule`."""
    use_vp = data.draw(st.booleans())
    n = len(betas)
    betas = sp.vp_betas(n) if use_vp else np.asarray(betas)
    schedule = sp.vp_schedule(n) if use_vp else sp.ddpm_schedule(betas)
    i = data.draw(st.integers(1, n))
    alphas = 1 - betas
    abar = np.concatenate([[1.0], np.cumprod(alphas)])
    mean_x0 = math.sqrt(abar[i - 1]) * betas[i - 1] / (1 - abar[i])
    mean_xi = math.sqrt(alphas[i - 1]) * (1 - abar[i - 1]) / (1 - abar[i])
    var = (1 - abar[i - 1]) / (1 - abar[i]) * betas[i - 1]
    seed = data.draw(st.integers(0, 2**31 - 1))
    x_0, x_i = rng_array(seed, (4,)), rng_array(seed + 1, (4,))
    post = sp.MeanRevertingSDE(schedule).posterior(jnp.asarray(x_i), jnp.asarray(x_0), s=i - 1, t=i)
    np.testing.assert_allclose(post.mean, mean_x0 * x_0 + mean_xi * x_i, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.variance, var, rtol=1e-10, atol=1e-15)


# --- DiagonalGaussian ------------------------------------------------------------------------


@given(
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2**31 - 1),
    scalar_var=st.booleans(),
)
def test_diagonal_gaussian_log_prob_and_entropy(shape, seed, scalar_var):
    mean = rng_array(seed, shape, 2.0)
    var = (
        np.float64(0.3 + abs(rng_array(seed + 1, ())))
        if scalar_var
        else 0.1 + np.abs(rng_array(seed + 1, shape, 2.0))
    )
    x = rng_array(seed + 2, shape, 2.0)
    law = sp.DiagonalGaussian(jnp.asarray(mean), jnp.asarray(var))
    std = np.sqrt(np.broadcast_to(var, shape))
    ref = scipy.stats.norm(loc=mean, scale=std)
    np.testing.assert_allclose(law.log_prob_elementwise(jnp.asarray(x)), ref.logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(law.log_prob(jnp.asarray(x)), np.sum(ref.logpdf(x)), rtol=1e-12)
    np.testing.assert_allclose(law.entropy(), np.sum(ref.entropy()), rtol=1e-12)
    np.testing.assert_allclose(law.std, np.sqrt(var), rtol=1e-14)


def test_diagonal_gaussian_entropy_by_quadrature():
    r"""$-\int p \log p$ by quadrature, per element, summed."""
    mean = np.array([0.3, -1.0])
    var = np.array([0.05, 4.0])
    law = sp.DiagonalGaussian(jnp.asarray(mean), jnp.asarray(var))
    total = 0.0
    for m, v in zip(mean, var, strict=True):

        def integrand(x, m=m, v=v):
            logp = -0.5 * (x - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v)
            return -math.exp(logp) * logp

        total += scipy.integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-13)[0]
    np.testing.assert_allclose(law.entropy(), total, rtol=1e-9)


def test_diagonal_gaussian_sample_moments():
    """20000 draws of a 3-d Gaussian: 6 statistics within 4.5 standard errors (false-failure
    rate for a correct sampler ≈ 6 × 6.8e-6 = 4e-5 for this fixed seed)."""
    n = 20_000
    mean = jnp.asarray([1.0, -2.0, 0.5])
    var = jnp.asarray([0.5, 2.0, 1.0])
    law = sp.DiagonalGaussian(mean, var)
    samples = np.asarray(jax.vmap(law.sample)(jax.random.split(jax.random.key(5), n)))
    var_np = np.asarray(var)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 4.5 * np.sqrt(var_np / n))
    np.testing.assert_array_less(
        np.abs(samples.var(0, ddof=1) - var_np), 4.5 * var_np * np.sqrt(2 / (n - 1))
    )
