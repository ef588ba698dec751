"""The options behind the project's own defaults (docs/method.md §8.6): the actor's Q term
weighted per diffusion step, the evaluation's softmax temperature and separate actor/critic
widths; and the experimental options that were measured and not adopted
(`sdepolicy.rl.experimental`: one pessimistic TD target shared by all critics, the Q term over
the critics' disagreement, EDAC's diversity term, a CQL-style penalty), which stay tested.

Each option is checked against numbers it did not produce: the cosine grid's table
(docs/method.md §2), a target recomputed member by member outside the update, a critic whose
best candidate is known.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_helpers import jit, member_net

from sdepolicy.app import apply_overrides
from sdepolicy.policy import DiffusionPolicy
from sdepolicy.rl import ConfigError, action_gradient_similarity, make_agent, select_actions
from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig
from sdepolicy.rl.agents._erdpqe import q_step_weights
from sdepolicy.rl.experimental import (
    ERDPQEExperimental,
    ERDPQEExperimentalConfig,
    policy_data_gap,
)

OBS, ACT, HIDDEN, CRITIC_HIDDEN, BATCH, M = 3, 2, 24, 16, 16, 3
LOW, HIGH = np.array([-2.0, -1.0]), np.array([2.0, 1.0])
# The cosine grid at T = 5 (docs/method.md §2): Θ_t and v_t.
TABLE_CUM = np.array([0.19749, 0.90145, 2.28727, 4.35043, 6.90776])
TABLE_VAR = np.array([0.32630, 0.83518, 0.98969, 0.99983, 0.999999])


def test_x0_gain_inverse_weights_are_the_inverse_of_dx0_deps_on_the_cosine_grid():
    policy = DiffusionPolicy.create(OBS, ACT, LOW, HIGH, key=jax.random.key(0), hidden=8)
    steps = jnp.arange(5)
    weights = np.asarray(q_step_weights(policy, steps, "x0_gain_inverse"))
    np.testing.assert_allclose(weights, np.exp(-TABLE_CUM) / np.sqrt(TABLE_VAR), rtol=2e-4)
    # |d x0_hat / d eps_hat| read off the policy's own x0 map by autodiff, at every step.
    x_t = jnp.array([0.3, -0.2])
    for t in range(1, 6):
        jac = jax.jacobian(lambda e, t=t: policy.sde.x0_from_noise(x_t, e, t=jnp.float32(t)))(
            jnp.zeros(ACT)
        )
        np.testing.assert_allclose(np.abs(np.diag(jac)) * weights[t - 1], 1.0, rtol=1e-4)
    assert np.all(np.asarray(q_step_weights(policy, steps, "uniform")) == 1.0)


def _member(ensemble, m):
    return member_net(ensemble, m, OBS + ACT, CRITIC_HIDDEN)


@pytest.mark.parametrize("target", ["lcb"])
def test_shared_pessimistic_target_and_critic_width(target, make_transitions):
    config = ERDPQEExperimentalConfig(
        num_critics=M,
        hidden=HIDDEN,
        critic_hidden=CRITIC_HIDDEN,
        batch_size=BATCH,
        x0_clip=True,
        loss="nml",
        target_aggregate=target,
        q_weighting="x0_gain_inverse",
        lcb_beta=2.0,
    )
    agent = ERDPQEExperimental(config)
    state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(1))
    # The critics are CRITIC_HIDDEN wide, the actor HIDDEN.
    assert [w.shape[1] for w in state.critic.weights[:-1]] == [CRITIC_HIDDEN] * 3
    assert state.actor.denoiser.hidden_layers[0].weight.shape[0] == HIDDEN
    # Spread the target members apart so that the aggregation rule matters.
    w = state.target_critic.weights[-1]
    spread = 3.0 * jax.random.normal(jax.random.key(2), w.shape) / np.sqrt(CRITIC_HIDDEN)
    state = eqx.tree_at(lambda s: s.target_critic.weights[-1], state, spread)
    batch = make_transitions(3, BATCH, OBS, ACT, low=LOW, high=HIGH, terminal_every=3)
    _, metrics = jit(ERDPQE.update)(agent, state, batch)

    _, k_next, _ = jax.random.split(state.key, 3)
    next_a = jit(lambda p, s, k: p.sample(s, k))(state.ema_actor, batch.next_observations, k_next)
    nxt = batch.next_observations
    nq = jnp.stack([_member(state.target_critic, m)(nxt, next_a) for m in range(M)])
    shared = nq.min(0) if target == "min" else nq.mean(0) - 2.0 * nq.std(0, ddof=1)
    y = batch.rewards + 0.99 * (1 - batch.terminals) * shared
    per_member_y = batch.rewards + 0.99 * (1 - batch.terminals) * nq
    q = jnp.stack([_member(state.critic, m)(batch.observations, batch.actions) for m in range(M)])
    expected = float(jnp.mean((q - y[None]) ** 2))
    np.testing.assert_allclose(float(metrics["critic_loss"]), expected, rtol=1e-4)
    # The reference's per-member target would give another loss (the check discriminates).
    other = float(jnp.mean((q - per_member_y) ** 2))
    assert abs(other - expected) > 1e-2 * expected


class _SmallSpread(eqx.Module):
    """Members that agree; candidates differ by O(1e-2) in Q, as on standardised rewards."""

    def __call__(self, states, actions):
        q = 1e-2 * (actions[..., 0] - 0.5 * actions[..., 1])
        return jnp.stack([q, q, q])


def test_eval_temperature_zero_picks_the_best_candidate():
    policy = DiffusionPolicy.create(
        OBS, ACT, LOW, HIGH, key=jax.random.key(4), x0_clip=True, hidden=8
    )
    n, c = 16, 8
    states = jax.random.normal(jax.random.key(5), (n, OBS))
    key = jax.random.key(6)
    k_candidates, _ = jax.random.split(key)
    candidates = policy.sample(jnp.repeat(states, c, axis=0), k_candidates).reshape(n, c, ACT)
    score = lambda a: a[..., 0] - 0.5 * a[..., 1]
    best = score(candidates).max(axis=1)
    picks = {}
    for tau in (0.0, 1.0):
        pick = jit(lambda *a, tau=tau: select_actions(*a, num_candidates=c, temperature=tau))
        picks[tau] = pick(policy, _SmallSpread(), states, key)
    np.testing.assert_allclose(score(picks[0.0]), best, rtol=1e-6, atol=1e-7)
    # With temperature 1 such small Q differences give a nearly uniform draw.
    assert int(jnp.sum(score(picks[1.0]) < best - 1e-6)) >= n // 2


def test_option_values_are_checked():
    # Through `apply_overrides`, the path of every preset and `--set` value: the `Literal`
    # fields' choices and the numeric ranges are refused as a ConfigError. (Built directly
    # under the tests' runtime type checker, a wrong `Literal` is a TypeError first.)
    for bad in ({"target_aggregate": "max"}, {"q_weighting": "snr"}, {"eval_temperature": -1.0},
                {"critic_hidden": 0}, {"critic_diversity": -1.0},
                {"q_scale": "max"}, {"critic_conservatism": -1.0}):  # fmt: skip
        with pytest.raises(ConfigError):
            apply_overrides(ERDPQEConfig(), bad)
    with pytest.raises(ConfigError, match="q_scale=disagreement needs num_critics >= 2"):
        ERDPQEExperimentalConfig(num_critics=1, q_aggregate="min", q_scale="disagreement")


def test_critic_diversity_is_logged_and_spreads_the_members_action_gradients(make_transitions):
    """With `critic_diversity` the update logs EDAC's measure of the critics it starts from
    (recomputed here outside the update) and, over updates on one batch, drives the members'
    action gradients from partly aligned (about 1 at this init, of at most M = 4) to nearly
    opposite directions (the floor is -M/(M-1); without the term, 0.47 after these updates).
    With 1-d actions the term has no gradient at all (tests/rl/test_critics.py), so it cannot
    change a Pendulum run."""
    batch = make_transitions(7, BATCH, OBS, ACT, low=LOW, high=HIGH)
    config = ERDPQEExperimentalConfig(
        num_critics=4, hidden=HIDDEN, critic_hidden=CRITIC_HIDDEN, batch_size=BATCH,
        critic_diversity=1.0,
    )  # fmt: skip
    agent = ERDPQEExperimental(config)
    state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(8))
    similarity = lambda critic: float(
        action_gradient_similarity(critic, batch.observations, batch.actions)
    )
    before = similarity(state.critic)
    update = jit(ERDPQE.update)
    state, metrics = update(agent, state, batch)
    np.testing.assert_allclose(float(metrics["critic_grad_similarity"]), before, rtol=1e-4)
    for _ in range(60):
        state, _ = update(agent, state, batch)
    assert before > 0.5 and similarity(state.critic) < -4 / 3 + 0.15, before


class _Shifted(eqx.Module):
    """A critic whose every member is offset by `shift`, as a constant added to every reward
    offsets Q by shift = c / (1 - gamma)."""

    critic: eqx.Module
    shift: float

    def __call__(self, states, actions):
        return self.critic(states, actions) + self.shift


@pytest.mark.parametrize("q_scale", ["absolute", "disagreement"])
def test_q_scale_disagreement_makes_the_actor_blind_to_a_reward_offset(q_scale, make_transitions):
    """With `q_scale="disagreement"` the actor's gradient is the same whatever constant the
    rewards are shifted by; with the reference's mean |Q| it is not (the check discriminates).
    The logged scale is the members' std at each sample, averaged: recomputed here."""
    batch = make_transitions(9, BATCH, OBS, ACT, low=LOW, high=HIGH)
    agent = ERDPQEExperimental(ERDPQEExperimentalConfig(
        num_critics=M, hidden=HIDDEN, critic_hidden=CRITIC_HIDDEN, batch_size=BATCH, x0_clip=True,
        loss="nml", q_scale=q_scale,
    ))  # fmt: skip
    state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(10))
    key = jax.random.key(11)

    @jit
    def grads(actor, shift):
        loss = lambda a: agent.actor_loss(a, _Shifted(state.critic, shift), batch, key)
        return jax.grad(lambda a: loss(a)[0])(actor), loss(actor)[1]

    flat = lambda tree: jnp.concatenate(
        [x.ravel() for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    )
    g0, diag0 = grads(state.actor, 0.0)
    g1, _ = grads(state.actor, 3.0)
    change = float(jnp.linalg.norm(flat(g1) - flat(g0)) / jnp.linalg.norm(flat(g0)))
    if q_scale == "disagreement":
        assert change < 1e-4, change
        # The members' std at the actor's (clipped) predictions, from each member as a plain MLP.
        k_bc, _ = jax.random.split(key)
        pred = state.actor.loss_and_prediction(batch.observations, batch.actions, k_bc, "nml")
        q = jnp.stack([_member(state.critic, m)(batch.observations, pred.action) for m in range(M)])
        expected = float(jnp.mean(jnp.std(q, axis=0, ddof=1)))
        np.testing.assert_allclose(float(diag0["q_term_scale"]), expected, rtol=1e-4)
    else:
        assert change > 1e-2, change


def test_policy_data_gap_against_hand_numbers():
    """`policy_data_gap` is the mean of d = Q(s, a_pi) - Q(s, a) over members and batch, and
    the mean of max(d, 0): on members Q_m(s, a) = m * sum(a) they are known in closed form."""

    class Linear(eqx.Module):
        def __call__(self, states, actions):
            return jnp.stack([m * actions.sum(-1) for m in (1.0, 2.0, 3.0)])

    obs = jnp.zeros((2, OBS))
    data = jnp.array([[0.0, 0.0], [0.5, 0.5]])
    policy = jnp.array([[0.5, 0.0], [0.0, 0.0]])  # d per member: +0.5 m, then -1.0 m
    gap, excess = policy_data_gap(Linear(), obs, data, policy)
    expected_gap = np.mean([(0.5 * m - m) / 2 for m in (1, 2, 3)])
    np.testing.assert_allclose(float(gap), expected_gap, rtol=1e-6)
    np.testing.assert_allclose(float(excess), np.mean([0.5 * m for m in (1, 2, 3)]) / 2, rtol=1e-6)


def test_critic_conservatism_logs_the_gap_and_lowers_the_critics_at_the_actors_actions(
    make_transitions,
):
    """`critic_conservatism` logs $\\operatorname{mean}[Q_m(s, a^\\pi) - Q_m(s, a)]$ at the
    critics the update starts from (recomputed here, member by member as plain MLPs, from the
    actor's samples with the key the update documents), and over updates on one batch it
    lowers how far the critics rate fresh samples of the actor above the data's actions, the
    mean of max(d, 0) that it penalises, to well under what it is without the term (same
    seeds, same batch)."""
    batch = make_transitions(5, BATCH, OBS, ACT, low=LOW, high=HIGH)
    sample = jit(lambda p, s, k: p.sample(s, k))

    def run(weight):
        config = ERDPQEExperimentalConfig(
            num_critics=M, hidden=HIDDEN, critic_hidden=CRITIC_HIDDEN, batch_size=BATCH,
            critic_conservatism=weight, critic_lr=3e-3,
        )  # fmt: skip
        agent = ERDPQEExperimental(config)
        state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(6))
        update = jit(ERDPQE.update)
        first, metrics = update(agent, state, batch)
        if weight:
            _, k_next, _ = jax.random.split(state.key, 3)
            a_pi = sample(state.actor, batch.observations, jax.random.fold_in(k_next, 1))
            obs = batch.observations
            gap = np.mean([
                _member(state.critic, m)(obs, a_pi) - _member(state.critic, m)(obs, batch.actions)
                for m in range(M)
            ])  # fmt: skip
            np.testing.assert_allclose(float(metrics["critic_policy_gap"]), gap, atol=1e-5)
        else:
            assert "critic_policy_gap" not in metrics
        state = first
        for _ in range(80):
            state, _ = update(agent, state, batch)
        fresh = sample(state.actor, batch.observations, jax.random.key(11))
        return float(policy_data_gap(state.critic, batch.observations, batch.actions, fresh)[1])

    without, with_term = run(0.0), run(1.0)
    assert with_term < 0.3 * without, (without, with_term)


def test_experimental_options_at_their_defaults_leave_er_dp_qe_unchanged(make_transitions):
    """`ERDPQEExperimental(ERDPQEExperimentalConfig())` is ER-DP-QE to the last bit: the same
    state after updates (every option at the reference's value takes no other code path)."""
    batch = make_transitions(12, BATCH, OBS, ACT, low=LOW, high=HIGH)
    sizes = dict(num_critics=M, hidden=HIDDEN, critic_hidden=CRITIC_HIDDEN, batch_size=BATCH,
                 ema_start=1, ema_every=1)  # fmt: skip
    states = []
    for agent in (
        ERDPQE(ERDPQEConfig(**sizes)),
        ERDPQEExperimental(ERDPQEExperimentalConfig(**sizes)),
    ):
        state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(13))
        update = jit(type(agent).update)
        for _ in range(3):
            state, metrics = update(agent, state, batch)
        states.append((state, metrics))
    (a, ma), (b, mb) = states
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert ma.keys() == mb.keys()


def test_an_experimental_option_selects_the_experimental_agent():
    """Naming an experimental option in an override (a preset's or `--set`'s) makes the config
    the experimental one, keeping every other value; `make_agent` then builds its agent, and
    ER-DP-QE itself refuses that config rather than ignore its options."""
    base = ERDPQEConfig(num_critics=7, eta=0.1)
    config = apply_overrides(base, {"critic_conservatism": "1", "alpha": "0"})
    assert type(config) is ERDPQEExperimentalConfig
    assert (config.num_critics, config.eta, config.alpha) == (7, 0.1, 0.0)
    assert config.critic_conservatism == 1.0
    assert type(make_agent(config)) is ERDPQEExperimental
    assert type(make_agent(base)) is ERDPQE
    assert type(apply_overrides(base, {"alpha": "0"})) is ERDPQEConfig
    with pytest.raises(TypeError, match="ERDPQEExperimental"):
        ERDPQE(config)
    # The old spelling of the reference's normaliser is refused with the new one.
    with pytest.raises(ConfigError, match="q_scale='abs' is now q_scale='absolute'"):
        apply_overrides(base, {"q_scale": "abs"})


@pytest.mark.parametrize("algo", ["erdpqe", "diffusion-ql"])
def test_critic_layer_norm_builds_normalised_autodiff_critics_that_train(algo, make_transitions):
    """`critic_layer_norm` gives both actor-critic agents LayerNorm critics (differentiated by
    autodiff, whatever `critic_backward` asks), whose scales move in an update; off, the
    critics have no norm parameters."""
    from sdepolicy.rl import AutodiffBackward

    base = apply_overrides(
        make_agent_config(algo), {"hidden": HIDDEN, "critic_hidden": CRITIC_HIDDEN}
    )
    agent = make_agent(apply_overrides(base, {"critic_layer_norm": True}))
    state = agent.init(OBS, ACT, LOW, HIGH, jax.random.key(3), critic_backward="fused")
    assert isinstance(state.critic.backward, AutodiffBackward)
    assert [s.shape[-1] for s in state.critic.norm_scales] == [CRITIC_HIDDEN] * 3
    batch = make_transitions(4, BATCH, OBS, ACT, low=LOW, high=HIGH)
    new, metrics = jit(type(agent).update)(agent, state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(new.critic.norm_scales, state.critic.norm_scales, strict=True)]  # fmt: skip
    assert min(moved) > 0
    plain = make_agent(base).init(OBS, ACT, LOW, HIGH, jax.random.key(3))
    assert plain.critic.norm_scales == () and plain.critic.norm_offsets == ()


def make_agent_config(algo):
    from sdepolicy.rl.agents import DiffusionQLConfig

    return {"erdpqe": ERDPQEConfig, "diffusion-ql": DiffusionQLConfig}[algo](batch_size=BATCH)
