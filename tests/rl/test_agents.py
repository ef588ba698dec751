"""ER-DP-QE and Diffusion-QL updates checked against hand computations (docs/method.md §5-§7), and the
evaluation action selection.

Each `update` is compiled once per agent (config static) and reused by every test of that agent;
the expectations are recomputed outside the update from the state it started from, with the
PRNG split the update documents (`key, k_next, k_actor = split(state.key, 3)`). Compilation
dominates the cost of these tests, so the shapes are shared wherever possible (every sampler
call below has 96 rows) and compiled at XLA's lowest CPU optimisation level.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rl_helpers import jit
from _rl_helpers import member_net as _member_net

from sdepolicy.policy import DiffusionPolicy
from sdepolicy.rl import select_actions
from sdepolicy.rl.agents import BC, ERDPQE, BCConfig, DiffusionQL, DiffusionQLConfig, ERDPQEConfig
from sdepolicy.rl.agents._base import ema_update, td_targets

OBS, ACT, HIDDEN, BATCH = 4, 2, 32, 32
LOW, HIGH = np.array([-1.0, -2.0]), np.array([1.0, 0.5])  # asymmetric: exercises the box map
GN = 0.02
# x0_clip keeps a random policy's samples off the box corners, so candidates and next actions
# differ from each other (with huge unclipped x0 predictions they all saturate).
ERDPQE_CFG = ERDPQEConfig(
    num_critics=4,
    hidden=HIDDEN,
    batch_size=BATCH,
    x0_clip=True,
    max_q_backup=True,
    max_q_samples=3,
    ema_start=4,
    ema_every=2,
    grad_norm=GN,
)
DQL_CFG = DiffusionQLConfig(hidden=HIDDEN, batch_size=BATCH, max_q_backup=True, max_q_samples=3)
AGENT, DQL = ERDPQE(ERDPQE_CFG), DiffusionQL(DQL_CFG)


erdpqe_update = jit(ERDPQE.update)
dql_update = jit(DiffusionQL.update)
_sample = jit(lambda policy, states, key: policy.sample(states, key))


@pytest.fixture(scope="module")
def make_batch(make_transitions):
    """A batch of BATCH transitions in the asymmetric box, half of them terminal."""
    return lambda seed: make_transitions(seed, BATCH, OBS, ACT, low=LOW, high=HIGH)


def member_net(ensemble, m):
    """Member m of a QEnsemble as an ordinary function (s, a) -> q[b]."""
    return _member_net(ensemble, m, OBS + ACT, HIDDEN)


def scaled_target(state, key, scale=5.0):
    """Target critics with O(1) spread between members, so that the choice of target rule
    (per member, min, max over samples, masking) moves the loss well beyond tolerance."""
    shape = state.target_critic.weights[-1].shape
    w = scale * jax.random.normal(key, shape) / np.sqrt(HIDDEN)
    target = eqx.tree_at(lambda c: c.weights[-1], state.target_critic, w)
    return eqx.tree_at(lambda s: s.target_critic, state, target)


@pytest.fixture(scope="module")
def erdpqe_start():
    state = AGENT.init(OBS, ACT, LOW, HIGH, jax.random.key(1))
    return scaled_target(state, jax.random.key(2))


@pytest.fixture(scope="module")
def erdpqe_step(erdpqe_start, make_batch):
    batch = make_batch(3)
    new, metrics = erdpqe_update(AGENT, erdpqe_start, batch)
    return erdpqe_start, batch, new, metrics


def test_erdpqe_per_member_max_q_targets(erdpqe_step):
    state, batch, _, metrics = erdpqe_step
    _, k_next, _ = jax.random.split(state.key, 3)
    n = ERDPQE_CFG.max_q_samples
    rep = jnp.repeat(batch.next_observations, n, axis=0)
    next_actions = _sample(state.ema_actor, rep, k_next)
    assert bool(jnp.all((next_actions >= LOW - 1e-6) & (next_actions <= HIGH + 1e-6)))
    not_done = 1.0 - batch.terminals
    losses, alt = [], {"min": [], "mean_over_samples": [], "no_mask": []}
    next_q = jnp.stack([member_net(state.target_critic, m)(rep, next_actions) for m in range(4)])
    next_q = next_q.reshape(4, BATCH, n)
    for m in range(4):
        q = member_net(state.critic, m)(batch.observations, batch.actions)
        y = batch.rewards + 0.99 * not_done * next_q[m].max(axis=1)
        losses.append(jnp.mean((q - y) ** 2))
        y_min = batch.rewards + 0.99 * not_done * next_q.max(axis=2).min(axis=0)
        y_mean = batch.rewards + 0.99 * not_done * next_q[m].mean(axis=1)
        y_nomask = batch.rewards + 0.99 * next_q[m].max(axis=1)
        for name, yy in (("min", y_min), ("mean_over_samples", y_mean), ("no_mask", y_nomask)):
            alt[name].append(jnp.mean((q - yy) ** 2))
    expected = float(np.mean(losses))
    np.testing.assert_allclose(float(metrics["critic_loss"]), expected, rtol=1e-4)
    # The check discriminates: every wrong target rule moves the loss by > 20x its tolerance.
    for name, vals in alt.items():
        assert abs(float(np.mean(vals)) - expected) > 2e-3 * expected, name


def test_td_targets_mask_terminals():
    y = td_targets(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), jnp.array([[10.0, 10.0]]), 0.5)
    np.testing.assert_allclose(y, [[6.0, 2.0]])


def test_erdpqe_polyak_target(erdpqe_step):
    state, _, new, _ = erdpqe_step
    expected = jax.tree.map(lambda t, c: 0.005 * c + 0.995 * t, state.target_critic, new.critic)
    for got, want in zip(
        jax.tree.leaves(new.target_critic), jax.tree.leaves(expected), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # The critic did move, so the check is not vacuous.
    moved = new.critic.weights[0] - state.critic.weights[0]
    assert float(jnp.max(jnp.abs(moved))) > 1e-5


def test_erdpqe_grad_norm_clipping(erdpqe_step):
    _, _, new, metrics = erdpqe_step
    # Both raw gradients exceed the clip, so Adam's first moment after one step must be
    # (1 - b1) * (clipped gradient), of norm exactly 0.1 * GN (without clipping: 0.1 * raw).
    for which, opt_state in (("critic", new.critic_opt_state), ("actor", new.actor_opt_state)):
        raw = float(metrics[f"{which}_grad_norm"])
        assert raw > 2 * GN, which
        mu = optax.tree_utils.tree_get(opt_state, "mu")
        np.testing.assert_allclose(float(optax.tree.norm(mu)), 0.1 * GN, rtol=1e-4)


def test_erdpqe_metrics_finite(erdpqe_step):
    _, _, new, metrics = erdpqe_step
    keys = {"critic_loss", "actor_loss", "bc_loss", "q_loss", "entropy", "q_mean"}
    assert keys <= set(metrics)
    assert all(bool(jnp.isfinite(v)) and v.shape == () for v in metrics.values())
    assert int(new.step) == 1


def test_erdpqe_ema_schedule(erdpqe_start, make_batch):
    """ema_every=2, ema_start=4: the initial actor until step 4, then decay at 4 and 6 only."""
    state = erdpqe_start
    first = lambda s: s.denoiser.hidden_layers[0].weight
    for step in range(7):
        new, _ = erdpqe_update(AGENT, state, make_batch(10 + step))
        before, after, actor = first(state.ema_actor), first(new.ema_actor), first(new.actor)
        if step % 2:
            np.testing.assert_array_equal(after, before)
            assert not np.allclose(after, actor)
        elif step < 4:
            np.testing.assert_array_equal(after, first(erdpqe_start.ema_actor))
            assert not np.allclose(after, actor)
        else:
            np.testing.assert_allclose(after, 0.995 * before + 0.005 * actor, rtol=1e-6, atol=1e-8)
            assert not np.allclose(after, actor)
        state = new


def test_ema_and_polyak_rules():
    a, b = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 6.0])}
    # The Polyak target is optax's incremental update: tau * online + (1 - tau) * target.
    np.testing.assert_allclose(optax.incremental_update(b, a, 0.25)["w"], [1.5, 3.0])
    rule = lambda step: ema_update(a, b, jnp.asarray(step), 0.9, start=10, every=5)["w"]
    np.testing.assert_array_equal(rule(5), [1.0, 2.0])  # due, before start: unchanged
    np.testing.assert_array_equal(rule(7), [1.0, 2.0])  # not due
    np.testing.assert_allclose(rule(10), [1.2, 2.4], rtol=1e-6)  # due after start: decay


@pytest.fixture(scope="module")
def dql_step(make_batch):
    state = DQL.init(OBS, ACT, LOW, HIGH, jax.random.key(4))
    state = scaled_target(state, jax.random.key(5))
    batch = make_batch(6)
    new, metrics = dql_update(DQL, state, batch)
    return state, batch, new, metrics


def test_diffusion_ql_clipped_double_q_target(dql_step):
    state, batch, _, metrics = dql_step
    assert state.critic.num_members == 2
    assert state.actor.x0_clip
    _, k_next, _ = jax.random.split(state.key, 3)
    n = DQL_CFG.max_q_samples
    rep = jnp.repeat(batch.next_observations, n, axis=0)
    next_q = state.target_critic(rep, _sample(state.ema_actor, rep, k_next))
    next_q = next_q.reshape(2, BATCH, n).max(axis=2)  # max-Q backup per critic, then the min
    q = state.critic(batch.observations, batch.actions)
    not_done = 1.0 - batch.terminals
    y = batch.rewards + 0.99 * not_done * jnp.min(next_q, axis=0)
    expected = float(jnp.sum(jnp.mean((q - y) ** 2, axis=1)))
    np.testing.assert_allclose(float(metrics["critic_loss"]), expected, rtol=1e-4)
    per_member = batch.rewards + 0.99 * not_done * next_q
    wrong = float(jnp.sum(jnp.mean((q - per_member) ** 2, axis=1)))
    assert abs(wrong - expected) > 2e-3 * expected  # 20x the tolerance above


def test_diffusion_ql_q_term_flows_through_the_full_chain(dql_step):
    """The Q term alone gives the denoiser's first layers nonzero gradients, and they are the
    true derivative of -mean Q_j(s, a^0(phi)) / mean|Q_k| through the whole sampled chain
    (checked by central differences along a random direction)."""
    state, batch, _, _ = dql_step
    key = jax.random.key(7)
    denoiser = state.actor.denoiser

    def q_term(d):
        actor = eqx.tree_at(lambda p: p.denoiser, state.actor, d)
        return DQL.actor_loss(actor, state.critic, batch, key)[1]["q_loss"]

    value, grads = jit(lambda d: eqx.filter_value_and_grad(q_term)(d))(denoiser)
    for w in (grads.hidden_layers[0].weight, grads.time_layers[0].weight):
        assert float(jnp.linalg.norm(w)) > 1e-6

    # The actor loss draws (k_bc, k_chain, k_coin) = split(key, 3); rebuild its chain sample.
    _, k_chain, k_coin = jax.random.split(key, 3)
    j = 0 if bool(jax.random.bernoulli(k_coin)) else 1
    direction = jax.random.normal(jax.random.key(8), grads.hidden_layers[0].weight.shape)

    def values(eps):
        w = denoiser.hidden_layers[0].weight + eps * direction
        actor = eqx.tree_at(lambda p: p.denoiser.hidden_layers[0].weight, state.actor, w)
        return state.critic(batch.observations, actor.sample(batch.observations, k_chain))

    values = jit(values)
    q0 = values(jnp.float32(0.0))
    np.testing.assert_allclose(
        float(value), -jnp.mean(q0[j]) / jnp.mean(jnp.abs(q0[1 - j])), rtol=1e-4
    )
    eps = 1e-3
    diff = jnp.mean(values(jnp.float32(eps))[j]) - jnp.mean(values(jnp.float32(-eps))[j])
    numeric = -float(diff) / (2 * eps) / float(jnp.mean(jnp.abs(q0[1 - j])))
    analytic = float(jnp.sum(grads.hidden_layers[0].weight * direction))
    np.testing.assert_allclose(analytic, numeric, rtol=5e-2)


class _PreferLargeScore(eqx.Module):
    """Three members with a constant spread: LCB and min both rank candidates by 1e4 * score."""

    def __call__(self, states, actions):
        q = 1e4 * _score(actions)
        return jnp.stack([q - 1.0, q, q + 1.0])


def _score(actions):
    return actions[..., 0] + 0.37 * actions[..., 1]


@pytest.mark.parametrize("aggregate", ["lcb", "min"])
def test_selection_picks_the_dominant_candidate(aggregate):
    policy = DiffusionPolicy.create(
        OBS, ACT, LOW, HIGH, key=jax.random.key(9), x0_clip=True, hidden=HIDDEN
    )
    n, c = 12, 8  # 96 sampler rows, like the other tests: one compilation of the sampler
    states = jax.random.normal(jax.random.key(10), (n, OBS))
    key = jax.random.key(11)
    pick = jit(lambda *a: select_actions(*a, num_candidates=c, aggregate=aggregate))
    actions = pick(policy, _PreferLargeScore(), states, key)
    assert actions.shape == (n, ACT)
    k_candidates, _ = jax.random.split(key)
    candidates = _sample(policy, jnp.repeat(states, c, axis=0), k_candidates).reshape(n, c, ACT)
    scores = _score(candidates)
    # Each pick is one of its own state's candidates, and one with the best score.
    member = jnp.any(jnp.all(jnp.abs(candidates - actions[:, None]) < 1e-5, axis=-1), axis=1)
    assert bool(jnp.all(member))
    np.testing.assert_allclose(_score(actions), scores.max(axis=1), rtol=1e-5, atol=1e-6)
    # Candidates of a state differ, so picking the best one is not automatic.
    assert float(jnp.min(jnp.ptp(scores, axis=1))) > 1e-2


def test_erdpqe_act_shape_and_box(erdpqe_start):
    obs = jax.random.normal(jax.random.key(12), (5, OBS))
    actions = jit(ERDPQE.act)(AGENT, erdpqe_start, obs, jax.random.key(14))
    assert actions.shape == (5, ACT)
    assert bool(jnp.all((actions >= LOW - 1e-6) & (actions <= HIGH + 1e-6)))


def test_bc_update_is_the_diffusion_loss_alone(make_batch):
    agent = BC(BCConfig(hidden=HIDDEN, batch_size=BATCH, loss="mll"))
    state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(15))
    batch = make_batch(16)
    new, metrics = jit(BC.update)(agent, state, batch)
    _, k_loss = jax.random.split(state.key)
    loss = jit(lambda p, s, a, k: p.loss(s, a, k, kind="mll")[0])
    expected = loss(state.actor, batch.observations, batch.actions, k_loss)
    np.testing.assert_allclose(float(metrics["bc_loss"]), float(expected), rtol=1e-5)
    assert int(new.step) == 1
    # Step 0 is before ema_start: the EMA actor is still the initial actor.
    w = lambda p: p.denoiser.hidden_layers[0].weight
    np.testing.assert_array_equal(w(new.ema_actor), w(state.actor))
    assert not np.allclose(w(new.actor), w(state.actor))
    # One step on the diffusion loss lowers it on the same batch and noise.
    assert float(loss(new.actor, batch.observations, batch.actions, k_loss)) < float(expected)
