r"""The SDE floor's training helper (`draw_noised`, `loss_weight`, `denoising_loss`) against
numbers it does not produce (`proofs/training.md`).

- The draws: grid times uniform on $1..N$ (as the policy's steps $+1$), continuous times uniform
  on $[t_{min}, T]$, $x_t = m_t + \sqrt{v_t}\,\varepsilon$ with $\Theta$ from numpy.
- Each weight turns the noise error into the error it names, computed with the closed forms
  `x0_from_noise`, `score_from_noise` and `score`.
- For Gaussian data, the loss of the exact noise predictor is $E_t[d\,a_t^2 s_0^2/V_t]$, and
  its gradient in a scale of the predictor is 0 there and $2(c - 1)E_t[d\,v_t/V_t]$ elsewhere.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy.sde as sp
from sdepolicy.sde import SDEInputError

M0, S0, D = 0.5, 0.5, 2  # Gaussian data N(M0, S0^2 I) in 2-d
Z = 4.5  # two-sided P(|Z| > 4.5) = 6.8e-6 per statistic


def _cum(schedule, t):
    inc = np.asarray(schedule.increments)
    return np.interp(t, np.arange(inc.shape[0] + 1.0), np.concatenate([[0.0], np.cumsum(inc)]))


def test_draws_on_the_grid_and_on_an_interval():
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule, 0.3, 1.2)
    x_0 = jax.random.normal(jax.random.key(0), (4000, D), jnp.float64)
    key = jax.random.key(1)

    @jax.jit  # both draws in one compilation
    def draws(sde, x_0, key):
        grid = sp.draw_noised(sde, x_0, key)
        return grid, sp.draw_noised(sde, x_0, key, continuous=True, t_min=0.5)[0]

    (t, x_t, eps), t_c = draws(sde, x_0, key)
    # The policy's draws (DiffusionPolicy.draw_steps_and_noise) from the same key: steps + 1.
    k_t, k_e = jax.random.split(key)
    steps = jax.random.randint(k_t, (4000,), 0, 5)
    np.testing.assert_array_equal(t, (steps + 1).astype(jnp.float64))
    np.testing.assert_array_equal(eps, jax.random.normal(k_e, (4000, D), jnp.float64))
    counts = np.bincount(np.asarray(t, int), minlength=6)[1:]
    # Each of the 5 counts within 4.5 binomial standard errors (sqrt(4000 * 0.2 * 0.8)).
    assert counts.sum() == 4000 and np.all(np.abs(counts - 800) < Z * math.sqrt(640))
    a = np.exp(-_cum(schedule, np.asarray(t)))[:, None]
    want = 0.3 + a * (np.asarray(x_0) - 0.3) + 1.2 * np.sqrt(1 - a**2) * np.asarray(eps)
    np.testing.assert_allclose(x_t, want, rtol=1e-12, atol=1e-12)
    # Continuous times: uniform on [t_min, T].
    t_c = np.asarray(t_c)
    assert t_c.min() >= 0.5 and t_c.max() <= 5.0
    assert abs(t_c.mean() - 2.75) < Z * (5.0 - 0.5) / math.sqrt(12 * 4000)
    with pytest.raises(SDEInputError, match="t_min"):
        sp.draw_noised(sde, x_0, key, continuous=True, t_min=5.0)


@pytest.mark.parametrize("weighting", ["x0", "score", "likelihood"])
def test_weights_turn_the_noise_error_into_the_named_error(weighting):
    schedule = sp.LinearSchedule(0.3, 1.4, 3.0)
    sde = sp.MeanRevertingSDE(schedule, jnp.asarray([0.2, -0.4]), 0.9)
    x_0, eps = jnp.asarray([0.7, 1.1]), jnp.asarray([-0.3, 0.8])
    eps_hat = jnp.asarray([0.1, 0.5])
    for t in (0.2, 1.3, 2.9):
        x_t = sde.marginal(x_0, t=t).mean + jnp.sqrt(sde.marginal_variance(t)) * eps
        got = sp.loss_weight(sde, t=t, weighting=weighting) * jnp.sum((eps_hat - eps) ** 2)
        if weighting == "x0":
            want = jnp.sum((sde.x0_from_noise(x_t, eps_hat, t=t) - x_0) ** 2)
        else:
            err = jnp.sum((sde.score_from_noise(eps_hat, t=t) - sde.score(x_t, x_0, t=t)) ** 2)
            want = err if weighting == "score" else sde.sigma(t) ** 2 * err
        np.testing.assert_allclose(got, want, rtol=1e-10)
    assert float(sp.loss_weight(sde, t=1.0)) == 1.0
    with pytest.raises(SDEInputError, match="weighting"):
        sp.loss_weight(sde, t=1.0, weighting="snr")


def test_gaussian_loss_minimum_and_gradient():
    r"""Exact predictor $\hat\varepsilon = c\sqrt{v_t}(x_t - M_t)/V_t$ at $c = 1$: the loss is
    $E_t[d\,a_t^2s_0^2/V_t]$ (the minimum, `proofs/training.md` §2) within 4.5 standard errors
    of 20,000 draws, its derivative in $c$ is 0 there and $2(c - 1)E_t[d\,v_t/V_t]$ at
    $c = 1.3$; `args_axis` hands per-sample arguments to the predictor."""
    n = 20_000
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule)
    x_0 = M0 + S0 * jax.random.normal(jax.random.key(2), (n, D), jnp.float64)

    def predict(t, x, c):
        a = jnp.exp(-sde.schedule.cumulative(t))
        v = 1 - a**2
        big_v = a**2 * S0**2 + v
        return c * jnp.sqrt(v) * (x - a * M0) / big_v

    def losses(c, k):
        # The same loss with c per sample (args_axis=0) rides along as the auxiliary output.
        per_sample = sp.denoising_loss(sde, predict, x_0, k, jnp.full(n, c), args_axis=0)
        return sp.denoising_loss(sde, predict, x_0, k, c), per_sample

    loss = jax.jit(jax.value_and_grad(losses, has_aux=True))
    key = jax.random.key(3)
    (value, per_sample), grad = loss(jnp.asarray(1.0), key)
    np.testing.assert_allclose(per_sample, value, rtol=1e-12)
    a = np.exp(-_cum(schedule, np.arange(1.0, 6.0)))
    v = 1 - a**2
    big_v = a**2 * S0**2 + v
    resid = a**2 * S0**2 / big_v  # Var(eps | x_t) per dimension
    want = D * resid.mean()
    # Per draw: sum over D of resid_t chi^2_1 -> variance over t of D resid_t plus 2 D resid_t^2.
    se = math.sqrt(np.mean(2 * D * resid**2) + np.var(D * resid)) / math.sqrt(n)
    assert abs(float(value) - want) < Z * se
    # d/dc E (c e* - eps)^2 = 2 E[e* (c e* - eps)] = 2 (c - 1) E e*^2, E e*^2 = v_t / V_t.
    e2 = D * (v / big_v).mean()
    assert abs(float(grad)) < Z * math.sqrt(4 * e2 / n)
    # The gradient is affine in c: on the same draws, grad(1.3) - grad(1) = 0.6 mean(e*^2),
    # whose relative standard error is about 1 % here.
    (value_13, _), grad_13 = loss(jnp.asarray(1.3), key)
    np.testing.assert_allclose(float(grad_13 - grad), 2 * 0.3 * e2, rtol=0.05)
    assert float(value_13) > float(value)
