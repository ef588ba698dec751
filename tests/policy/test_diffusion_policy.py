"""`DiffusionPolicy`: construction, posterior sampling in the env box, gradients through the
chain, x0 clipping (float32, as in training)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy as sp
from sdepolicy.policy import SCHEDULES, ActionBox, DiffusionPolicy, make_schedule
from sdepolicy.sde import LinearSchedule, PiecewiseConstantSchedule

STATE_DIM, ACTION_DIM, BATCH = 3, 2, 16
LOW, HIGH = np.array([-2.0, 0.0]), np.array([2.0, 0.5])  # Pendulum-like and asymmetric


@functools.cache
def _policy(x0_clip: bool) -> DiffusionPolicy:
    return DiffusionPolicy.create(
        STATE_DIM,
        ACTION_DIM,
        LOW,
        HIGH,
        key=jax.random.key(0),
        hidden=16,
        depth=2,
        x0_clip=x0_clip,
    )


def _states(seed=0):
    return jnp.asarray(
        np.random.default_rng(seed).standard_normal((BATCH, STATE_DIM)), dtype=jnp.float32
    )


TARGET = jnp.array([0.3, 0.1])


@eqx.filter_jit
def _run(policy, states, key):
    # Samples and the gradient of a Q-like objective through the chain, in ONE compiled call per
    # policy structure (compiling dominates the cost of these tests).
    def objective(p):
        actions = p.sample(states, key)
        return -jnp.sum((p.box.to_unit(actions) - TARGET) ** 2), actions

    (_, actions), grads = eqx.filter_value_and_grad(objective, has_aux=True)(policy)
    return actions, grads


def _sample_both(policy, states, key):
    """Env-box samples and the same in the unit box (mapped back in NumPy)."""
    env, _ = _run(policy, states, key)
    env = np.asarray(env)
    return env, 2 * (env - LOW) / (HIGH - LOW) - 1


_denoise = eqx.filter_jit(lambda net, *args: jax.vmap(net)(*args))


def _hand_chain(policy: DiffusionPolicy, states, key):
    # The posterior sampler written out: a^T from split(key)[0], step noise from
    # split(split(key)[1], T) top-down, x0_hat = (a - sqrt(v_t) eps_hat) e^{Theta_t} (clipped if
    # asked), a <- c_t a + c_0 x0_hat + sqrt(beta) z with NumPy coefficients, output clipped.
    T = policy.num_steps
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(policy.sde.schedule.increments))])
    init_key, chain_key = jax.random.split(key)
    a = np.asarray(jax.random.normal(init_key, (BATCH, ACTION_DIM)), dtype=np.float64)
    keys = jax.random.split(chain_key, T)
    for i, t in enumerate(range(T, 0, -1)):
        v_t, v_s, v_st = (1 - np.exp(-2 * c) for c in (cum[t], cum[t - 1], cum[t] - cum[t - 1]))
        eps = np.asarray(
            _denoise(
                policy.denoiser, jnp.full((BATCH,), t - 1.0), jnp.asarray(a, jnp.float32), states
            )
        )
        x0 = (a - np.sqrt(v_t) * eps) * np.exp(cum[t])
        if policy.x0_clip:
            x0 = np.clip(x0, -1, 1)
        c_t, c_0 = v_s * np.exp(-(cum[t] - cum[t - 1])) / v_t, v_st * np.exp(-cum[t - 1]) / v_t
        mean = c_t * a + c_0 * x0
        z = np.asarray(jax.random.normal(keys[i], (BATCH, ACTION_DIM)))
        a = mean + np.sqrt(v_s * v_st / v_t) * z
    return np.clip(a, -1, 1)


@pytest.mark.parametrize("x0_clip", [True, False])
def test_sample_is_the_posterior_chain_in_the_env_box(x0_clip):
    policy, states = _policy(x0_clip), _states()
    key = jax.random.key(5)
    env, unit = _sample_both(policy, states, key)
    assert env.shape == (BATCH, ACTION_DIM) and env.dtype == np.float32
    assert np.all((env >= LOW) & (env <= HIGH))
    np.testing.assert_allclose(unit, _hand_chain(policy, states, key), atol=3e-4)
    again, _ = _sample_both(policy, states, key)
    np.testing.assert_array_equal(env, again)  # deterministic given the key
    other, _ = _sample_both(policy, states, jax.random.key(6))
    assert not np.allclose(env, other)
    if x0_clip:  # with x0 clipped the chain stays inside the box: not all samples saturate
        assert np.mean(np.abs(unit) < 0.999) > 0.5


@eqx.filter_jit
def _predictions(clipped, free, x_t, t, state):
    eps = free.predict_noise(t, x_t, state)
    return {
        "clipped": clipped.predict_x0(t, x_t, state),
        "raw": free.predict_x0(t, x_t, state),
        "from_noise": free.sde.x0_from_noise(x_t, eps, t=t),
        "eps": eps,
        "eps_k": free.denoiser(t - 1.0, x_t, state),
    }


def test_x0_clip_is_respected():
    x_t, state = jnp.array([3.0, -2.5]), jnp.ones(STATE_DIM)
    out = _predictions(_policy(True), _policy(False), x_t, jnp.array(5.0), state)
    assert np.max(np.abs(out["raw"])) > 10  # e^{Theta_5} = 1000 amplifies
    np.testing.assert_allclose(out["clipped"], np.clip(out["raw"], -1, 1))
    np.testing.assert_allclose(out["raw"], out["from_noise"])
    np.testing.assert_array_equal(out["eps"], out["eps_k"])  # the network sees k = t - 1
    a = _sample_both(_policy(True), _states(), jax.random.key(5))[1]
    b = _sample_both(_policy(False), _states(), jax.random.key(5))[1]
    assert not np.allclose(a, b)


@pytest.mark.parametrize("x0_clip", [True, False])
def test_sample_is_differentiable_through_the_chain(x0_clip):
    # Diffusion-QL backpropagates a Q-value through the whole chain.
    _, grads = _run(_policy(x0_clip), _states(), jax.random.key(5))
    leaves = [
        np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    ]
    # The schedule and the box get gradients too (they are not trained): all must be finite.
    assert all(np.all(np.isfinite(x)) for x in leaves)
    net = [
        np.asarray(x)
        for x in jax.tree_util.tree_leaves(eqx.filter(grads.denoiser, eqx.is_inexact_array))
    ]
    if x0_clip:  # without clipping an untrained chain saturates and the output clip kills them
        assert max(np.max(np.abs(x)) for x in net) > 1e-4


def test_create_schedules_and_validation():
    for name, make in SCHEDULES.items():
        schedule = make_schedule(name, 4)
        assert schedule.horizon == 4.0
        np.testing.assert_allclose(schedule.increments, make(4).increments)
    np.testing.assert_allclose(SCHEDULES["vp"](5).increments, sp.vp_schedule(5).increments)
    np.testing.assert_allclose(SCHEDULES["cosine"](5).increments, sp.cosine_schedule(5).increments)
    assert _policy(False).num_steps == 5  # the default: cosine, T = 5
    np.testing.assert_allclose(
        _policy(False).sde.schedule.increments, sp.cosine_schedule(5).increments
    )
    custom = PiecewiseConstantSchedule(jnp.array([0.5, 1.0, 2.0]))
    p = DiffusionPolicy.create(
        STATE_DIM, ACTION_DIM, LOW, HIGH, key=jax.random.key(0), schedule=custom, hidden=16, depth=2
    )
    assert p.num_steps == 3 and p.sde.schedule is custom
    np.testing.assert_array_equal(p.sde.mean, 0.0)
    assert float(p.sde.stationary_std) == 1.0
    with pytest.raises(ValueError, match="cosine, vp"):
        DiffusionPolicy.create(1, 1, [-1.0], [1.0], key=jax.random.key(0), schedule="sigmoid")
    with pytest.raises(ValueError, match="positive integer"):
        DiffusionPolicy.create(
            1,
            1,
            [-1.0],
            [1.0],
            key=jax.random.key(0),
            schedule=LinearSchedule(0.1, 1.0, horizon=2.5),
        )
    with pytest.raises(ValueError, match="action_dim"):
        DiffusionPolicy(p.sde, p.denoiser, ActionBox([-1.0], [1.0]))


def test_what_the_policy_tells_an_agent():
    """The policy's answers to what an agent needs, checked against the pieces they are made of:
    the trained parameters (the denoiser's arrays only), the one-step prediction (the loss's
    `x0_hat`, clipped into the environment's box), its amplification at each step, and the
    entropy estimators by name."""
    policy = _policy(False)
    spec = policy.trainable_filter()
    assert not any(jax.tree.leaves((spec.sde, spec.box)))  # the schedule and the box are fixed
    assert jax.tree.leaves(policy.sde) and jax.tree.leaves(policy.box)  # (they have arrays)
    denoiser_arrays = jax.tree.leaves(eqx.filter(policy.denoiser, eqx.is_inexact_array))
    assert [id(x) for x in jax.tree.leaves(eqx.filter(policy, spec))] == list(
        map(id, denoiser_arrays)
    )

    states = _states(1)
    actions = jnp.asarray(np.random.default_rng(2).uniform(LOW, HIGH, (BATCH, ACTION_DIM)))
    key = jax.random.key(3)
    pred = eqx.filter_jit(lambda p: p.loss_and_prediction(states, actions, key, "nml"))(policy)
    loss, x0 = eqx.filter_jit(lambda p: p.loss(states, actions, key, "nml"))(policy)
    np.testing.assert_allclose(pred.loss, loss, rtol=1e-6)
    np.testing.assert_allclose(pred.x0, x0, rtol=1e-6)
    unit = np.clip(np.asarray(x0), -1.0, 1.0)
    np.testing.assert_allclose(pred.action, LOW + (unit + 1) * 0.5 * (HIGH - LOW), rtol=1e-5)
    assert float(np.max(np.abs(np.asarray(x0)))) > 1.0  # the clip did something
    steps, _ = policy.draw_steps_and_noise(actions, key)
    np.testing.assert_array_equal(pred.steps, steps)

    # e^{-Θ_t}/√v_t from the T = 5 cosine grid's table (docs/method.md §2).
    cum = np.array([0.19749, 0.90145, 2.28727, 4.35043, 6.90776])
    var = np.array([0.32630, 0.83518, 0.98969, 0.99983, 0.999999])
    np.testing.assert_allclose(
        policy.x0_gain_inverse(jnp.arange(5)), np.exp(-cum) / np.sqrt(var), rtol=2e-4
    )

    for name in ("reference", "paper"):
        h = policy.entropy(name, states, pred.x0, key)
        estimator = sp.policy.get_entropy_estimator(name)
        keys = jax.random.split(key, BATCH)
        want = [estimator(policy.sde, pred.x0[i], keys[i]) for i in range(BATCH)]
        np.testing.assert_allclose(h, want, rtol=1e-5)
    own = policy.entropy("likelihood", states, pred.x0, key)
    np.testing.assert_allclose(own, sp.policy.policy_entropy(policy, states, key), rtol=1e-6)
    with pytest.raises(ValueError, match="valid names"):
        policy.entropy("shannon", states, pred.x0, key)
