"""Bad input to the SDE floor fails loudly (an `SDEInputError`, a `ValueError`) instead of
returning a wrong number; every case here returned one before (issue 11).

- closed forms: a posterior with s >= t (negative variance), at t = 0 (NaN), a transition with
  t < s, scores at t = 0;
- the posterior sampler: grids that do not start at 0 or end at the horizon, a continuous
  schedule without `times` (it used to run one step from 1 to 0 when T = 1);
- the probability-flow sampler with a noise-predictor score and t_end = 0 (all NaN before);
- a user schedule whose `horizon` is not a static field (a ConcretizationTypeError deep inside
  a sampler under `jax.jit` before);
- and the same calls on good input still work under `jit` with traced times (bad traced input
  is refused at run time since issue 30: `test_edges.py`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import sdepolicy.sde as sp
from sdepolicy.sde import SDEInputError


def _sde():
    return sp.MeanRevertingSDE(sp.cosine_schedule(5), 0.2, 1.3)


@pytest.mark.parametrize(
    "call",
    [
        lambda sde, x: sde.posterior(x, x, s=3.0, t=2.0),  # variance -17.8 before
        lambda sde, x: sde.posterior(x, x, s=2.0, t=2.0),
        lambda sde, x: sde.posterior(x, x, s=0.0, t=0.0),  # NaN before
        lambda sde, x: sde.posterior(x, x, s=-1.0, t=2.0),
        lambda sde, x: sde.posterior_coefficients(3.0, 2.0),
        lambda sde, x: sde.transition(x, s=3.0, t=2.0),  # variance -15 before
        lambda sde, x: sde.transition(x, s=-0.5, t=2.0),
        lambda sde, x: sde.marginal(x, t=-1.0),
        lambda sde, x: sde.score(x, x, t=0.0),
        lambda sde, x: sde.noise_from_x0(x, x, t=0.0),
        lambda sde, x: sde.score_from_noise(x, t=0.0),
        lambda sde, x: sde.marginal(x, t=float("nan")),
    ],
    ids=[
        "posterior-s>t",
        "posterior-s=t",
        "posterior-t=0",
        "posterior-s<0",
        "coefficients-s>t",
        "transition-t<s",
        "transition-s<0",
        "marginal-t<0",
        "score-t=0",
        "noise-t=0",
        "score_from_noise-t=0",
        "marginal-nan",
    ],
)
def test_closed_forms_reject_times_outside_their_domain(call):
    with pytest.raises(SDEInputError):
        call(_sde(), jnp.asarray([0.3, -0.1]))


def test_closed_forms_keep_working_on_their_domain_and_under_jit():
    sde = _sde()
    x = jnp.asarray([0.3, -0.1])
    # The boundary cases that are well defined.
    np.testing.assert_allclose(sde.transition(x, s=2.0, t=2.0).variance, 0.0, atol=1e-15)
    assert float(sde.posterior(x, x, s=0.0, t=1.0).variance) == 0.0
    np.testing.assert_allclose(sde.x0_from_noise(x, x, t=0.0), x)
    # Good traced times give the eager numbers (bad ones stop at run time: test_edges.py).
    var = jax.jit(lambda s, t: sde.posterior(x, x, s=s, t=t).variance)(1.0, 2.0)
    np.testing.assert_allclose(var, sde.posterior(x, x, s=1.0, t=2.0).variance, rtol=1e-14)
    assert issubclass(SDEInputError, ValueError)


@pytest.mark.parametrize(
    "times, match",
    [
        ([0.5, 1.0, 5.0], "start at 0"),
        ([0.0, 1.0, 4.0], "end at the horizon"),
        ([0.0, 3.0, 2.0, 5.0], "increasing"),
        ([0.0, float("nan"), 5.0], "finite"),
    ],
)
def test_posterior_sampler_grid_must_span_zero_to_horizon(times, match):
    with pytest.raises(SDEInputError, match=match):
        sp.PosteriorSampler(_sde(), times=times)


@pytest.mark.parametrize("horizon", [1.0, 2.5, 3.0])
def test_continuous_schedule_needs_times(horizon):
    """T = 1 used to give the grid [0, 1] silently (one step: worse than the prior)."""
    sde = sp.MeanRevertingSDE(sp.ConstantSchedule(1.0, horizon))
    with pytest.raises(SDEInputError, match="pass `times`"):
        sp.PosteriorSampler(sde)
    sampler = sp.PosteriorSampler(sde, times=np.linspace(0.0, horizon, 11))
    assert sampler.times.shape == (11,)


def test_probability_flow_refuses_a_noise_score_at_t_end_zero():
    sde = _sde()

    def eps(t, x, args):
        return jnp.tanh(x)

    score = sp.noise_to_score(sde, eps)
    x_T = jnp.asarray([0.3, -0.1])
    with pytest.raises(SDEInputError, match="t_end > 0"):
        sp.ProbabilityFlowSampler(sde, 10)(score, x_T)
    with pytest.raises(SDEInputError, match="t_end > 0"):
        sp.ReverseSDESampler(sde, 10, solver=__import__("diffrax").Heun())(
            score, x_T, jax.random.key(0)
        )
    out = sp.ProbabilityFlowSampler(sde, 10, t_end=5e-3)(score, x_T)
    assert np.all(np.isfinite(out))
    for t_end in (-0.1, 5.0, 7.0):
        with pytest.raises(SDEInputError, match="t_end"):
            sp.ProbabilityFlowSampler(sde, 10, t_end=t_end)


def test_user_schedule_horizon_must_be_static():
    class NonStatic(sp.AbstractSchedule):
        c: Float[Array, ""]
        horizon: float

        def rate(self, t):
            return self.c

        def cumulative(self, t):
            return self.c * jnp.asarray(t, self.c.dtype)

    with pytest.raises(SDEInputError, match="static"):
        NonStatic(jnp.asarray(1.0), 2.0)

    class Static(sp.AbstractSchedule):
        c: Float[Array, ""]
        horizon: float = eqx.field(static=True)

        def rate(self, t):
            return self.c

        def cumulative(self, t):
            return self.c * jnp.asarray(t, self.c.dtype)

    with pytest.raises(SDEInputError, match="positive"):
        Static(jnp.asarray(1.0), -2.0)  # (c, horizon): the order declared
    sde = sp.MeanRevertingSDE(Static(jnp.asarray(1.0), 2.0))
    sampler = sp.PosteriorSampler(sde, times=jnp.linspace(0.0, 2.0, 5))
    x_T = jnp.asarray([0.1, 0.2])
    # jax.jit traces every leaf of the sampler: the static horizon survives.
    out = jax.jit(lambda smp, x, k: smp(lambda t, y, args: 0.0 * y, x, k))(
        sampler, x_T, jax.random.key(0)
    )
    np.testing.assert_allclose(out, 0.0, atol=1e-12)


def test_public_edges_take_numpy_arrays_scalars_and_lists():
    """Under the suite's beartype hook these calls were rejected before (issue 11)."""
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5), mean=0.0, stationary_std=1.0)
    x0 = [0.5, -0.25]
    want = sde.marginal(jnp.asarray(x0), t=3.0)
    for x in (np.asarray(x0), x0):
        np.testing.assert_allclose(sde.marginal(x, t=np.float64(3.0)).mean, want.mean)
    post = sde.posterior(np.asarray([0.1]), [0.2], s=2, t=3)
    np.testing.assert_allclose(
        post.mean, sde.posterior(jnp.asarray([0.1]), jnp.asarray([0.2]), s=2.0, t=3.0).mean
    )
    law = sp.DiagonalGaussian(np.asarray([0.0, 1.0]), 1.0)
    np.testing.assert_allclose(law.log_prob([0.0, 1.0]), -np.log(2 * np.pi), rtol=1e-12)
    assert law.variance.dtype == law.mean.dtype
    assert sde.prior([2]).mean.shape == (2,) and sde.prior(3).mean.shape == (3,)
    np.testing.assert_array_equal(
        sp.PosteriorSampler(sde, times=[0, 1, 2, 3, 4, 5]).times, np.arange(6.0)
    )
    assert sp.ReverseSDESampler(sde, np.int64(4)).num_steps == 4
    assert type(sp.ProbabilityFlowSampler(sde, np.int64(4)).num_steps) is int
    np.testing.assert_allclose(
        sde.score(0.3, 0.1, t=1), sde.score(jnp.asarray(0.3), jnp.asarray(0.1), t=1.0)
    )


def test_sde_input_error_is_an_sdepolicy_error():
    """One `except SdepolicyError` (what the CLI catches to print one `error:` line, exit 2)
    now covers bad input to the SDE floor too; it was a bare `ValueError` subclass. The root
    class is importable from its old place under the same name, and the floor does not import
    the RL layer."""
    import subprocess
    import sys

    from sdepolicy._errors import SdepolicyError as root
    from sdepolicy.rl import ConfigError, SdepolicyError

    assert SdepolicyError is root and issubclass(ConfigError, root)
    assert issubclass(sp.SDEInputError, SdepolicyError)
    assert issubclass(sp.SDEInputError, ValueError)
    try:
        sp.MeanRevertingSDE(sp.cosine_schedule(5)).posterior(0.0, 0.0, s=3.0, t=2.0)
    except SdepolicyError as error:
        assert error.exit_code == 2 and "\n" not in str(error)
    else:  # pragma: no cover
        raise AssertionError("posterior(s > t) did not raise")
    code = (
        "import sys, sdepolicy.sde; print(any(m.startswith('sdepolicy.rl') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
