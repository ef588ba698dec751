"""The evaluation softmax whose temperature is the critics' disagreement about the candidates
(`select_actions(temperature_scale="disagreement")`, `candidate_disagreement`; docs/method.md
§6.5).

Checked against numbers the rule does not produce: a two-member closed form, per-member offsets
that must not count, critics whose best candidate is known, and the frequencies of a near-uniform
draw.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_helpers import jit
from hypothesis import given, settings
from hypothesis import strategies as st

from sdepolicy.app import apply_overrides
from sdepolicy.policy import DiffusionPolicy
from sdepolicy.rl import AGENTS, CONFIGS, ConfigError, candidate_disagreement, select_actions
from sdepolicy.rl.agents import ERDPQEConfig

OBS, ACT = 3, 2
LOW, HIGH = np.array([-2.0, -1.0]), np.array([2.0, 1.0])
SETTINGS = settings(max_examples=25, deadline=None)


@pytest.mark.usefixtures("maths_precision")
@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    members=st.integers(2, 6),
    candidates=st.integers(2, 9),
    scale=st.floats(0.01, 100.0),
)
def test_disagreement_ignores_what_a_member_gives_all_candidates_alike(
    seed, members, candidates, scale
):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(members, 4, candidates))
    offsets = scale * rng.normal(size=(members, 4, 1))  # each member's value of each state
    base = np.asarray(candidate_disagreement(jnp.asarray(q, jnp.float64)))
    shifted = np.asarray(candidate_disagreement(jnp.asarray(q + offsets, jnp.float64)))
    np.testing.assert_allclose(shifted, base, rtol=1e-9, atol=1e-9 * scale)
    # Homogeneous of degree 1 in the scores, and zero where every member ranks alike.
    np.testing.assert_allclose(
        np.asarray(candidate_disagreement(jnp.asarray(scale * q, jnp.float64))), scale * base,
        rtol=1e-9,
    )  # fmt: skip
    same = np.broadcast_to(q[:1], q.shape) + offsets
    np.testing.assert_allclose(
        np.asarray(candidate_disagreement(jnp.asarray(same, jnp.float64))), 0.0, atol=1e-9 * scale
    )


@pytest.mark.usefixtures("maths_precision")
def test_disagreement_of_two_opposite_members_is_the_closed_form():
    # Member 2 scores -x where member 1 scores x: d = ±(x - mean x), whose std over the two
    # members (ddof 1) is sqrt(2) |x - mean x|.
    x = np.array([[0.0, 1.0, 3.0, 8.0], [2.0, 2.0, -2.0, -2.0]])
    q = jnp.asarray(np.stack([x, -x]), jnp.float64)
    want = np.sqrt(2.0) * np.abs(x - x.mean(-1, keepdims=True)).mean(-1)
    np.testing.assert_allclose(np.asarray(candidate_disagreement(q)), want, rtol=1e-12)


def test_disagreement_needs_two_members():
    with pytest.raises(ValueError, match="2 members"):
        candidate_disagreement(jnp.zeros((1, 3, 4)))
    with pytest.raises(ConfigError, match="num_critics"):
        apply_overrides(
            ERDPQEConfig(),
            {"num_critics": 1, "q_aggregate": "min", "eval_temperature_scale": "disagreement"},
        )


class _Critic:
    """Members that score `weight * (a0 - 0.5 a1)` plus a member's own noise of size `spread`
    on each candidate, and a large per-member offset (which the rule must ignore)."""

    def __init__(self, weight, spread, members=4):
        self.weight, self.spread, self.members = weight, spread, members

    def __call__(self, states, actions):
        q = self.weight * (actions[..., 0] - 0.5 * actions[..., 1])
        noise = jax.random.normal(jax.random.key(11), (self.members, q.shape[0]))
        offset = 100.0 * jnp.arange(self.members, dtype=q.dtype)[:, None]
        return q[None] + self.spread * noise + offset


def _setup(n=64, c=8):
    policy = DiffusionPolicy.create(OBS, ACT, LOW, HIGH, key=jax.random.key(4), hidden=8)
    states = jax.random.normal(jax.random.key(5), (n, OBS))
    key = jax.random.key(6)
    k_candidates, _ = jax.random.split(key)
    candidates = policy.sample(jnp.repeat(states, c, axis=0), k_candidates).reshape(n, c, ACT)
    return policy, states, key, candidates


def _pick(policy, critic, states, key, c, temperature, scale="disagreement"):
    f = jit(
        lambda p, s, k: select_actions(
            p, critic, s, k, num_candidates=c, aggregate="lcb",
            lcb_beta=0.0, temperature=temperature, temperature_scale=scale,
        )
    )  # fmt: skip
    return f(policy, states, key)


def test_members_that_agree_exactly_give_the_best_candidate():
    n, c = 64, 8
    policy, states, key, candidates = _setup(n, c)
    score = lambda a: a[..., 0] - 0.5 * a[..., 1]
    # Tiny Q differences: an absolute temperature of 1 would draw nearly uniformly.
    pick = _pick(policy, _Critic(1e-3, 0.0), states, key, c, temperature=1.0)
    np.testing.assert_allclose(score(pick), score(candidates).max(1), rtol=1e-5, atol=1e-8)


def test_critics_that_disagree_more_than_the_candidates_differ_draw_nearly_uniformly():
    n, c = 512, 8
    policy, states, key, candidates = _setup(n, c)
    score = lambda a: a[..., 0] - 0.5 * a[..., 1]
    # Candidates differ by ~1e-3 in Q, members disagree by ~1: one policy sample in effect.
    pick = _pick(policy, _Critic(1e-3, 1.0), states, key, c, temperature=1.0)
    # Where the pick sits between the state's mean candidate (0) and its best one (1): a
    # uniform draw is 0 on average, the best candidate 1.
    s = score(candidates)
    gain = lambda p: float(
        jnp.mean((score(p) - s.mean(1)) / jnp.maximum(s.max(1) - s.mean(1), 1e-9))
    )
    assert abs(gain(pick)) < 0.1, gain(pick)
    # Where the candidates differ by more than the members disagree, it is near the best.
    pick = _pick(policy, _Critic(10.0, 1e-3), states, key, c, temperature=1.0)
    assert float(jnp.mean(score(pick) >= score(candidates).max(1) - 1e-6)) > 0.95
    assert gain(pick) > 0.95


def test_the_draw_does_not_depend_on_the_units_of_the_rewards():
    # Scaling every score by 8 (exact in binary) scales the disagreement alike: the same draws,
    # where an absolute temperature would change them.
    n, c = 64, 8
    policy, states, key, _ = _setup(n, c)
    a = _pick(policy, _Critic(0.3, 0.2), states, key, c, temperature=1.0)
    b = _pick(policy, _Scaled(_Critic(0.3, 0.2), 8.0), states, key, c, temperature=1.0)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    a = _pick(policy, _Critic(0.3, 0.2), states, key, c, temperature=1.0, scale="absolute")
    b = _pick(
        policy, _Scaled(_Critic(0.3, 0.2), 8.0), states, key, c, temperature=1.0,
        scale="absolute",
    )  # fmt: skip
    assert not np.array_equal(np.asarray(a), np.asarray(b))


class _Scaled:
    def __init__(self, critic, k):
        self.critic, self.k = critic, k

    def __call__(self, states, actions):
        return self.k * self.critic(states, actions)


@pytest.mark.parametrize("algo", ["erdpqe", "diffusion-ql"])
def test_eval_actor_says_which_actor_proposes(algo):
    n = 5
    # (NML with x0 clipping: MLL's untrained samples sit on the box's corners, alike for both.)
    extra = dict(num_critics=2, loss="nml", x0_clip=True) if algo == "erdpqe" else {}
    config = CONFIGS[algo](hidden=8, **extra)
    state = AGENTS[algo](config).init(OBS, ACT, LOW, HIGH, jax.random.key(0))
    # A different EMA actor: the online one with every weight of its denoiser negated.
    negate = lambda net: jax.tree_util.tree_map(lambda x: -x if eqx.is_inexact_array(x) else x, net)
    ema = eqx.tree_at(lambda a: a.denoiser, state.actor, negate(state.actor.denoiser))
    state = eqx.tree_at(lambda s: s.ema_actor, state, ema)
    states = jax.random.normal(jax.random.key(1), (n, OBS))
    key = jax.random.key(2)
    k_candidates, _ = jax.random.split(key)
    for which, actor in (("online", state.actor), ("ema", ema)):
        cfg = dataclasses.replace(config, eval_candidates=1, eval_temperature=0.0, eval_actor=which)
        got = AGENTS[algo](cfg).act(state, states, key)
        np.testing.assert_allclose(got, actor.sample(states, k_candidates), rtol=1e-6)
    online, negated = state.actor.sample(states, k_candidates), ema.sample(states, k_candidates)
    assert not np.allclose(online, negated)


def test_only_the_projects_defaults_use_the_rule():
    # The D4RL presets stay the papers' (online actor, absolute temperature 1); the embedded
    # task's defaults (also those of every --dataset run) use the rule for both actor-critics.
    from sdepolicy.app import get_preset, list_presets

    for name in list_presets():
        for algo in ("erdpqe", "diffusion-ql"):
            config = get_preset(name).config(algo)
            got = (config.eval_temperature, config.eval_temperature_scale, config.eval_actor)
            want = (
                (1.0, "disagreement", "ema")
                if name == "pendulum-mixed"
                else (1.0, "absolute", "online")
            )
            assert got == want, (name, algo, got)
