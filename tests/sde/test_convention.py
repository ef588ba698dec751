"""One calling convention (README, "Calling convention"; issue 11).

- Closed forms take states positionally and times keyword-only: a positional time is a
  `TypeError` (before, `posterior(x_t, x_0, s, t)` took the earlier time after the later state).
- What a solver or sampler calls is `f(t, y, args)`, and `args` reaches it: before, the samplers
  called `f(t, x)` (the reverse-SDE and flow samplers took `args` and dropped it).
- The policy's denoiser and predictors are time first.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy.sde as sp
from sdepolicy.policy import Denoiser, DiffusionPolicy, mll_error, mll_prediction, mll_target


def _sde():
    return sp.MeanRevertingSDE(sp.cosine_schedule(5), jnp.asarray([0.2, -0.1]), 1.3)


# numpy at import (float64); jax arrays are built inside the tests, where float64 is on.
X = np.asarray([0.4, -0.7])
Y = np.asarray([1.1, 0.3])


@pytest.mark.parametrize(
    "call",
    [
        lambda sde, x, y: sde.posterior(y, x, 2.0, 3.0),
        lambda sde, x, y: sde.posterior(y, x, 2.0, t=3.0),
        lambda sde, x, y: sde.transition(x, 1.0, 2.0),
        lambda sde, x, y: sde.marginal(x, 2.0),
        lambda sde, x, y: sde.score(y, x, 2.0),
        lambda sde, x, y: sde.noise_from_x0(y, x, 2.0),
        lambda sde, x, y: sde.x0_from_noise(y, x, 2.0),
        lambda sde, x, y: sde.score_from_noise(x, 2.0),
        lambda sde, x, y: mll_target(sde, y, x, 2.0),
        lambda sde, x, y: mll_prediction(sde, y, x, 2.0),
        lambda sde, x, y: mll_error(sde, y, x, x, 2.0),
        lambda sde, x, y: sp.PosteriorSampler(sde).step(
            lambda t, z, args: z, y, jax.random.key(0), None, 2.0, 3.0
        ),
    ],
)
def test_closed_forms_refuse_positional_times(call):
    sde, x, y = _sde(), jnp.asarray(X), jnp.asarray(Y)
    with pytest.raises(TypeError, match="positional"):
        call(sde, x, y)


def test_keyword_times_give_the_closed_forms():
    r"""The keyword forms against the formulas of docs/method.md §1 written out from $\Theta$."""
    sde = _sde()
    mu, lam2 = np.asarray(sde.mean), 1.3**2
    th = lambda t: float(sde.schedule.cumulative(t))  # noqa: E731
    s, t = 2.0, 3.0
    v = lambda a, b: lam2 * -np.expm1(-2 * (th(b) - th(a)))  # noqa: E731
    law = sde.transition(X, s=s, t=t)
    np.testing.assert_allclose(law.mean, mu + (X - mu) * np.exp(-(th(t) - th(s))), rtol=1e-12)
    np.testing.assert_allclose(law.variance, v(s, t), rtol=1e-12)
    np.testing.assert_allclose(sde.marginal(X, t=t).variance, v(0.0, t), rtol=1e-12)
    post = sde.posterior(Y, X, s=s, t=t)  # p(x_s | x_t = Y, x_0 = X)
    c_t = v(0.0, s) * np.exp(-(th(t) - th(s))) / v(0.0, t)
    c_0 = v(s, t) * np.exp(-th(s)) / v(0.0, t)
    np.testing.assert_allclose(post.mean, mu + c_t * (Y - mu) + c_0 * (X - mu), rtol=1e-12)
    m_t = mu + (X - mu) * np.exp(-th(t))
    np.testing.assert_allclose(sde.score(Y, X, t=t), -(Y - m_t) / v(0.0, t), rtol=1e-12)


class _Recorder:
    """A score / x0 predictor / noise predictor that records how it is called."""

    def __init__(self):
        self.calls = []

    def __call__(self, *positional, **keywords):
        self.calls.append((len(positional), tuple(keywords)))
        t, y, args = positional
        return -args * y + 0.0 * t


@pytest.mark.parametrize("which", ["posterior", "reverse_sde", "probability_flow"])
def test_samplers_call_f_t_y_args_and_pass_args_through(which):
    sde = _sde()
    key = jax.random.key(1)
    grid = jnp.asarray([0.0, 2.5, 5.0])
    y = jnp.asarray(Y)
    samplers = {
        "posterior": lambda f, c: sp.PosteriorSampler(sde, grid)(f, y, key, c),
        "reverse_sde": lambda f, c: sp.ReverseSDESampler(sde, 3, t_end=0.1, brownian="unsafe")(
            f, y, key, c
        ),
        "probability_flow": lambda f, c: sp.ProbabilityFlowSampler(sde, 3, t_end=0.1)(f, y, key, c),
    }
    run = samplers[which]
    recorder = _Recorder()
    with_args = run(recorder, jnp.asarray(0.8))
    assert recorder.calls and set(recorder.calls) == {(3, ())}
    # `args` reaches the function: the result is the same as with the constant closed over,
    # and differs from another value of it (the same function object: no new compilation).
    closed = run(lambda t, y, args: -0.8 * y + 0.0 * t, None)
    np.testing.assert_allclose(with_args, closed, rtol=1e-12, atol=1e-12)
    other = run(recorder, jnp.asarray(0.2))
    assert not np.allclose(with_args, other)


def test_noise_modules_and_likelihood_pass_args_to_the_noise_predictor():
    sde = _sde()
    eps = lambda t, y, c: c * jnp.tanh(y)  # noqa: E731
    t, y = jnp.asarray(2.0), jnp.asarray(Y)
    x0 = sp.noise_to_x0_predictor(sde, eps)(t, y, 0.5)
    np.testing.assert_allclose(x0, sde.x0_from_noise(y, 0.5 * jnp.tanh(y), t=t), rtol=1e-12)
    score = sp.noise_to_score(sde, eps)(t, y, 0.5)
    np.testing.assert_allclose(score, sde.score_from_noise(0.5 * jnp.tanh(y), t=t), rtol=1e-12)
    # The likelihood's score has the same signature as the samplers'.
    recorder = _Recorder()
    sp.LogLikelihood(sde, t0=0.5)(recorder, X, jnp.asarray(0.3))
    assert recorder.calls and set(recorder.calls) == {(3, ())}


def test_policy_denoiser_and_predictors_are_time_first():
    assert list(inspect.signature(Denoiser.__call__).parameters)[1:] == ["t", "x_t", "state"]
    for name in ("predict_noise", "predict_x0"):
        params = list(inspect.signature(getattr(DiffusionPolicy, name)).parameters)
        assert params[1:] == ["t", "x_t", "state"], name
    policy = DiffusionPolicy.create(
        3, 2, [-1.0, -1.0], [1.0, 1.0], key=jax.random.key(0), hidden=8, depth=1
    )
    t, x, state = jnp.asarray(3.0), jnp.asarray([0.2, -0.4]), jnp.asarray([0.1, 0.5, -0.3])
    eps = policy.predict_noise(t, x, state)
    # The network sees the step index k = t - 1: the reference code's time input.
    np.testing.assert_array_equal(eps, policy.denoiser(t - 1.0, x, state))
    assert not np.allclose(eps, policy.denoiser(t, x, state))
