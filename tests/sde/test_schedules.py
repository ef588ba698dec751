r"""Schedules: the docs/method.md §2 test vectors, $\Theta(s, t)$ against numerical quadrature of
$\theta$, the discrete-grid view, the DDPM/VP identities and input validation."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from _sde_strategies import schedules, times
from hypothesis import given, settings

import sdepolicy.sde as sp

# --- docs/method.md §2 test vectors (reference code, T = 5) -------------------------------------------

TABLE_THETA = [0.07213, 0.25712, 0.50616, 0.75355, 0.93404]
TABLE_STEP = [0.19749, 0.70396, 1.38582, 2.06317, 2.55732]
TABLE_CUM = [0.19749, 0.90145, 2.28727, 4.35043, 6.90776]
TABLE_DECAY = [0.82079, 0.40598, 0.10154, 0.01290, 0.00100]
TABLE_VAR = [0.32630, 0.83518, 0.98969, 0.99983, 0.999999]
TABLE_BETA_TILDE = [0.0, 0.29511, 0.79109, 0.97388, 0.99383]
TABLE_COEF_XT = [0.0, 0.19325, 0.21107, 0.12576, 0.07750]
TABLE_COEF_X0 = [1.0, 0.74234, 0.38455, 0.09992, 0.01282]
TABLE_VP_BETAS = [0.1959, 0.4588, 0.6358, 0.7549, 0.8350]

# The table is printed to 5 decimals: a correct value is within 5e-6 of it.
TABLE_ATOL = 1e-5


def test_spec_table_t5():
    schedule = sp.cosine_schedule(5)
    sde = sp.MeanRevertingSDE(schedule)
    t = np.arange(1, 6)
    np.testing.assert_allclose(sp.cosine_thetas(5), TABLE_THETA, atol=TABLE_ATOL)
    np.testing.assert_allclose(schedule.grid(np.arange(6.0)), TABLE_STEP, atol=TABLE_ATOL)
    cum = np.array([schedule.cumulative(float(k)) for k in t])
    np.testing.assert_allclose(cum, TABLE_CUM, atol=TABLE_ATOL)
    np.testing.assert_allclose(np.exp(-cum), TABLE_DECAY, atol=TABLE_ATOL)
    var = np.array([sde.marginal_variance(float(k)) for k in t])
    np.testing.assert_allclose(var[:4], TABLE_VAR[:4], atol=TABLE_ATOL)
    np.testing.assert_allclose(var[4], TABLE_VAR[4], atol=1e-6)  # printed to 6 decimals
    coefs = np.array([sde.posterior_coefficients(float(k - 1), float(k)) for k in t])
    np.testing.assert_allclose(coefs[:, 0], TABLE_COEF_XT, atol=TABLE_ATOL)
    np.testing.assert_allclose(coefs[:, 1], TABLE_COEF_X0, atol=TABLE_ATOL)
    np.testing.assert_allclose(coefs[:, 2], TABLE_BETA_TILDE, atol=TABLE_ATOL)
    # Σθ and dt of the normalisation rule, read back from the schedule's increments.
    thetas = sp.cosine_thetas(5)
    assert abs(thetas.sum() - 2.52299) < TABLE_ATOL
    dt = np.asarray(schedule.increments) / thetas
    np.testing.assert_allclose(dt, 2.73792, atol=TABLE_ATOL)


def test_spec_vp_betas():
    # Printed to 4 decimals.
    np.testing.assert_allclose(sp.vp_betas(5, 0.1, 10.0), TABLE_VP_BETAS, atol=5e-5 + 1e-12)


@given(n=st.integers(1, 30), beta_min=st.floats(0.01, 1.0), beta_max=st.floats(1.5, 30.0))
def test_vp_is_the_integrated_linear_beta(n, beta_min, beta_max):
    r"""Diffusion-QL's betas discretise the VP-SDE $\beta(u) = \beta_{min} + (\beta_{max} -
    \beta_{min})u$ on $[0, 1]$: $\Theta(i-1, i) = \tfrac12\int_{(i-1)/T}^{i/T}\beta(u)\,du$."""
    schedule = sp.vp_schedule(n, beta_min, beta_max)

    def beta(u):
        return beta_min + (beta_max - beta_min) * u

    expected = [0.5 * scipy.integrate.quad(beta, (i - 1) / n, i / n)[0] for i in range(1, n + 1)]
    np.testing.assert_allclose(schedule.increments, expected, rtol=1e-10)


# --- Θ(s, t) against quadrature -------------------------------------------------------------


def _quad_rate(schedule, s, t, rate=None):
    rate = rate or jax.jit(lambda u: schedule.rate(u))
    points = [p for p in schedule.jump_times if min(s, t) < p < max(s, t)]
    value, err = scipy.integrate.quad(
        lambda u: float(rate(u)),
        s,
        t,
        points=points or None,
        epsabs=1e-12,
        epsrel=1e-12,
        limit=200,
    )
    return value


@given(data=st.data())
def test_integral_matches_quadrature_of_rate(data):
    schedule = data.draw(schedules(allow_zero_rates=True))
    s, t = data.draw(times(schedule, 2))
    expected = _quad_rate(schedule, s, t)
    np.testing.assert_allclose(schedule.integral(s, t), expected, rtol=1e-9, atol=1e-11)
    # Reversed limits give the negative, as a signed integral should.
    np.testing.assert_allclose(schedule.integral(t, s), -expected, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(schedule.cumulative(0.0), 0.0, atol=0)
    np.testing.assert_allclose(
        schedule.cumulative(t), _quad_rate(schedule, 0.0, t), rtol=1e-9, atol=1e-11
    )


@settings(max_examples=15)
@given(data=st.data())
def test_grid_view_matches_quadrature(data):
    schedule = data.draw(schedules(allow_zero_rates=True))
    grid = np.asarray(data.draw(times(schedule, 5)))
    steps = schedule.grid(grid)
    assert steps.shape == (4,)
    expected = [_quad_rate(schedule, a, b) for a, b in zip(grid[:-1], grid[1:], strict=True)]
    np.testing.assert_allclose(steps, expected, rtol=1e-9, atol=1e-11)


@settings(max_examples=15)
@given(data=st.data())
def test_piecewise_constant_structure(data):
    """The integer grid reproduces the increments; the rate is left-continuous at the jumps and
    constant in between; jump times are exactly the interior integers."""
    schedule = data.draw(
        schedules(kinds=("piecewise", "cosine", "vp", "linear_theta"), allow_zero_rates=True)
    )
    inc = np.asarray(schedule.increments)
    n = inc.shape[0]
    assert schedule.horizon == n
    np.testing.assert_array_equal(schedule.jump_times, np.arange(1.0, n))
    frac = data.draw(st.floats(1e-6, 1 - 1e-6))

    @jax.jit  # one compilation per example instead of one per eager op and shape
    def views(sch):
        rate = jax.vmap(sch.rate)
        ints = jnp.arange(1.0, n + 1)
        return sch.grid(jnp.arange(n + 1.0)), rate(ints), rate(ints - 1 + frac), sch.rate(0.0)

    grid, at_ints, inside, at_zero = views(schedule)
    np.testing.assert_allclose(grid, inc, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(at_ints, inc)  # left-continuous at k+1
    np.testing.assert_array_equal(inside, inc)
    assert float(at_zero) == inc[0]


@settings(max_examples=10)
@given(data=st.data())
def test_schedules_trace_under_jit(data):
    """Schedules are pytrees: jit over the schedule itself gives the eager values."""
    schedule = data.draw(schedules())
    s, t = data.draw(times(schedule, 2))
    f = jax.jit(lambda sch, a, b: (sch.integral(a, b), sch.rate(b)))
    got = f(schedule, jnp.asarray(s), jnp.asarray(t))
    np.testing.assert_allclose(got[0], schedule.integral(s, t), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got[1], schedule.rate(t), rtol=1e-14, atol=1e-15)


# --- the factories ---------------------------------------------------------------------------


def _cosine_thetas_by_hand(n, offset=0.008):
    def abar(x):
        return (
            math.cos((x / (n + 1) + offset) / (1 + offset) * math.pi / 2) ** 2
            / math.cos(offset / (1 + offset) * math.pi / 2) ** 2
        )

    return np.array([1.0 - abar(k + 1) for k in range(n)])


@given(n=st.integers(1, 40), decay=st.floats(1e-6, 0.9))
def test_cosine_schedule(n, decay):
    # numpy on the increments (not `cumulative`, which the quadrature tests cover) keeps this
    # test free of per-shape XLA compilations.
    thetas = sp.cosine_thetas(n)
    np.testing.assert_allclose(thetas, _cosine_thetas_by_hand(n), rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(thetas) > 0) and np.all((thetas > 0) & (thetas < 1))
    schedule = sp.cosine_schedule(n, terminal_decay=decay)
    np.testing.assert_allclose(math.exp(-np.asarray(schedule.increments).sum()), decay, rtol=1e-12)
    # Normalisation only rescales: the increments are proportional to the thetas.
    ratio = np.asarray(schedule.increments) / thetas
    np.testing.assert_allclose(ratio, -math.log(decay) / thetas.sum(), rtol=1e-12)


@given(n=st.integers(1, 40), decay=st.floats(1e-6, 0.9))
def test_linear_and_constant_theta_schedules(n, decay):
    lin = np.asarray(sp.linear_theta_schedule(n, decay).increments)
    const = np.asarray(sp.constant_theta_schedule(n, decay).increments)
    total = -math.log(decay)
    np.testing.assert_allclose(lin.sum(), total, rtol=1e-12)
    np.testing.assert_allclose(const, total / n, rtol=1e-12)
    if n > 1:
        np.testing.assert_allclose(lin[-1] / lin[0], 200.0, rtol=1e-10)
        np.testing.assert_allclose(np.diff(lin, 2), 0.0, atol=1e-12 * total)
    else:
        np.testing.assert_allclose(lin, total, rtol=1e-12)


@given(
    betas=st.lists(st.floats(1e-4, 0.999), min_size=1, max_size=30),
)
def test_ddpm_alpha_bar_is_exp_minus_two_theta(betas):
    r"""DDPM's $\bar\alpha_i = \prod_{j \le i}(1 - \beta_j)$ equals $e^{-2\Theta_i}$."""
    betas = np.asarray(betas)
    schedule = sp.ddpm_schedule(betas)
    alpha_bar = np.cumprod(1.0 - betas)
    # Θ_i on the integer grid is the cumulative sum of the increments (`cumulative` itself is
    # checked against quadrature above); numpy avoids an XLA compilation per length.
    cum = np.cumsum(np.asarray(schedule.increments))
    np.testing.assert_allclose(np.exp(-2 * cum), alpha_bar, rtol=1e-11)
    # and the VP factory is DDPM with the VP betas.
    n = len(betas)
    np.testing.assert_allclose(
        sp.vp_schedule(n).increments, sp.ddpm_schedule(sp.vp_betas(n)).increments, rtol=1e-15
    )


@given(
    thetas=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 5.0)), min_size=1, max_size=20),
    decay=st.floats(1e-8, 0.99),
)
def test_normalised_schedule(thetas, decay):
    if sum(thetas) <= 0:
        thetas[0] = 1.0
    schedule = sp.normalised_schedule(np.asarray(thetas), decay)
    np.testing.assert_allclose(math.exp(-np.asarray(schedule.increments).sum()), decay, rtol=1e-11)
    np.testing.assert_allclose(
        np.asarray(schedule.increments) * sum(thetas),
        np.asarray(thetas) * -math.log(decay),
        rtol=1e-12,
        atol=1e-300,
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: sp.PiecewiseConstantSchedule(np.asarray([0.1, -0.2, 0.3])),
        lambda: sp.PiecewiseConstantSchedule(np.asarray([])),
        lambda: sp.PiecewiseConstantSchedule(np.asarray([[0.1, 0.2]])),
        lambda: sp.PiecewiseConstantSchedule(np.asarray([0.1, float("nan")])),
        lambda: sp.ConstantSchedule(-1.0),
        lambda: sp.ConstantSchedule(1.0, horizon=0.0),
        lambda: sp.ConstantSchedule(1.0, horizon=-2.0),
        lambda: sp.LinearSchedule(0.5, -0.1),
        lambda: sp.LinearSchedule(-0.5, 0.1),
        lambda: sp.LinearSchedule(0.5, 1.0, horizon=0.0),
        lambda: sp.cosine_schedule(0),
        lambda: sp.cosine_schedule(-3),
        lambda: sp.cosine_schedule(2.5),
        lambda: sp.linear_theta_schedule(0),
        lambda: sp.constant_theta_schedule(-1),
        lambda: sp.vp_schedule(0),
        lambda: sp.vp_betas(1.5),
        lambda: sp.cosine_schedule(5, terminal_decay=0.0),
        lambda: sp.cosine_schedule(5, terminal_decay=1.0),
        lambda: sp.normalised_schedule(np.asarray([1.0, -1.0])),
        lambda: sp.normalised_schedule(np.asarray([0.0, 0.0])),
        lambda: sp.normalised_schedule(np.asarray([5e-324, 0.0])),
        lambda: sp.ddpm_schedule(np.asarray([0.1, 1.0])),
        lambda: sp.ddpm_schedule(np.asarray([0.0, 0.5])),
        lambda: sp.ddpm_schedule(np.asarray([[0.1]])),
    ],
)
def test_invalid_schedules_raise(build):
    # A wrongly-shaped array is refused by the jaxtyping annotation (a TypeError) before the
    # function body runs; everything else by the body's own ValueError.
    with pytest.raises((ValueError, TypeError)):
        build()


def test_valid_edge_cases_do_not_raise():
    # Zero rates are allowed (the SDE is then frozen there), as is T = 1.
    sp.ConstantSchedule(0.0)
    sp.LinearSchedule(0.0, 0.0)
    sp.PiecewiseConstantSchedule(np.asarray([0.0, 1.0]))
    assert sp.cosine_schedule(1).horizon == 1.0
