"""Smoke tests of the toy-task scripts (`examples/toy_bandit.py`, `examples/toy_two_step.py`):
their datasets, the two-step toy's brute-force optimal Q, and very short runs end to end.

Learning outcomes need minutes of training and are reported in `docs/toys.md`, not asserted.
"""

import json
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import toy_bandit  # noqa: E402
import toy_two_step  # noqa: E402

# --- the bandit --------------------------------------------------------------------------------


def test_bandit_dataset_modes_and_rewards():
    data, labels = toy_bandit.make_dataset(seed=0)
    assert len(data) == 10_000 and data.obs_dim == 1 and data.action_dim == 2
    np.testing.assert_array_equal(np.bincount(labels), [2500] * 4)
    actions = np.asarray(data.actions)
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    # Std 0.05 around modes 1.6 apart: every action is nearest the mode that generated it.
    np.testing.assert_array_equal(toy_bandit.nearest_mode(actions), labels)
    np.testing.assert_allclose(toy_bandit.mode_fractions(actions), 0.25)
    rewards = np.asarray(data.rewards)
    for m, mu in enumerate(toy_bandit.MODE_MEANS):
        r = rewards[labels == m]
        # 2500 draws of N(mu, 0.5): standard error 0.01.
        assert abs(r.mean() - mu) < 0.05 and abs(r.std() - 0.5) < 0.05
        centred = actions[labels == m] - toy_bandit.MODES[m]
        assert np.all(np.abs(centred.std(axis=0) - 0.05) < 0.005)
    # One-step episodes: zero observations, every transition terminal.
    assert np.all(np.asarray(data.observations) == 0)
    assert np.all(np.asarray(data.next_observations) == 0)
    assert np.all(np.asarray(data.terminals) == 1)


def test_bandit_mode_statistics():
    a = np.array([[0.7, -0.9], [-0.1, -0.2], [-0.5, 0.6], [0.8, 0.8]])
    np.testing.assert_array_equal(toy_bandit.nearest_mode(a), [3, 1, 0, 2])
    np.testing.assert_allclose(toy_bandit.mode_fractions(a), [0.25] * 4)
    np.testing.assert_allclose(toy_bandit.true_reward(a), [5.0, 0.0, 3.0, 1.5])
    assert toy_bandit.on_mode_fraction(a) == 0.5  # (0.7, -0.9) is 0.14 away, (0.8, 0.8) 0


def test_bandit_short_run(tmp_path):
    """A few steps of training, then samples and statistics of the right shapes.

    BC only: compiling an actor-critic update takes most of this file's time, and ER-DP-QE's
    update, `act` and the seed-stacked training are exercised by `test_two_step_short_run`;
    the agents' configs are checked in `test_bandit_configs`."""
    algos = ("bc",)
    res = toy_bandit.run(
        steps=2,
        T=3,
        hidden=8,
        num_critics=3,
        num_eval=16,
        steps_per_call=2,
        algos=algos,
        quiet=True,
    )
    assert tuple(res["algos"]) == algos
    for r in res["algos"].values():
        for k in ("policy", "act"):
            assert r[f"{k}_samples"].shape == (16, 2)
            assert np.all(np.abs(r[f"{k}_samples"]) <= 1.0)
            assert r[f"{k}_mode_fractions"].shape == (4,)
            assert r[f"{k}_mode_fractions"].sum() == pytest.approx(1.0)
            assert 0.0 <= r[f"{k}_mean_reward"] <= 5.0
            assert 0.0 <= r[f"{k}_on_mode"] <= 1.0
        assert np.isfinite(r["final_metrics"]["actor_loss"])
    data, _ = toy_bandit.make_dataset(0)
    toy_bandit.plot(res, tmp_path / "b.png", np.asarray(data.actions))
    assert (tmp_path / "b.png").stat().st_size > 0


def test_bandit_configs():
    cfg = toy_bandit.make_configs(T=7, hidden=16, num_critics=5, eta=2.5)
    assert set(cfg) == set(toy_bandit.ALGOS)
    (_, bc), (_, dql), (_, er) = (cfg[a] for a in toy_bandit.ALGOS)
    for c in (bc, dql, er):
        assert (c.diffusion_steps, c.hidden, c.batch_size) == (7, 16, 100)
    assert (bc.schedule, bc.loss, bc.x0_clip) == ("vp", "nml", True)
    assert dql.eta == 2.5
    assert (er.schedule, er.loss, er.num_critics, er.lcb_beta, er.eta) == ("vp", "nml", 5, 4.0, 2.5)


# --- the two-step toy --------------------------------------------------------------------------


def test_two_step_dynamics_and_reward():
    np.testing.assert_allclose(
        toy_two_step.step(np.array([1.5, -1.5, 0.0]), np.array([1.0, -3.0, 0.2])), [2.0, -2.0, 0.2]
    )
    # Bump heights at their centres (the other bump's tail is negligible there).
    np.testing.assert_allclose(toy_two_step.reward(np.array([-1.0, 1.5])), [1.0, 3.0], atol=1e-6)
    # numpy and jax give the same reward.
    s = np.linspace(-2, 2, 9, dtype=np.float32)
    np.testing.assert_allclose(
        toy_two_step.reward(jnp.asarray(s)), toy_two_step.reward(s), rtol=1e-5
    )


def test_two_step_true_q_brute_force():
    g = toy_two_step.GAMMA
    a0 = np.array([-1.0, -0.5, 0.5, 0.75, 1.0])
    q = toy_two_step.true_q0(a0)
    # From a0 in [0.5, 1] the high bump's centre 1.5 is reachable: Q* = 3 gamma.
    np.testing.assert_allclose(q[2:], 3.0 * g, rtol=1e-6)
    # From a0 <= 0 the best is the small bump's centre -1 (the high bump is >= 2 widths away).
    np.testing.assert_allclose(q[:2], 1.0 * g, rtol=1e-4)
    # Against an independent dense evaluation (finer grid, direct formula) at random a0.
    rng = np.random.default_rng(0)
    a0 = rng.uniform(-1, 1, 50)
    a1 = np.linspace(-1, 1, 20001)
    s2 = np.clip(a0[:, None] + a1[None], -2, 2)
    dense = g * np.max(toy_two_step.reward(s2), axis=1)
    np.testing.assert_allclose(toy_two_step.true_q0(a0), dense, atol=1e-4)
    assert toy_two_step.optimal_return() == pytest.approx(3.0, abs=1e-6)


def test_two_step_dataset():
    data, info = toy_two_step.make_dataset(seed=0, episodes=2000, explore=0.05)
    assert len(data) == 4000 and data.obs_dim == 2 and data.action_dim == 1
    obs, nxt = np.asarray(data.observations), np.asarray(data.next_observations)
    first, second = slice(0, 2000), slice(2000, 4000)
    # First steps start at (0, 0) and are not terminal; second steps end the episode.
    np.testing.assert_array_equal(obs[first], 0.0)
    terminals = np.asarray(data.terminals)
    np.testing.assert_array_equal(terminals, np.r_[np.zeros(2000), np.ones(2000)])
    np.testing.assert_array_equal(np.asarray(data.rewards)[first], 0.0)
    # The next observation of step 1 is the observation of step 2 (same episode order).
    np.testing.assert_array_equal(nxt[first], obs[second])
    np.testing.assert_array_equal(obs[second][:, 1], 1.0)
    final = toy_two_step.reward(nxt[second][:, 0])
    np.testing.assert_allclose(np.asarray(data.rewards)[second], final, rtol=1e-5)
    # Unbalanced: about 5% explorer episodes; each behaviour's actions around its mean.
    explorer = info["explorer"]
    assert 0.03 < explorer.mean() < 0.07
    assert abs(info["a0"][~explorer].mean() - toy_two_step.CAUTIOUS_MEAN) < 0.02
    assert abs(info["a0"][explorer].mean() - toy_two_step.EXPLORER_MEAN) < 0.1
    # Few episodes reach the high bump, and most data ends in the low-reward region.
    high = info["reward"] > 1.5
    assert 0 < high.mean() < 0.05
    assert np.all(explorer[high])
    assert np.mean(info["s2"] < 0) > 0.9


def test_two_step_configs():
    cfg = toy_two_step.make_configs(hidden=16, num_critics=6, alpha=0.05)
    base, ent, lcb = (cfg[v] for v in toy_two_step.VARIANTS)
    assert (base.alpha, base.num_critics, base.q_aggregate) == (0.0, 2, "min")
    assert (ent.alpha, ent.num_critics, ent.q_aggregate) == (0.05, 2, "min")
    assert (lcb.alpha, lcb.num_critics, lcb.q_aggregate, lcb.lcb_beta) == (0.05, 6, "lcb", 4.0)
    # For two members the LCB with beta = 1/sqrt(2) is the min: `act` then scores by min(Q1, Q2).
    from sdepolicy.rl import aggregate_q

    q = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7)), jnp.float32)
    np.testing.assert_allclose(aggregate_q(q, "lcb", base.lcb_beta), jnp.min(q, axis=0), atol=1e-6)


def test_two_step_short_run(tmp_path):
    """The full variant, two seeds at once, two steps: shapes and a JSON-able result. (The other
    variants differ only in their configs, checked in `test_two_step_configs`; compiling each
    costs as much again.)"""
    res = toy_two_step.run(
        variants=("+ entropy + LCB",),
        steps=2,
        seeds=2,
        hidden=8,
        num_critics=3,
        batch_size=16,
        episodes=8,
        steps_per_call=2,
        quiet=True,
    )
    a = res["a_grid"]
    assert res["true_q0"].shape == a.shape
    assert tuple(res["variants"]) == ("+ entropy + LCB",)
    for r in res["variants"].values():
        assert r["returns"].shape == (2,)
        assert np.all((r["returns"] >= 0) & (r["returns"] <= 3.0))
        assert r["q_mean"].shape == r["q_pess"].shape == r["q_lcb4"].shape == (2, a.size)
        assert r["a0"].shape == r["s2"].shape == (2, 8)
        assert np.all(np.abs(r["a0"]) <= 1.0) and np.all(np.abs(r["s2"]) <= 2.0)
        assert np.isfinite(r["return_mean"]) and np.isfinite(r["return_std"])
    _, info = toy_two_step.make_dataset(0)
    toy_two_step.plot(res, tmp_path / "t.png", info)
    assert (tmp_path / "t.png").stat().st_size > 0
    from _toy_common import write_json

    write_json(tmp_path / "t.json", res)
    assert "variants" in json.loads((tmp_path / "t.json").read_text())
