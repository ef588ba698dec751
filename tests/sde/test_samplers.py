r"""Samplers: the hand-written `lax.scan` posterior chain, the diffrax reverse SDE and the
probability-flow ODE.

DESIGN.md: the hot path (a `lax.scan` over the grid) and the diffrax reference "must agree, and
a test says so". Here:

- `PosteriorSampler` equals the posterior-transition chain written out in a Python loop with
  the formulas of docs/method.md §1 (same keys), and one step has the posterior law (Monte Carlo against
  numpy Gaussian conditioning);
- for a Gaussian data law, whose scores and $E[x_0 \mid x_t]$ are known in closed form, the
  exact law of the posterior chain (propagated step by step in numpy) approaches the data law
  as the grid refines, and at N = 200 the posterior sampler and the diffrax reverse SDE both
  reproduce the data law within Monte-Carlo tolerance;
- the probability-flow ODE with an adaptive controller transports quantiles exactly;
- all three samplers work under `jit`, `vmap` and `grad` (checked against finite differences).
"""

import math

import diffrax
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sde_strategies import condition_gaussian, means, rng_array, schedules, times
from hypothesis import given, settings

import sdepolicy.sde as sp

# --- a Gaussian data law: everything in closed form ---------------------------------------------

MU = np.array([0.5, -1.0])
LAM = 1.5
DATA_MEAN = np.array([2.0, 1.0])
DATA_STD = np.array([0.3, 0.8])
Z = 4.5  # two-sided P(|Z| > 4.5) = 6.8e-6 per statistic


def _gaussian_law(schedule, t):
    r"""$x_t \sim \mathcal N(M_t, V_t)$ when $x_0 \sim \mathcal N(m_0, s_0^2)$: (a_t, M_t, V_t)."""
    big = schedule.cumulative(t)
    a = jnp.exp(-big)
    return a, MU + (DATA_MEAN - MU) * a, a**2 * DATA_STD**2 + LAM**2 * -jnp.expm1(-2 * big)


def _exact_score(schedule):
    def score(t, x, args):
        # broadcast_to: strict rank promotion forbids (2,) against a batch (paths, 2).
        _, m, v = (jnp.broadcast_to(u, x.shape) for u in _gaussian_law(schedule, t))
        return -(x - m) / v

    return score


def _exact_x0(schedule):
    r"""$E[x_0 \mid x_t] = m_0 + s_0^2 a_t (x_t - M_t) / V_t$."""

    def predict(t, x, args):
        a, m, v = _gaussian_law(schedule, t)
        return DATA_MEAN + DATA_STD**2 * a * (x - m) / v  # per path (under vmap): shape (2,)

    return predict


def _chain_law_numpy(schedule, grid, m_T, v_T):
    """The exact (Gaussian) law of the posterior chain with the exact E[x0|x_t] predictor,
    propagated through the grid in numpy with docs/method.md §1's posterior written out here."""
    # Θ at the grid from the increments (piecewise-linear interpolation of their cumulative
    # sums), independently of `schedule.cumulative`.
    inc = np.asarray(schedule.increments)
    knots = np.concatenate([[0.0], np.cumsum(inc)])
    cum = np.interp(grid, np.arange(inc.shape[0] + 1.0), knots)
    m, v = np.array(m_T, dtype=float), np.array(v_T, dtype=float)
    for i in range(len(grid) - 1, 0, -1):
        th_s, th_t = cum[i - 1], cum[i]
        th_st = th_t - th_s
        den = -np.expm1(-2 * th_t)
        c_t = -np.expm1(-2 * th_s) * np.exp(-th_st) / den
        c_0 = -np.expm1(-2 * th_st) * np.exp(-th_s) / den
        beta = LAM**2 * -np.expm1(-2 * th_s) * -np.expm1(-2 * th_st) / den
        a_t = np.exp(-th_t)
        m_t = MU + (DATA_MEAN - MU) * a_t
        v_t = a_t**2 * DATA_STD**2 + LAM**2 * -np.expm1(-2 * th_t)
        k = DATA_STD**2 * a_t / v_t  # x0_hat = DATA_MEAN + k (x - m_t)
        # x_s - MU = c_t (x - MU) + c_0 (x0_hat - MU) + sqrt(beta) z: affine in x.
        slope = c_t + c_0 * k
        offset = MU + c_t * (-MU) + c_0 * (DATA_MEAN - k * m_t - MU)
        m, v = offset + slope * m, slope**2 * v + beta
    return m, v


def test_posterior_chain_law_converges_to_the_data_law():
    """Deterministic: the exact law of the chain at t = 0 approaches N(m0, s0^2) as the grid
    refines. The mean is exact on any grid; the variance is not: each step drops
    c_0^2 Var(x0 | x_t) (the plug-in x0_hat replaces x0), and near t = 0, where c_0 ~ h/t, these
    add up to O(h log(1/h)). Measured relative variance errors (s0 = 0.3, 0.8; λ = 1.5; cosine
    T = 5): N = 5: -0.93, -0.74; N = 20: -0.75, -0.41; N = 200: -0.30, -0.10;
    N = 2000: -0.073, -0.017."""
    schedule = sp.cosine_schedule(5)
    _, m_T, v_T = _gaussian_law(schedule, 5.0)
    errors = []
    for n in (5, 20, 200, 2000):
        m, v = _chain_law_numpy(schedule, np.linspace(0.0, 5.0, n + 1), m_T, v_T)
        np.testing.assert_allclose(m, DATA_MEAN, rtol=1e-10)
        assert np.all(v < DATA_STD**2)  # always under-dispersed
        errors.append(np.abs(v / DATA_STD**2 - 1))
    errors = np.array(errors)
    assert np.all(np.diff(errors, axis=0) < 0)
    assert np.all(errors[-1] < 0.1)
    # The last step alone shows the mechanism: from t_1 the chain returns E[x0 | x_{t_1}],
    # whose variance is s0^2 times the signal fraction a^2 s0^2 / V_{t_1}.
    a, _, v1 = _gaussian_law(schedule, 1.0)
    _, v_last = _chain_law_numpy(schedule, np.array([0.0, 1.0]), *_gaussian_law(schedule, 1.0)[1:])
    np.testing.assert_allclose(v_last, DATA_STD**2 * a**2 * DATA_STD**2 / v1, rtol=1e-12)


# --- PosteriorSampler: exactness and the written-out chain ----------------------------------------


@settings(max_examples=4)  # each example compiles a scan
@given(data=st.data())
def test_true_x0_predictor_lands_on_x0(data):
    schedule = data.draw(schedules())
    grid = data.draw(times(schedule, data.draw(st.integers(2, 6)), min_gap_frac=0.05))
    grid[0], grid[-1] = 0.0, float(schedule.horizon)  # the gaps keep the grid increasing
    shape = data.draw(st.sampled_from([(3,), (2, 3)]))
    mu = data.draw(means(shape))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x_0 = jnp.asarray(rng_array(seed, shape, 2.0))
    sde = sp.MeanRevertingSDE(schedule, mu, data.draw(st.floats(0.2, 3.0)))
    sampler = sp.PosteriorSampler(sde, times=jnp.asarray(grid))
    x_T = sde.prior(shape).sample(jax.random.key(seed % 1000))
    out = sampler(lambda t, x, args: x_0, x_T, jax.random.key(1))
    np.testing.assert_allclose(out, x_0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "make, grid",
    [
        (lambda: sp.cosine_schedule(5), None),
        (lambda: sp.vp_schedule(7), None),
        (lambda: sp.LinearSchedule(0.2, 1.7, 3.0), np.array([0.0, 0.1, 0.7, 1.2, 2.5, 3.0])),
    ],
    ids=["cosine5", "vp7", "linear-custom-grid"],
)
def test_scan_sampler_equals_a_python_loop(make, grid):
    r"""Same keys, the posterior written out from $\Theta$ in numpy: identical paths."""
    schedule = make()
    shape = (2, 3)
    mu = rng_array(0, shape)
    lam = 0.7
    sde = sp.MeanRevertingSDE(schedule, mu, lam)
    sampler = sp.PosteriorSampler(sde, times=grid)
    grid = np.asarray(sampler.times) if grid is None else grid
    weights = jnp.asarray(rng_array(1, (3, 3)))

    def predict(t, x, args):  # a nonlinear, time-dependent x0 predictor
        return 2.0 * jnp.tanh(x @ weights) + 0.1 * t

    x_T = jnp.asarray(rng_array(2, shape))
    key = jax.random.key(3)
    out, path = sampler(predict, x_T, key, return_path=True)

    keys = jax.random.split(key, len(grid) - 1)
    x = np.asarray(x_T)
    expected_path = [x]
    for j, i in enumerate(range(len(grid) - 1, 0, -1)):
        s, t = grid[i - 1], grid[i]
        th_s, th_t = float(schedule.cumulative(s)), float(schedule.cumulative(t))
        x0_hat = np.asarray(predict(jnp.asarray(t), jnp.asarray(x), None))
        den = 1 - math.exp(-2 * th_t)
        c_t = (1 - math.exp(-2 * th_s)) * math.exp(-(th_t - th_s)) / den
        c_0 = (1 - math.exp(-2 * (th_t - th_s))) * math.exp(-th_s) / den
        beta = lam**2 * (1 - math.exp(-2 * th_s)) * (1 - math.exp(-2 * (th_t - th_s))) / den
        z = np.asarray(jax.random.normal(keys[j], shape, jnp.float64))
        x = mu + c_t * (x - mu) + c_0 * (x0_hat - mu) + math.sqrt(beta) * z
        expected_path.append(x)
    np.testing.assert_allclose(out, x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(path, np.stack(expected_path), rtol=1e-10, atol=1e-10)


def test_one_step_has_the_posterior_law():
    """20000 draws of one step x_t -> x_s (s, t off the integer grid) against the posterior
    built by numpy Gaussian conditioning with x0_hat = predict(t, x_t). 6 statistics within 4.5
    standard errors: false-failure rate ≈ 4e-5 for this fixed seed. s and t are close enough
    that both x_t and x0_hat weigh in the mean (coefficients 0.30 and 0.16 here), so a wrong
    coefficient moves it by many standard errors."""
    n = 20_000
    schedule = sp.cosine_schedule(5)
    mu = np.array([0.5, -1.0, 0.0])
    lam = 1.3
    sde = sp.MeanRevertingSDE(schedule, mu, lam)
    sampler = sp.PosteriorSampler(sde)
    s, t = 2.6, 3.3
    x_t = jnp.asarray([2.0, -3.0, 1.5])

    def predict(t, x, args):
        return jnp.sin(x) + t

    step = jax.jit(jax.vmap(lambda k: sampler.step(predict, x_t, k, s=s, t=t)[0]))
    samples = np.asarray(step(jax.random.split(jax.random.key(7), n)))

    x0_hat = np.sin(np.asarray(x_t)) + t
    big_s, big_t = float(schedule.cumulative(s)), float(schedule.cumulative(t))
    v_s = lam**2 * (1 - math.exp(-2 * big_s))
    v_t = lam**2 * (1 - math.exp(-2 * big_t))
    b = math.exp(-(big_t - big_s))
    cond_mean, cond_var = [], []
    for i in range(3):
        m_s = mu[i] + (x0_hat[i] - mu[i]) * math.exp(-big_s)
        m_t = mu[i] + (x0_hat[i] - mu[i]) * math.exp(-big_t)
        cm, cc = condition_gaussian(
            np.array([m_s, m_t]),
            np.array([[v_s, b * v_s], [b * v_s, v_t]]),
            np.array([1]),
            np.array([float(x_t[i])]),
        )
        cond_mean.append(cm[0])
        cond_var.append(cc[0, 0])
    cond_mean, cond_var = np.array(cond_mean), np.array(cond_var)
    np.testing.assert_array_less(np.abs(samples.mean(0) - cond_mean), Z * np.sqrt(cond_var / n))
    # Power: the x_t term alone is worth > 20 standard errors of the mean.
    c_t = (1 - math.exp(-2 * big_s)) * b / (1 - math.exp(-2 * big_t))
    assert np.all(np.abs(c_t * (np.asarray(x_t) - mu)) > 20 * np.sqrt(cond_var / n))
    np.testing.assert_array_less(
        np.abs(samples.var(0, ddof=1) - cond_var), Z * cond_var * np.sqrt(2 / (n - 1))
    )


def test_x0_and_output_clipping():
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule)
    x_T = jnp.asarray([0.3, -2.0, 4.0])
    key = jax.random.key(0)
    clipped = sp.PosteriorSampler(sde, x0_bounds=(-1.0, 1.0))
    # A predictor far outside the box: every x0_hat is clipped, and the last step (variance 0,
    # coefficient 1 on x0_hat) lands exactly on the clipped value.
    far = jnp.asarray([5.0, -7.0, 0.25])
    out = clipped(lambda t, x, args: far, x_T, key)
    np.testing.assert_allclose(out, [1.0, -1.0, 0.25], rtol=1e-12, atol=1e-12)
    _, x0_hat = clipped.step(lambda t, x, args: far, x_T, key, s=2.0, t=3.0)
    np.testing.assert_array_equal(x0_hat, [1.0, -1.0, 0.25])

    # output_bounds clip only the returned sample: equal to clipping the unbounded chain.
    def predict(t, x, args):
        return 3.0 * jnp.tanh(x)

    free = sp.PosteriorSampler(sde)(predict, x_T, key)
    boxed = sp.PosteriorSampler(sde, output_bounds=(-0.5, 0.5))(predict, x_T, key)
    np.testing.assert_array_equal(boxed, jnp.clip(free, -0.5, 0.5))
    assert np.any(np.abs(np.asarray(free)) > 0.5)


@pytest.mark.parametrize(
    "build",
    [
        lambda sde: sp.PosteriorSampler(sde, times=jnp.asarray([0.0, 2.0, 1.0])),
        lambda sde: sp.PosteriorSampler(sde, times=jnp.asarray([-1.0, 2.0])),
        lambda sde: sp.PosteriorSampler(sde, times=jnp.asarray([0.0])),
        # no integer horizon, so no default grid
        lambda sde: sp.PosteriorSampler(sp.MeanRevertingSDE(sp.ConstantSchedule(1.0, 2.5))),
        lambda sde: sp.ReverseSDESampler(sde, 0),
        lambda sde: sp.ReverseSDESampler(sde, 10, brownian="nope"),
        lambda sde: sp.ProbabilityFlowSampler(sde, 0),
    ],
)
def test_sampler_validation(build):
    with pytest.raises(ValueError):
        build(sp.MeanRevertingSDE(sp.cosine_schedule(5)))


# --- jit, vmap, grad ------------------------------------------------------------------------------


class _X0Pred(eqx.Module):
    """An x0 predictor with a parameter `c` (an `eqx.Module`, so `c` stays a dynamic leaf and
    the samplers' compiled code is reused across values of `c`)."""

    c: jax.Array

    def __call__(self, t, x, args):
        return self.c * jnp.tanh(x) + 0.3 * self.c**2


class _Score(eqx.Module):
    c: jax.Array
    sde: sp.MeanRevertingSDE

    def __call__(self, t, x, args):
        v = self.sde.marginal_variance(t) + 0.5
        return -(x - self.c) / v + 0.1 * self.c * jnp.sin(x)


def _samplers_with_param():
    """(name, f(c, x_T, key)) for each sampler, with c a parameter of the predictor/score."""
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule, jnp.asarray([0.2, -0.4, 0.1]), 1.2)
    post = sp.PosteriorSampler(sde)
    rev = sp.ReverseSDESampler(sde, 20)
    flow = sp.ProbabilityFlowSampler(sde, 20)
    return [
        ("posterior", lambda c, x, k: post(_X0Pred(c), x, k)),
        ("reverse_sde", lambda c, x, k: rev(_Score(c, sde), x, k)),
        ("probability_flow", lambda c, x, k: flow(_Score(c, sde), x)),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["posterior", "reverse_sde", "probability_flow"])
def test_samplers_under_jit_vmap_grad(index):
    """One compilation of jit(value_and_grad(loss over a vmapped batch)) is checked against
    eager (un-batched, outside any user jit) calls: the batch equals the calls one by one, and
    the gradient wrt the predictor/score parameter equals central finite differences of the
    eager loss (float64, h = 1e-5: truncation ~1e-10, rounding ~1e-11 relative)."""
    _, f = _samplers_with_param()[index]
    c = jnp.asarray(0.7)
    xs = jnp.asarray(rng_array(1, (4, 3)))
    keys = jax.random.split(jax.random.key(5), 4)

    def batched_loss(c):
        out = jax.vmap(f, in_axes=(None, 0, 0))(c, xs, keys)
        return jnp.sum(out**2), out

    (_, batched), grad = jax.jit(jax.value_and_grad(batched_loss, has_aux=True))(c)

    def eager_loss(c):
        return sum(jnp.sum(f(c, xs[i], keys[i]) ** 2) for i in range(4))

    one_by_one = np.stack([f(c, xs[i], keys[i]) for i in range(4)])
    assert np.all(np.isfinite(one_by_one))
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-12, atol=1e-12)
    eps = 1e-5
    fd = (eager_loss(c + eps) - eager_loss(c - eps)) / (2 * eps)
    assert np.isfinite(grad) and abs(grad) > 1e-3
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


# --- the diffrax samplers against the data law and the posterior chain ------------------------

MC_PATHS = 3000
STEPS = 200


def test_reverse_sde_and_posterior_sampler_in_distribution():
    r"""Gaussian data law in 2-d, exact score and exact $E[x_0 \mid x_t]$, 200 steps each,
    3000 paths each, started from the same draws of the exact $p_T$.

    - `ReverseSDESampler` (a VirtualBrownianTree, from T = 5 down to 0, Heun) reproduces the
      data law: 2 means and 2 variances within 4.5 standard errors. (Heun's deterministic mean
      bias, computed by an ODE solve of the mean, is < 0.4 standard errors; the default Euler
      has an O(h) variance bias of about 5 standard errors on the narrow component here.)
    - `PosteriorSampler` on the uniform 200-step grid reproduces the exact law of the posterior
      chain, propagated independently in numpy: 4 statistics within 4.5 standard errors.
    - The two agree: equal means within 4.5 standard errors of the difference, and variances
      that differ by the chain's known deficit (-30% / -10% at N = 200, shrinking as the grid
      refines: `test_posterior_chain_law_converges_to_the_data_law`) within 4.5 standard errors.

    10 statistics at 4.5 standard errors: false-failure rate ≈ 10 × 6.8e-6 = 7e-5 for these
    fixed seeds.
    """
    schedule = sp.cosine_schedule(5)
    horizon = 5.0
    _, m_T, v_T = _gaussian_law(schedule, horizon)
    noise = jax.random.normal(jax.random.key(10), (MC_PATHS, 2), jnp.float64)
    x_T = m_T[None] + jnp.sqrt(v_T)[None] * noise

    # Reverse SDE on the whole batch at once (one Brownian tree of shape (paths, 2)); μ is
    # broadcast to the batch because strict rank promotion forbids (2,) against (paths, 2).
    batch_sde = sp.MeanRevertingSDE(schedule, jnp.broadcast_to(MU, (MC_PATHS, 2)), LAM)
    score = _exact_score(schedule)
    reverse = sp.ReverseSDESampler(batch_sde, STEPS, solver=diffrax.Heun())
    rev = np.asarray(jax.jit(lambda x, k: reverse(score, x, k))(x_T, jax.random.key(11)))

    sde = sp.MeanRevertingSDE(schedule, MU, LAM)
    grid = np.linspace(0.0, horizon, STEPS + 1)
    posterior = sp.PosteriorSampler(sde, times=jnp.asarray(grid))
    predict = _exact_x0(schedule)
    post = np.asarray(
        jax.jit(jax.vmap(lambda x, k: posterior(predict, x, k)))(
            x_T, jax.random.split(jax.random.key(12), MC_PATHS)
        )
    )
    chain_mean, chain_var = _chain_law_numpy(schedule, grid, m_T, v_T)

    def se(var):
        return np.sqrt(var / MC_PATHS), var * np.sqrt(2 / (MC_PATHS - 1))

    data_var = DATA_STD**2
    se_mean, se_var = se(data_var)
    np.testing.assert_array_less(np.abs(rev.mean(0) - DATA_MEAN), Z * se_mean)
    np.testing.assert_array_less(np.abs(rev.var(0, ddof=1) - data_var), Z * se_var)

    chain_se_mean, chain_se_var = se(chain_var)
    np.testing.assert_array_less(np.abs(post.mean(0) - chain_mean), Z * chain_se_mean)
    np.testing.assert_array_less(np.abs(post.var(0, ddof=1) - chain_var), Z * chain_se_var)

    np.testing.assert_array_less(
        np.abs(rev.mean(0) - post.mean(0)), Z * np.hypot(se_mean, chain_se_mean)
    )
    gap = rev.var(0, ddof=1) - post.var(0, ddof=1)
    np.testing.assert_array_less(
        np.abs(gap - (data_var - chain_var)), Z * np.hypot(se_var, chain_se_var)
    )
    # Power: started from p_T the samples had to move by many standard errors.
    assert np.all(np.abs(np.asarray(m_T) - DATA_MEAN) > 50 * se_mean)


def test_probability_flow_adaptive_transports_quantiles():
    r"""For Gaussian marginals the probability-flow map is affine:
    $x_0 = m_0 + s_0 (x_T - M_T)/\sqrt{V_T}$. An adaptive solve (Tsit5, PID at 1e-9 with the
    schedule's jumps) reproduces it; 200 fixed Heun steps come close."""
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule, MU, LAM)
    _, m_T, v_T = _gaussian_law(schedule, 5.0)
    x_T = jnp.asarray([1.3, -0.4])
    expected = DATA_MEAN + DATA_STD * (x_T - m_T) / jnp.sqrt(v_T)
    score = _exact_score(schedule)
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e-9, atol=1e-9), jump_ts=schedule.jump_times
    )
    adaptive = sp.ProbabilityFlowSampler(
        sde, 10, solver=diffrax.Tsit5(), stepsize_controller=controller
    )
    np.testing.assert_allclose(adaptive(score, x_T), expected, rtol=1e-6, atol=1e-6)


def test_fixed_step_heun_stays_second_order_across_jumps():
    """Fixed Heun steps on the piecewise-constant cosine schedule: the error of the
    probability-flow map falls 4x per halving of h. (Before the samplers split their grids at
    the jumps, a step starting on a jump read the rate of the other side and the errors fell
    only 2x: 0.041, 0.021, 0.010 at N = 50, 100, 200; now 0.0056, 0.0013, 0.00032.)"""
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule, MU, LAM)
    _, m_T, v_T = _gaussian_law(schedule, 5.0)
    x_T = jnp.asarray([1.3, -0.4])
    expected = DATA_MEAN + DATA_STD * (x_T - m_T) / jnp.sqrt(v_T)
    score = _exact_score(schedule)
    errors = [
        float(jnp.max(jnp.abs(sp.ProbabilityFlowSampler(sde, n)(score, x_T) - expected)))
        for n in (100, 200)
    ]
    assert errors[0] / errors[1] > 3.5, errors
    assert errors[1] < 1e-3


@pytest.mark.parametrize(
    "t0, t1, n", [(5.0, 0.0, 10), (5.0, 0.0, 7), (0.0, 5.0, 13), (5.0, 0.3, 9)]
)
def test_step_grid_never_straddles_a_jump(t0, t1, n):
    """Every step of the sampler grid has the same rate at both ends and in the middle, except
    the one 2-ulp step across each jump."""
    from sdepolicy.sde._samplers import _step_grid

    schedule = sp.cosine_schedule(5)
    grid = _step_grid(t0, t1, n, schedule.jump_times)
    assert grid[0] == t0 and grid[-1] == t1
    steps = np.diff(grid)
    assert np.all(steps < 0) if t0 > t1 else np.all(steps > 0)
    rate = jax.vmap(schedule.rate)
    a, b = jnp.asarray(grid[:-1]), jnp.asarray(grid[1:])
    same = (rate(a) == rate(b)) & (rate(a) == rate(0.5 * (a + b)))
    tiny = np.abs(steps) < 1e-12
    assert np.all(np.asarray(same) | tiny)
    interior_jumps = [j for j in schedule.jump_times if min(t0, t1) < j < max(t0, t1)]
    assert tiny.sum() == len(interior_jumps)
    # at most one extra regular step per jump (a step straddling a jump is split in two)
    assert len(grid) - 1 - tiny.sum() <= n + len(interior_jumps)


def test_unsafe_brownian_path_runs():
    """`brownian="unsafe"` needs diffrax's forward-mode adjoint (it used to raise)."""
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
    sampler = sp.ReverseSDESampler(sde, 10, brownian="unsafe")
    score = _exact_score(sde.schedule)
    out = sampler(score, jnp.asarray([0.1, 0.2]), jax.random.key(0))
    assert out.shape == (2,) and np.all(np.isfinite(out))


def test_diffrax_samplers_paths_statistics_adjoint_and_key():
    r"""Both diffrax samplers return their path on request (first $x_T$, last the sample, the
    same sample as without the path), give the whole diffrax solution with its step counts
    through `solve`, take an `adjoint=`, and accept a key in the same position (the flow
    ignores it). None of this existed before: no `return_path`, no `solve`, no `adjoint`, and
    `ProbabilityFlowSampler.__call__` took no key."""
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
    score = _exact_score(sde.schedule)
    x_T = jnp.asarray([0.3, -0.4])
    key = jax.random.key(0)
    rev = sp.ReverseSDESampler(sde, 10, brownian="unsafe")
    x, path = rev(score, x_T, key, return_path=True)
    assert path.shape == (11, 2)
    np.testing.assert_array_equal(path[0], x_T)
    np.testing.assert_allclose(path[-1], x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rev(score, x_T, key), x, rtol=0, atol=1e-12)
    sol = rev.solve(score, x_T, key)
    # 10 steps plus the two 2-ulp steps across the jumps at t = 1..4 (4 jumps).
    assert int(sol.stats["num_accepted_steps"]) == 10 + 4

    flow = sp.ProbabilityFlowSampler(sde, 10, adjoint=diffrax.DirectAdjoint())
    y, ypath = flow(score, x_T, key, return_path=True)
    np.testing.assert_allclose(flow(score, x_T), y, rtol=1e-12)
    np.testing.assert_allclose(ypath[-1], y, rtol=1e-12)
    np.testing.assert_allclose(ypath[0], x_T, rtol=1e-12)
    grad = jax.grad(lambda z: flow(score, z).sum())(x_T)
    plain = jax.grad(lambda z: sp.ProbabilityFlowSampler(sde, 10)(score, z).sum())(x_T)
    np.testing.assert_allclose(grad, plain, rtol=1e-4)
