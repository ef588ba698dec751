"""The diffusion losses (docs/method.md §4) against hand computations (float64, strict promotion).

The hand computations use NumPy with the docs/method.md §2 table or cumulative sums of the schedule's
increments, never the SDE methods the code calls; `sde.posterior` and `sde.reverse_drift` are
used only as second, independent routes.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy as sp
from sdepolicy.policy import DiffusionPolicy, mll_error, mll_prediction, mll_target
from sdepolicy.sde import PiecewiseConstantSchedule

pytestmark = pytest.mark.usefixtures("maths_precision")

# docs/method.md §2, T = 5 cosine, columns t = 1..5.
TABLE = {
    "increment": [0.19749, 0.70396, 1.38582, 2.06317, 2.55732],
    "cumulative": [0.19749, 0.90145, 2.28727, 4.35043, 6.90776],
    "v": [0.32630, 0.83518, 0.98969, 0.99983, 0.999999],
    "coef_t": [0.0, 0.19325, 0.21107, 0.12576, 0.07750],
    "coef_0": [1.0, 0.74234, 0.38455, 0.09992, 0.01282],
}
STATE_DIM, ACTION_DIM, BATCH = 3, 2, 64


@functools.cache
def _policy(low=-1.0, high=1.0, x0_clip=False) -> DiffusionPolicy:
    return DiffusionPolicy.create(
        STATE_DIM,
        ACTION_DIM,
        [low] * ACTION_DIM,
        [high] * ACTION_DIM,
        key=jax.random.key(0),
        hidden=16,
        depth=2,
        x0_clip=x0_clip,
    )


def _batch(seed=0):
    # NumPy draws: no JAX kernels to compile for test inputs.
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((BATCH, STATE_DIM))
    actions = rng.uniform(-1.0, 1.0, (BATCH, ACTION_DIM))
    steps = rng.integers(0, 5, BATCH, dtype=np.int32)
    noise = rng.standard_normal((BATCH, ACTION_DIM))
    return states, actions, steps, noise


@eqx.filter_jit
def _compute(policy, states, actions, steps, noise, key):
    # Everything the tests need from one policy in ONE compiled call (compiling dominates).
    out = {}
    for kind in ("nml", "mll"):
        keyed = lambda p, kind=kind: p.loss(states, actions, key, kind)
        grads = eqx.filter_grad(lambda p, keyed=keyed: keyed(p)[0])(policy)
        out[kind] = {
            "at": policy.loss_at(states, actions, noise, steps=steps, kind=kind),
            "keyed": keyed(policy),
            "grad": eqx.filter(grads.denoiser, eqx.is_inexact_array),
        }
    return out


@functools.cache
def _results(low=-1.0, high=1.0, x0_clip=False, seed=0):
    states, actions, steps, noise = _batch(seed)
    scale = (high - low) / 2
    return _compute(
        _policy(low, high, x0_clip), states, scale * actions, steps, noise, jax.random.key(42)
    )


_denoise = eqx.filter_jit(lambda net, *args: jax.vmap(net)(*args))


def _hand(policy, states, actions, steps, noise):
    # a_t and x0_hat from cumulative sums of the increments (NumPy), eps_hat from the network.
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(policy.sde.schedule.increments))])
    t = np.asarray(steps) + 1
    decay = np.exp(-cum[t])[:, None]
    std = np.sqrt(1 - decay**2)
    a_t = np.asarray(actions) * decay + std * np.asarray(noise)
    eps_hat = np.asarray(_denoise(policy.denoiser, t - 1.0, a_t, states))
    x0_hat = (a_t - std * eps_hat) / decay
    return cum, t, a_t, eps_hat, x0_hat


def test_schedule_matches_the_spec_table():
    cum = np.cumsum(np.asarray(_policy().sde.schedule.increments))
    np.testing.assert_allclose(cum, TABLE["cumulative"], rtol=2e-5)
    np.testing.assert_allclose(1 - np.exp(-2 * cum), TABLE["v"], rtol=2e-5)


@jax.jit
def _documented_draws(key):
    step_key, noise_key = jax.random.split(key)
    steps = jax.random.randint(step_key, (BATCH,), 0, 5)
    return steps, jax.random.normal(noise_key, (BATCH, ACTION_DIM))


@pytest.mark.parametrize("kind", ["nml", "mll"])
def test_loss_draws_steps_and_noise_as_documented(kind):
    # loss(key) = loss_at(steps, noise) with steps ~ U{0..T-1} from split(key)[0] and the noise
    # from split(key)[1]: checked through _compute's second call with exactly those draws.
    states, actions, _, _ = _batch()
    steps, noise = _documented_draws(jax.random.key(42))
    assert set(np.asarray(steps).tolist()) == {0, 1, 2, 3, 4}  # every step is drawn
    want = _compute(_policy(), states, actions, steps, noise, jax.random.key(0))[kind]["at"]
    got = _results()[kind]["keyed"]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)


def test_nml_loss_and_x0_hat_equal_their_definitions():
    policy = _policy()
    states, actions, steps, noise = _batch()
    loss, x0_hat = _results()["nml"]["at"]
    _, _, _, eps_hat, want_x0 = _hand(policy, states, actions, steps, noise)
    np.testing.assert_allclose(loss, np.mean((eps_hat - np.asarray(noise)) ** 2), rtol=1e-10)
    np.testing.assert_allclose(x0_hat, want_x0, rtol=1e-9, atol=1e-9)
    assert x0_hat.shape == (BATCH, ACTION_DIM)


def test_x0_hat_is_not_clipped_even_with_x0_clip():
    states, actions, steps, noise = _batch()
    loss_at = eqx.filter_jit(lambda p, s, a, k, e: p.loss_at(s, a, e, steps=k, kind="nml"))
    clipped = loss_at(_policy(x0_clip=True), states, actions, steps, noise)
    free = _results()["nml"]["at"]
    assert np.max(np.abs(np.asarray(clipped[1]))) > 1.5  # an untrained net at t = 5 overshoots
    np.testing.assert_array_equal(clipped[1], free[1])
    np.testing.assert_array_equal(clipped[0], free[0])


@jax.jit
def _targets(sde, x_t, x_0, t):
    return mll_target(sde, x_t, x_0, t=t), sde.posterior(x_t, x_0, s=t - 1, t=t).mean


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5])
def test_mll_target_is_the_posterior_mean_of_the_spec_table(t):
    x_t, x_0 = np.array([0.7, -1.3]), np.array([-0.4, 0.9])
    got, posterior = _targets(_policy().sde, x_t, x_0, float(t))
    hand = TABLE["coef_t"][t - 1] * x_t + TABLE["coef_0"][t - 1] * x_0
    np.testing.assert_allclose(got, hand, rtol=5e-4, atol=2e-5)
    np.testing.assert_allclose(got, posterior, rtol=1e-13)


def _weak_sde():
    return sp.MeanRevertingSDE(
        PiecewiseConstantSchedule(jnp.array([0.3, 0.2, 0.25, 0.6])),
        mean=jnp.array([0.2, -0.1]),
        stationary_std=1.5,
    )


@jax.jit
def _predictions(sde, x_t, eps_hat, t):
    score = lambda s, x, args: sde.score_from_noise(eps_hat, t=s)
    # On (t-1, t] the rate is constant, so one step of length 1 of the diffrax reverse drift
    # (evaluated at t, from where the reverse SDE starts) is the same Euler step.
    euler = x_t - sde.reverse_drift(score)(t, x_t, None) * 1.0
    return mll_prediction(sde, x_t, eps_hat, t=t), euler


@pytest.mark.parametrize("which", ["cosine", "weak"])
def test_mll_prediction_is_a_unit_euler_step_of_the_reverse_sde(which):
    sde = _policy().sde if which == "cosine" else _weak_sde()
    x, e = np.array([0.7, -1.3]), np.array([0.3, 0.8])
    for t in range(1, int(sde.horizon) + 1):
        got, euler = _predictions(sde, x, e, float(t))
        np.testing.assert_allclose(got, euler, rtol=1e-12)
        if which == "cosine":  # the reference formula with the docs/method.md §2 table's theta_k dt and v_t
            inc, v = TABLE["increment"][t - 1], TABLE["v"][t - 1]
            np.testing.assert_allclose(got, x - (-inc * x - 2 * inc * (-e / np.sqrt(v))), rtol=1e-4)


def test_mll_loss_equals_its_definition():
    policy = _policy()
    states, actions, steps, noise = _batch()
    loss, x0_hat = _results()["mll"]["at"]
    cum, t, a_t, eps_hat, want_x0 = _hand(policy, states, actions, steps, noise)
    actions = np.asarray(actions)
    inc = cum[t] - cum[t - 1]
    v_t, v_s, v_st = (1 - np.exp(-2 * c) for c in (cum[t], cum[t - 1], inc))
    pred = a_t + inc[:, None] * a_t - 2 * inc[:, None] * eps_hat / np.sqrt(v_t)[:, None]
    c_t = (v_s * np.exp(-inc) / v_t)[:, None]
    c_0 = (v_st * np.exp(-cum[t - 1]) / v_t)[:, None]
    target = c_t * a_t + c_0 * np.asarray(actions)
    np.testing.assert_allclose(loss, np.mean((pred - target) ** 2), rtol=1e-9)
    np.testing.assert_allclose(x0_hat, want_x0, rtol=1e-9, atol=1e-9)


def test_mll_optimum_is_not_the_true_noise():
    # docs/method.md §4: under MLL the optimal eps_hat is not eps (yet NML's is); keep this behaviour.
    @jax.jit
    def errors(sde, x_0, eps, t):
        law = sde.marginal(x_0, t=t)
        x_t = law.mean + jnp.sqrt(law.variance) * eps
        return jnp.sum(mll_error(sde, x_t, x_0, eps, t=t))

    x_0, eps = np.array([0.5, -0.2]), np.array([1.1, -0.7])
    for t in (2.0, 3.0, 5.0):
        assert float(errors(_policy().sde, x_0, eps, t)) > 1e-4


@pytest.mark.parametrize("kind", ["nml", "mll"])
def test_loss_maps_env_actions_to_the_unit_box(kind):
    # The same unit-box actions given as Pendulum actions (x2) to a [-2, 2] policy.
    a, b = _results()[kind], _results(-2.0, 2.0)[kind]
    for what in ("at", "keyed"):
        np.testing.assert_allclose(a[what][0], b[what][0], rtol=1e-12)
        np.testing.assert_allclose(a[what][1], b[what][1], rtol=1e-12)


@pytest.mark.parametrize("kind", ["nml", "mll"])
def test_loss_is_differentiable_in_the_denoiser(kind):
    leaves = jax.tree_util.tree_leaves(_results()[kind]["grad"])
    assert len(leaves) == 2 * (2 + 2 + 1)  # weights and biases of every layer
    for g in map(np.asarray, leaves):
        assert np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0


def test_unknown_loss_kind():
    states, actions, _, _ = _batch()
    with pytest.raises(ValueError, match="nml, mll"):
        _policy().loss(jnp.asarray(states), jnp.asarray(actions), jax.random.key(0), kind="l2")
