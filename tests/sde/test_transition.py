r"""The transition law of the mean-reverting SDE against what solving the SDE gives.

- the closed-form mean and variance against diffrax solves of the moment ODEs
  $m' = \theta(\mu - m)$, $v' = -2\theta v + \sigma^2$ (Tsit5, tolerances $10^{-10}$, the
  schedule's jumps given to the step-size controller);
- Chapman–Kolmogorov: composing $s \to u \to t$ as Gaussians gives $s \to t$;
- Monte-Carlo diffrax solves of the forward SDE itself (`sde.forward_terms`);
- the score / noise / $\hat x_0$ parametrisations: round trips and the score as the gradient of
  the log density.
"""

import diffrax
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from _sde_strategies import SHAPES, means, rng_array, schedules, times
from hypothesis import given, settings

import sdepolicy.sde as sp

# --- moment ODEs ------------------------------------------------------------------------------
#
# Compiling a diffrax solve costs seconds, so one compilation per drawn schedule would not fit
# the time budget. Instead every hypothesis example goes through ONE compiled, vmapped function:
# the drawn schedules are rebuilt inside it from fixed-shape arrays in a "bank" (one slot per
# schedule class with fixed static fields; piecewise schedules with fewer than BANK_STEPS steps
# padded past their horizon, which leaves Θ and θ on [0, T] unchanged), a slot index picks the
# schedule, and states of any shape are flattened and padded to PAD elements (the laws act
# elementwise). The closed form is evaluated on the same rebuilt schedule by MeanRevertingSDE;
# shapes and scalar-vs-array μ are covered by the other tests of this file.

PAD = 6  # the largest state in SHAPES has 6 elements
BANK_STEPS = 10
LINEAR_HORIZON = 4.0
NUM_CASES = 4  # schedules per hypothesis example (one vmapped solve)
NUM_SAVES = 3  # end times per case (saved along one solve)


def _bank_schedules(const_value, lin_ends, pw_increments):
    return (
        sp.ConstantSchedule(const_value, 1.0),  # the horizon does not enter θ or Θ
        sp.LinearSchedule(lin_ends[0], lin_ends[1], LINEAR_HORIZON),
        sp.PiecewiseConstantSchedule(pw_increments),
    )


def _moment_vf(t, y, args):
    """The moment ODEs of docs/method.md §1: m' = θ(μ − m), v' = −2θv + σ², σ² = 2λ²θ."""
    which, bank, lam, mu = args
    m, v = y
    theta = jnp.stack([sch.rate(t) for sch in bank])[which]
    return theta * (mu - m), -2 * theta * v + 2 * lam**2 * theta


@jax.jit
@jax.vmap
def _ode_and_closed_form(which, const_value, lin_ends, pw_increments, lam, mu, x_s, s, ts):
    bank = _bank_schedules(const_value, lin_ends, pw_increments)
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e-10, atol=1e-10),
        jump_ts=jnp.arange(1.0, BANK_STEPS),  # the piecewise slot's jumps
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_moment_vf),
        diffrax.Tsit5(),
        t0=s,
        t1=ts[-1],
        dt0=None,
        y0=(x_s, jnp.zeros((), x_s.dtype)),
        args=(which, bank, lam, mu),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=20_000,
    )
    laws = [
        jax.vmap(lambda t, sch=sch: sp.MeanRevertingSDE(sch, mu, lam).transition(x_s, s=s, t=t))(ts)
        for sch in bank
    ]
    closed_mean = jnp.stack([law.mean for law in laws])[which]
    closed_var = jnp.stack([law.variance for law in laws])[which]
    return sol.ys, (closed_mean, closed_var)


def _bank_arrays(schedule):
    """(slot, constant value, linear ends, piecewise increments) for `schedule`, with fillers
    in the other slots."""
    const, lin, pw = 0.5, np.array([0.1, 1.0]), np.full(BANK_STEPS, 0.3)
    if isinstance(schedule, sp.ConstantSchedule):
        return 0, float(schedule.value), lin, pw
    if isinstance(schedule, sp.LinearSchedule):
        assert schedule.horizon == LINEAR_HORIZON
        return 1, const, np.array([float(schedule.start), float(schedule.end)]), pw
    inc = np.asarray(schedule.increments)
    return 2, const, lin, np.concatenate([inc, np.full(BANK_STEPS - inc.shape[0], 0.7)])


@st.composite
def _transition_case(draw):
    kind = draw(st.sampled_from(["constant", "linear", "piecewise", "cosine", "vp", "lin_theta"]))
    if kind == "linear":
        # The bank's linear slot has a fixed (static) horizon; random horizons of LinearSchedule
        # are covered by the quadrature tests of `cumulative` in test_schedules.py.
        schedule = sp.LinearSchedule(
            draw(st.floats(0.0, 2.0)), draw(st.floats(0.05, 2.0)), LINEAR_HORIZON
        )
    else:
        family = {"lin_theta": "linear_theta"}.get(kind, kind)
        schedule = draw(schedules(kinds=(family,), allow_zero_rates=True, max_steps=BANK_STEPS))
    shape = draw(st.sampled_from(SHAPES))
    lam = draw(st.floats(0.2, 3.0))
    mu = draw(means(shape))
    x_s = rng_array(draw(st.integers(0, 2**31 - 1)), shape, scale=2.0)
    s, *ts = draw(times(schedule, 1 + NUM_SAVES, min_gap_frac=0.02))
    return schedule, shape, lam, mu, x_s, s, ts


def _pad(x, shape):
    flat = np.broadcast_to(np.asarray(x, dtype=np.float64), shape).reshape(-1)
    return np.concatenate([flat, np.zeros(PAD - flat.size)])


@settings(max_examples=15)  # x NUM_CASES schedules x NUM_SAVES times = 180 comparisons
@given(cases=st.lists(_transition_case(), min_size=NUM_CASES, max_size=NUM_CASES))
def test_transition_matches_moment_odes(cases):
    columns = list(zip(*[_bank_arrays(case[0]) for case in cases], strict=True))
    (m_ode, v_ode), (m_closed, v_closed) = _ode_and_closed_form(
        *[jnp.asarray(np.stack(col)) for col in columns],
        jnp.asarray([case[2] for case in cases]),
        jnp.asarray(np.stack([_pad(case[3], case[1]) for case in cases])),
        jnp.asarray(np.stack([_pad(case[4], case[1]) for case in cases])),
        jnp.asarray([case[5] for case in cases]),
        jnp.asarray([case[6] for case in cases]),
    )
    np.testing.assert_allclose(m_closed, m_ode, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(v_closed, v_ode, rtol=1e-7, atol=1e-9)
    # The padded bank schedule is the drawn one on [0, T] (spot check at the last time).
    for i, (schedule, shape, lam, mu, x_s, s, ts) in enumerate(cases):
        law = sp.MeanRevertingSDE(schedule, mu, lam).transition(jnp.asarray(x_s), s=s, t=ts[-1])
        size = int(np.prod(shape))
        np.testing.assert_allclose(
            np.asarray(law.mean).reshape(-1), m_ode[i, -1, :size], rtol=1e-7, atol=1e-8
        )
        np.testing.assert_allclose(law.variance, v_ode[i, -1], rtol=1e-7, atol=1e-9)


# --- Chapman–Kolmogorov ------------------------------------------------------------------------


@settings(max_examples=15)
@given(data=st.data())
def test_chapman_kolmogorov(data):
    """$p(x_t|x_s) = \\int p(x_t|x_u) p(x_u|x_s)\\,dx_u$: for Gaussians with a linear mean,
    $x_t = \\mu + b(x_u - \\mu) + \\sqrt{B}\\,\\xi$ pushes $\\mathcal N(a, A)$ to
    $\\mathcal N(\\mu + b(a - \\mu), b^2 A + B)$."""
    schedule = data.draw(schedules())
    shape = data.draw(st.sampled_from(SHAPES))
    mu = data.draw(means(shape))
    lam = data.draw(st.floats(0.2, 3.0))
    sde = sp.MeanRevertingSDE(schedule, mu, lam)
    x_s = jnp.asarray(rng_array(data.draw(st.integers(0, 2**31 - 1)), shape, 2.0))
    s, u, t = data.draw(times(schedule, 3, min_gap_frac=0.01))
    first = sde.transition(x_s, s=s, t=u)
    # The law of x_t | x_u as an affine map x_u -> mu + b (x_u - mu), read off at two points
    # (so the composition uses the second transition only as a black box).
    zero = sde.transition(jnp.asarray(np.broadcast_to(mu, shape)), s=u, t=t)
    one = sde.transition(jnp.asarray(np.broadcast_to(mu, shape)) + 1.0, s=u, t=t)
    b = one.mean - zero.mean
    composed_mean = zero.mean + b * (first.mean - mu)
    composed_var = b**2 * first.variance + zero.variance
    direct = sde.transition(x_s, s=s, t=t)
    np.testing.assert_allclose(direct.mean, composed_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        jnp.broadcast_to(direct.variance, shape), composed_var, rtol=1e-11, atol=1e-14
    )


# --- Monte Carlo through diffrax SDE solves ----------------------------------------------------

MC_PATHS = 3000
MC_Z = 4.5  # two-sided P(|Z| > 4.5) = 6.8e-6 per statistic


def test_transition_matches_monte_carlo_sde_solves():
    """Heun (= Stratonovich = Itô here: the noise is additive) with 148 steps of 0.025 from
    s = 0.3 to t = 4.0 across four jumps of the cosine schedule, 3000 paths, per-element μ.

    Each of the 6 statistics (3 means, 3 variances) is compared within 4.5 standard errors; for
    an exact solver the chance that a fixed seed fails is about 6 × 6.8e-6 = 4e-5. Heun's
    discretisation bias is O((θh)^2): at θh <= 0.064 about 0.2% of the variance, 0.07 standard
    errors. All paths are one diffrax solve of a (paths, 3) state driven by one
    VirtualBrownianTree (cheaper than vmapping a tree per path).
    """
    schedule = sp.cosine_schedule(5)
    mu = jnp.asarray([0.5, -1.0, 2.0])
    lam = 1.5
    x_s = jnp.asarray([2.0, 1.0, -3.0])
    s, t, h = 0.3, 4.0, 0.025
    # μ broadcast to the batch: strict rank promotion forbids (3,) against (paths, 3).
    batch_sde = sp.MeanRevertingSDE(schedule, jnp.broadcast_to(mu, (MC_PATHS, 3)), lam)
    shape = jax.ShapeDtypeStruct((MC_PATHS, 3), jnp.float64)

    @jax.jit
    def paths(key):
        bm = diffrax.VirtualBrownianTree(s, t, tol=h, shape=shape, key=key)
        sol = diffrax.diffeqsolve(
            batch_sde.forward_terms(bm),
            diffrax.Heun(),
            t0=s,
            t1=t,
            dt0=h,
            y0=jnp.broadcast_to(x_s, (MC_PATHS, 3)),
            saveat=diffrax.SaveAt(t1=True),
            max_steps=1000,
        )
        return sol.ys[0]

    samples = np.asarray(paths(jax.random.key(1234)))
    law = sp.MeanRevertingSDE(schedule, mu, lam).transition(x_s, s=s, t=t)
    var = float(law.variance)
    se_mean = np.sqrt(var / MC_PATHS)
    se_var = var * np.sqrt(2.0 / (MC_PATHS - 1))
    np.testing.assert_array_less(np.abs(samples.mean(0) - law.mean), MC_Z * se_mean)
    np.testing.assert_array_less(np.abs(samples.var(0, ddof=1) - var), MC_Z * se_var)
    # And the test has power: the exact law differs from x_s by many standard errors.
    assert np.all(np.abs(x_s - law.mean) > 50 * se_mean)


# --- score, noise and x0 parametrisations ------------------------------------------------------


@settings(max_examples=15)
@given(data=st.data())
def test_marginal_score_and_noise_round_trips(data):
    schedule = data.draw(schedules())
    shape = data.draw(st.sampled_from(SHAPES))
    mu = data.draw(means(shape))
    lam = data.draw(st.floats(0.2, 3.0))
    sde = sp.MeanRevertingSDE(schedule, mu, lam)
    seed = data.draw(st.integers(0, 2**31 - 1))
    x_0 = jnp.asarray(rng_array(seed, shape, 2.0))
    eps = jnp.asarray(rng_array(seed + 1, shape))
    (t,) = data.draw(times(schedule, 1))
    t = max(t, 0.05 * schedule.horizon)
    # The reparametrisation of docs/method.md §1 written out from Θ_t alone.
    big_theta = float(schedule.cumulative(t))
    m_t = mu + (np.asarray(x_0) - mu) * np.exp(-big_theta)
    v_t = lam**2 * -np.expm1(-2 * big_theta)
    x_t = jnp.asarray(m_t + np.sqrt(v_t) * np.asarray(eps))

    law = sde.marginal(x_0, t=t)
    np.testing.assert_allclose(law.mean, m_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(law.variance, v_t, rtol=1e-12)
    np.testing.assert_allclose(sde.marginal_variance(t), v_t, rtol=1e-12)
    np.testing.assert_allclose(sde.noise_from_x0(x_t, x_0, t=t), eps, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sde.x0_from_noise(x_t, eps, t=t), x_0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        sde.score(x_t, x_0, t=t), -np.asarray(eps) / np.sqrt(v_t), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        sde.score_from_noise(eps, t=t), sde.score(x_t, x_0, t=t), rtol=1e-9, atol=1e-9
    )

    # The score is the gradient of the log density (written here, and the library's log_prob).
    def log_density(x):
        return jnp.sum(-0.5 * (x - m_t) ** 2 / v_t - 0.5 * jnp.log(2 * jnp.pi * v_t))

    np.testing.assert_allclose(
        jax.grad(log_density)(x_t), sde.score(x_t, x_0, t=t), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(
        jax.grad(law.log_prob)(x_t), sde.score(x_t, x_0, t=t), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(law.log_prob(x_t), log_density(x_t), rtol=1e-12)


@settings(max_examples=15)
@given(data=st.data())
def test_coefficients_drift_and_diffusion(data):
    """$\\sigma^2 = 2\\lambda^2\\theta$, the drift $\\theta(\\mu - x)$, the diffusion operator,
    and the stationary law $\\mathcal N(\\mu, \\lambda^2)$ is invariant under every transition."""
    schedule = data.draw(schedules())
    shape = data.draw(st.sampled_from(SHAPES[1:]))
    mu = data.draw(means(shape))
    lam = data.draw(st.floats(0.2, 3.0))
    sde = sp.MeanRevertingSDE(schedule, mu, lam)
    s, t = data.draw(times(schedule, 2, min_gap_frac=0.01))
    theta = float(schedule.rate(t))
    np.testing.assert_allclose(sde.sigma(t) ** 2, 2 * lam**2 * theta, rtol=1e-12)
    x = jnp.asarray(rng_array(data.draw(st.integers(0, 2**31 - 1)), shape))
    np.testing.assert_allclose(sde.drift(t, x), theta * (mu - np.asarray(x)), rtol=1e-12)
    dw = jnp.asarray(rng_array(7, shape))
    np.testing.assert_allclose(
        sde.diffusion(t, x).mv(dw), np.sqrt(2 * lam**2 * theta) * np.asarray(dw), rtol=1e-12
    )
    prior = sde.prior(shape)
    np.testing.assert_allclose(prior.mean, np.broadcast_to(mu, shape))
    np.testing.assert_allclose(prior.variance, lam**2, rtol=1e-14)
    # x_s ~ N(mu, lam^2) pushed through the transition stays N(mu, lam^2).
    law = sde.transition(prior.mean, s=s, t=t)
    b = float(sde.decay(s, t))
    np.testing.assert_allclose(law.mean, prior.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b**2 * lam**2 + law.variance, lam**2, rtol=1e-11)
    # The decay and the variance are what Θ(s, t) says (docs/method.md §1), not e^{+Θ} or e^{-Θ}.
    big = float(schedule.integral(s, t))
    np.testing.assert_allclose(b, np.exp(-big), rtol=1e-12)
    np.testing.assert_allclose(
        sde.transition_variance(s, t), lam**2 * -np.expm1(-2 * big), rtol=1e-12
    )
