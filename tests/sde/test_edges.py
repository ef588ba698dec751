"""Issue 30: the SDE floor at its edges (under jit/vmap, odd dtypes, user schedules), each item
with a case that misbehaved before.

Eager bad input raises `SDEInputError`; traced bad input (jit, vmap) stops at run time with the
same message, prefixed "SDEInputError:", in equinox's/JAX's `RuntimeError` (JAX cannot raise a
Python class from compiled code: `docs/sde.md`).
"""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jaxtyping import Array, Float

import sdepolicy.sde as sp
from sdepolicy.sde import SDEInputError
from sdepolicy.testing import KitPrecisionError, check_all, check_schedule, strategies

X = np.array([0.3, -0.1])
#: What a check on traced values raises: JAX's or equinox's RuntimeError, or a ValueError when
#: `jax.jit` wraps a sampler's `eqx.filter_jit`; the message says "SDEInputError: ...".
RUNTIME = (RuntimeError, ValueError)


def _sde():
    return sp.MeanRevertingSDE(sp.cosine_schedule(5), 0.2, 1.3)


class Quad(sp.AbstractSchedule):
    r"""The issue's user schedule $\theta = a + b t^2$, $\Theta = a t + b t^3 / 3$."""

    a: Float[Array, ""]
    b: Float[Array, ""]
    horizon: float = eqx.field(static=True)

    def rate(self, t):
        return self.a + self.b * jnp.asarray(t, self.a.dtype) ** 2

    def cumulative(self, t):
        t = jnp.asarray(t, self.a.dtype)
        return self.a * t + self.b * t**3 / 3


def _quad(a=-0.2, b=1.0):
    return Quad(jnp.asarray(a), jnp.asarray(b), 2.0)


# --- 1. the checks hold under jit and vmap --------------------------------------------------

TRACED = [
    ("posterior", lambda sde, s, t: sde.posterior(X, X, s=s, t=t).variance, (3.0, 2.0)),
    ("posterior", lambda sde, s, t: sde.posterior(X, X, s=s, t=t).variance, (np.nan, 2.0)),
    ("posterior_coefficients", lambda sde, s, t: sde.posterior_coefficients(s, t)[2], (2.0, 2.0)),
    ("ddim", lambda sde, s, t: sde.ddim(X, X, s=s, t=t).mean, (-1.0, 2.0)),
    ("transition", lambda sde, s, t: sde.transition(X, s=s, t=t).variance, (3.0, 2.0)),
    ("marginal", lambda sde, s, t: sde.marginal(X, t=t).variance, (0.0, -1.0)),
    ("score", lambda sde, s, t: sde.score(X, X, t=t), (0.0, 0.0)),
    ("noise_from_x0", lambda sde, s, t: sde.noise_from_x0(X, X, t=t), (0.0, 0.0)),
    ("x0_from_noise", lambda sde, s, t: sde.x0_from_noise(X, X, t=t), (0.0, np.inf)),
    ("score_from_noise", lambda sde, s, t: sde.score_from_noise(X, t=t), (0.0, 0.0)),
]


@pytest.mark.parametrize(
    "name, call, times", TRACED, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(TRACED)]
)
def test_closed_forms_check_traced_times_under_jit_and_vmap(name, call, times):
    """`jax.jit(lambda s, t: sde.posterior(x, x0, s=s, t=t))(3., 2.).variance` was -17.76 and
    `jax.jit(lambda t: sde.marginal(x0, t=t))(-1.)` -0.484, without a word."""
    sde = _sde()
    s, t = times
    with pytest.raises(SDEInputError, match=name):
        call(sde, s, t)
    with pytest.raises(RUNTIME, match=f"SDEInputError: {name}"):
        jax.block_until_ready(jax.jit(lambda s, t: call(sde, s, t))(s, t))
    # One bad element of a vmapped batch stops the batch (eager vmap: equinox's error).
    good_s, good_t = 1.0, 2.0
    ss, ts = jnp.asarray([good_s, s]), jnp.asarray([good_t, t])
    with pytest.raises(RUNTIME, match=f"SDEInputError: {name}"):
        jax.block_until_ready(jax.vmap(lambda s, t: call(sde, s, t))(ss, ts))


def test_good_traced_times_give_the_eager_numbers():
    sde = _sde()
    for name, call, _ in TRACED:
        want = call(sde, 1.0, 2.0)
        np.testing.assert_allclose(
            jax.jit(lambda s, t, c=call: c(sde, s, t))(1.0, 2.0), want, rtol=1e-13, err_msg=name
        )
        got = jax.vmap(lambda s, t, c=call: c(sde, s, t))(
            jnp.asarray([1.0, 1.0]), jnp.asarray([2.0, 2.0])
        )
        np.testing.assert_allclose(got[1], want, rtol=1e-13, err_msg=name)


def test_a_sampler_built_under_jit_checks_its_traced_grid_once():
    sde = _sde()

    def run(times, x):
        return sp.PosteriorSampler(sde, times)(lambda t, y, a: 0.0 * y, x, jax.random.key(0))

    good = jnp.arange(6.0)
    np.testing.assert_allclose(jax.jit(run)(good, jnp.asarray(X)), 0.0, atol=1e-12)
    with pytest.raises(RUNTIME, match="increasing"):
        jax.block_until_ready(
            jax.jit(run)(jnp.asarray([0.0, 2.0, 1.0, 3.0, 4.0, 5.0]), jnp.asarray(X))
        )


# --- 2. user schedules must keep the contract -----------------------------------------------


def test_sde_refuses_a_negative_rate_and_the_kit_checks_the_contract():
    """theta = -0.2 + t^2 was accepted: marginal_variance(0.3) = -0.107, sigma(0.2) = NaN, and
    `check_all` passed it on all 25 examples."""
    with pytest.raises(SDEInputError, match="rate is negative"):
        sp.MeanRevertingSDE(_quad())
    with pytest.raises(AssertionError, match="rate is negative"):
        check_schedule(_quad())
    check_schedule(_quad(0.2))  # a good one passes
    sp.MeanRevertingSDE(_quad(0.2))

    @settings(strategies.SETTINGS, max_examples=2)
    @given(strategies.cases(st.builds(_quad), shapes=[(2,)]))
    def kit_on_the_bad_schedule(case):
        check_all(case)

    with pytest.raises(SDEInputError, match="rate is negative"):
        kit_on_the_bad_schedule()


def test_a_traced_negative_rate_schedule_fails_in_the_closed_forms():
    """Built under jit (the probe cannot see traced arrays), the closed forms refuse
    Theta(s, t) < 0 at run time."""

    def variance(a):
        return sp.MeanRevertingSDE(Quad(a, jnp.asarray(1.0), 2.0)).marginal(X, t=0.3).variance

    assert float(jax.jit(variance)(jnp.asarray(0.2))) > 0
    with pytest.raises(RUNTIME, match="Theta"):
        jax.block_until_ready(jax.jit(variance)(jnp.asarray(-0.2)))
    with pytest.raises(RUNTIME, match="Theta"):
        jax.block_until_ready(jax.vmap(variance)(jnp.asarray([0.2, -0.2])))


def test_the_kit_checks_theta_at_zero_and_monotonicity():
    class Offset(Quad):
        def cumulative(self, t):
            return super().cumulative(t) + 0.1

    class Wavy(Quad):
        def cumulative(self, t):  # rate stays >= 0, but Theta is not its integral
            return super().cumulative(t) - 0.3 * jnp.sin(jnp.asarray(t, self.a.dtype))

    with pytest.raises(AssertionError, match="cumulative\\(0\\)"):
        check_schedule(Offset(jnp.asarray(0.2), jnp.asarray(1.0), 2.0))
    with pytest.raises(AssertionError, match="decreases"):
        check_schedule(Wavy(jnp.asarray(0.2), jnp.asarray(1.0), 2.0))


# --- 3. NaN from a zero increment, NaN times, truncated step counts, half precision ----------


def test_a_leading_zero_increment_is_refused_eager_and_under_jit():
    """`PosteriorSampler` on increments [0, 1, 1] returned NaN with no error."""
    sde = sp.MeanRevertingSDE(sp.PiecewiseConstantSchedule(jnp.asarray([0.0, 1.0, 1.0])))
    with pytest.raises(SDEInputError, match="Theta = 0"):
        sp.PosteriorSampler(sde)
    with pytest.raises(SDEInputError, match="Theta_t = 0"):
        sde.posterior(X, X, s=0.0, t=1.0)

    def run(increments):
        sde = sp.MeanRevertingSDE(sp.PiecewiseConstantSchedule(increments))
        return sp.PosteriorSampler(sde, jnp.arange(4.0))(
            lambda t, y, a: 0.5 * y, jnp.asarray(X), jax.random.key(0)
        )

    assert np.all(np.isfinite(jax.jit(run)(jnp.asarray([0.5, 1.0, 1.0]))))
    with pytest.raises(RUNTIME, match="Theta = 0"):
        jax.block_until_ready(jax.jit(run)(jnp.asarray([0.0, 1.0, 1.0])))
    # A zero increment later on is harmless (the posterior keeps x): no refusal, no NaN.
    sde_mid = sp.MeanRevertingSDE(sp.PiecewiseConstantSchedule(jnp.asarray([1.0, 0.0, 1.0])))
    out = sp.PosteriorSampler(sde_mid)(lambda t, y, a: 0.5 * y, X, jax.random.key(0))
    assert np.all(np.isfinite(out))


def test_step_counts_are_integers_not_truncated():
    """`ProbabilityFlowSampler(sde, 2.7)` silently ran 2 steps."""
    sde = _sde()
    for cls in (sp.ProbabilityFlowSampler, sp.ReverseSDESampler):
        with pytest.raises(SDEInputError, match="2.7"):
            cls(sde, 2.7)
        with pytest.raises(SDEInputError, match="positive integer"):
            cls(sde, True)
        assert cls(sde, 4.0).num_steps == 4
    with pytest.raises(SDEInputError, match="corrector_steps"):
        sp.PredictorCorrectorSampler(sde, corrector_steps=1.5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_refused_everywhere(dtype):
    """bf16 sampling drifted (mean 0.428 for 0.5 at N = 400) with no warning; LogLikelihood
    crashed with a linearize error."""
    sde = _sde()
    x = jnp.asarray(X, dtype)
    f = lambda t, y, a: y  # noqa: E731
    calls = [
        lambda: sp.PosteriorSampler(sde)(f, x, jax.random.key(0)),
        lambda: sp.PredictorCorrectorSampler(sde)(f, x, jax.random.key(0)),
        lambda: sp.ProbabilityFlowSampler(sde, 4)(f, x),
        lambda: sp.ReverseSDESampler(sde, 4)(f, x, jax.random.key(0)),
        lambda: sp.LogLikelihood(sde)(f, x),
        lambda: sde.marginal(x, t=1.0),
        lambda: sde.posterior(x, x, s=1.0, t=2.0),
    ]
    for call in calls:
        with pytest.raises(SDEInputError, match="float32 or float64"):
            call()


# --- 4. the shape rule ----------------------------------------------------------------------


def test_states_of_one_closed_form_have_one_shape():
    """x_t of shape (3, 1) with x_0 of shape (3,) gave a (3, 3) posterior."""
    sde = _sde()
    a, b = jnp.ones((3, 1)), jnp.ones(3)
    calls = [
        lambda: sde.posterior(a, b, s=1.0, t=2.0),
        lambda: sde.ddim(a, b, s=1.0, t=2.0),
        lambda: sde.score(a, b, t=2.0),
        lambda: sde.noise_from_x0(a, b, t=2.0),
        lambda: sde.x0_from_noise(a, b, t=2.0),
    ]
    for call in calls:
        with pytest.raises(SDEInputError, match="same shape"):
            call()
        with pytest.raises(SDEInputError, match="same shape"):
            jax.jit(call)()
    # The SDE's mean broadcasts *to* the state's shape, never enlarges it (times are scalars:
    # jax.vmap for one time per sample).
    wide = sp.MeanRevertingSDE(sp.cosine_schedule(5), jnp.zeros((4, 3)))
    with pytest.raises(SDEInputError, match="mean"):
        wide.marginal(jnp.ones(3), t=1.0)
    row = sp.MeanRevertingSDE(sp.cosine_schedule(5), jnp.zeros((1, 3)))
    assert row.marginal(jnp.ones((4, 3)), t=1.0).mean.shape == (4, 3)
    # a sampler's predictor must return the state's shape (a scalar broadcasts)
    with pytest.raises(SDEInputError, match="returned shape"):
        sp.PosteriorSampler(sde)(lambda t, y, a: jnp.ones(5), X, jax.random.key(0))
    out = sp.PosteriorSampler(sde)(lambda t, y, a: 0.2, X, jax.random.key(0))
    assert out.shape == X.shape


# --- 5, 6. one dtype rule --------------------------------------------------------------------


def _samplers(sde):
    return [
        sp.PosteriorSampler(sde),
        sp.PredictorCorrectorSampler(sde),
        sp.ProbabilityFlowSampler(sde, 20, t_end=0.01),
        sp.ReverseSDESampler(sde, 20),
    ]


def test_every_sampler_keeps_the_state_dtype_whatever_the_predictor_returns():
    """A predictor computing in float64 (it calls `schedule.cumulative(t)` under x64) broke the
    posterior and PC samplers' scan carry; the PF and reverse-SDE samplers upcast."""
    sde = _sde()

    def f(t, y, args):
        # computes in float64 whatever the state (under x64)
        return y.astype(jnp.float64) * jnp.exp(-sde.schedule.cumulative(t))

    def f32(t, y, args):
        return y * jnp.exp(-sde.schedule.cumulative(t)).astype(y.dtype)

    x32 = jnp.asarray(X, jnp.float32)
    for sampler in _samplers(sde):
        out = sampler(f, x32, jax.random.key(0))
        assert out.dtype == jnp.float32, type(sampler)
        assert sampler(f, jnp.asarray(X), jax.random.key(0)).dtype == jnp.float64
        # the float64 prediction is used as its float32 rounding: the float32 chain's answer
        want = sampler(f32, x32, jax.random.key(0))
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6, err_msg=str(type(sampler)))


def test_log_likelihood_takes_float32_under_x64():
    """A float32 x under x64 failed: "linearized function called on tangent values
    inconsistent with the original primal values"."""
    sde = _sde()
    score = lambda t, x, a: -(x - 0.2) / 1.3**2  # noqa: E731 - the stationary law's score
    ll = sp.LogLikelihood(sde, divergence="exact")
    got32 = ll(score, jnp.asarray(X, jnp.float32))
    got64 = ll(score, jnp.asarray(X, jnp.float64))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(got32, got64, rtol=1e-5)
    got_h = sp.LogLikelihood(sde, divergence="hutchinson")(
        score, jnp.asarray(X, jnp.float32), key=jax.random.key(0)
    )
    np.testing.assert_allclose(got_h, got64, rtol=1e-5)


# --- 7. array-likes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_T", [0.3, [0.3, -0.1], 1, np.array([0.3, -0.1])], ids=["float", "list", "int", "numpy"]
)
def test_every_sampler_takes_array_likes(x_T):
    """A float, list or int x_T gave AttributeError ('float' object has no attribute 'dtype'),
    or "dtype argument to `normal` must be a float", or worked (PF)."""
    sde = _sde()
    f = lambda t, y, a: 0.5 * y  # noqa: E731
    for sampler in _samplers(sde):
        want = sampler(f, jnp.asarray(x_T, float), jax.random.key(1))
        np.testing.assert_array_equal(sampler(f, x_T, jax.random.key(1)), want)
    with pytest.raises(SDEInputError, match="array-like"):
        sp.PosteriorSampler(sde)(f, "0.3", jax.random.key(1))


# --- 9. clear messages ----------------------------------------------------------------------


def test_log_likelihood_refuses_a_nan_point():
    """It said "The maximum number of solver steps was reached"."""
    ll = sp.LogLikelihood(_sde())
    score = lambda t, x, a: -x  # noqa: E731
    bad = jnp.asarray([np.nan, 0.1])
    with pytest.raises(SDEInputError, match="not finite"):
        ll(score, bad)
    with pytest.raises(RUNTIME, match="SDEInputError: LogLikelihood: x is not finite"):
        jax.block_until_ready(jax.jit(lambda x: ll(score, x))(bad))
    with pytest.raises(RUNTIME, match="not finite"):
        jax.block_until_ready(jax.vmap(lambda x: ll(score, x))(jnp.stack([jnp.asarray(X), bad])))


def test_unsafe_brownian_under_grad_points_to_jacfwd():
    sde = _sde()
    unsafe = sp.ReverseSDESampler(sde, 8, brownian="unsafe")
    score = lambda t, x, a: -x  # noqa: E731

    def loss(x):
        return jnp.sum(unsafe(score, x, jax.random.key(0)))

    for transform in (jax.grad, lambda f: jax.jit(jax.grad(f))):
        with pytest.raises(SDEInputError, match="jacfwd"):
            transform(loss)(jnp.asarray(X))
    # forward mode works, and equals the virtual path's reverse mode on this linear chain
    jac = jax.jacfwd(lambda x: unsafe(score, x, jax.random.key(0)))(jnp.asarray(X))
    assert np.all(np.isfinite(jac))


# --- 10. compile once -----------------------------------------------------------------------


class _Counted(eqx.Module):
    c: jax.Array
    traces: list = eqx.field(static=True)

    def __call__(self, t, x, args):
        self.traces.append(1)
        return self.c * x


def test_float_args_and_bound_methods_compile_once():
    """`args = 0.5` (the README's example) compiled once per value, and `module.__call__` once
    per instance."""
    sde = _sde()
    traces = []

    def f(t, x, c):
        traces.append(1)
        return c * x

    # (A sampler traces its function once per place it is called: PC has three.)
    for sampler in _samplers(sde):
        traces.clear()
        sampler(f, X, jax.random.key(0), 0.4)
        once = len(traces)
        for c in (0.5, 0.6, np.float64(0.7), np.array(0.8)):
            sampler(f, X, jax.random.key(0), c)
        assert len(traces) == once, (type(sampler).__name__, once, len(traces))
        traces.clear()
        sampler(_Counted(jnp.asarray(0.05), traces).__call__, X, jax.random.key(0))
        once = len(traces)
        for c in (0.1, 0.2, 0.3):
            sampler(_Counted(jnp.asarray(c), traces).__call__, X, jax.random.key(0))
        assert len(traces) == once, (type(sampler).__name__, once, len(traces))
    # What stays static, as documented: a Python int in args compiles per value.
    traces.clear()
    post = sp.PosteriorSampler(sde)
    for k in (1, 2):
        post(f, X, jax.random.key(0), k)
    assert len(traces) == 2  # one trace per value


# --- 8. the testing kit without the project's conftest --------------------------------------


class ExpRate(sp.AbstractSchedule):
    a: Float[Array, ""]
    horizon: float = eqx.field(static=True)

    def rate(self, t):
        return self.a * jnp.exp(t / self.horizon)

    def cumulative(self, t):
        return self.a * self.horizon * jnp.expm1(t / self.horizon)


def test_kit_example_runs_under_hypothesis_defaults():
    """The README's example, under hypothesis' own default profile (deadline 200 ms), failed
    with DeadlineExceeded then FlakyFailure; `strategies.SETTINGS` is what it needs."""
    from hypothesis import settings as hsettings

    @hsettings(strategies.SETTINGS, max_examples=3)
    @given(strategies.cases(st.builds(lambda: ExpRate(jnp.asarray(0.4), 3.0)), shapes=[(3,)]))
    def test_exp_rate(case):
        check_all(case)

    hsettings.load_profile("default")
    try:
        assert hsettings().deadline is not None  # the defaults are really in force
        test_exp_rate()
    finally:
        hsettings.load_profile("sdepolicy")


def test_kit_without_float64_says_so():
    """Without x64 the kit reported "rtol=1e-09" mismatches with no hint."""
    with jax.enable_x64(False):
        sde = sp.MeanRevertingSDE(ExpRate(jnp.asarray(0.4), 3.0), 0.3, 1.2)
        case = strategies.Case(sde, np.ones(3), np.zeros(3), 0.5, 1.0, 2.0)
        with pytest.raises(KitPrecisionError, match="float64"):
            check_all(case)
