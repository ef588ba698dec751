"""The Q-ensemble: stacked members equal separate networks, EDAC init, LCB/min aggregates."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdepolicy.policy import mish
from sdepolicy.rl.critics import QEnsemble, aggregate_q, ensemble_min, lcb

# The same sizes as the agent and training tests, so eagerly compiled ops are shared.
OBS, ACT, M, HIDDEN = 4, 2, 4, 32


@pytest.fixture(scope="module")
def batch():
    k1, k2 = jax.random.split(jax.random.key(0))
    return jax.random.normal(k1, (16, OBS)), jax.random.uniform(k2, (16, ACT), minval=-1, maxval=1)


def member_mlp(ensemble, m):
    """Member m as an ordinary `eqx.nn.MLP` (with Mish), built from the m-th parameter slices."""
    template = eqx.nn.MLP(OBS + ACT, "scalar", HIDDEN, 3, activation=mish, key=jax.random.key(9))
    leaves = lambda n: [x for lin in n.layers for x in (lin.weight, lin.bias)]
    params = [p[m] for wb in zip(ensemble.weights, ensemble.biases, strict=True) for p in wb]
    return eqx.tree_at(leaves, template, params)


@pytest.mark.parametrize("init", ["edac", "default"])
def test_stacked_equals_separate_networks(batch, init):
    """Member m of the ensemble is an ordinary MLP on [s, a] with the m-th slice of the params."""
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, depth=3, init=init, key=jax.random.key(1))
    q = ens(states, actions)
    assert q.shape == (M, 16)
    x = jnp.concatenate([states, actions], axis=1)
    for m in range(M):
        mlp = member_mlp(ens, m)
        np.testing.assert_allclose(q[m], jax.vmap(mlp)(x), rtol=1e-5, atol=1e-6)
    # Members are independent draws, not copies.
    assert float(jnp.min(jnp.std(q, axis=0))) > 0


def test_edac_init_statistics():
    ens = QEnsemble(OBS, ACT, M, HIDDEN, depth=3, init="edac", key=jax.random.key(2))
    assert [w.shape for w in ens.weights] == [(M, HIDDEN, OBS + ACT)] + [
        (M, HIDDEN, HIDDEN)
    ] * 2 + [(M, 1, HIDDEN)]
    for b in ens.biases[:-1]:
        np.testing.assert_array_equal(b, np.float32(0.1))
    for arr in (ens.weights[-1], ens.biases[-1]):
        assert float(jnp.max(jnp.abs(arr))) <= 3e-3
        assert float(jnp.std(arr)) > 1e-4  # actually random, not zero
    # Hidden weights keep PyTorch's default U(±1/sqrt(fan_in)): bounded, filling the interval
    # (mean ~0, variance bound^2/3), and drawn independently per member.
    for w in ens.weights[:-1]:
        bound = 1 / np.sqrt(w.shape[-1])
        assert float(jnp.max(jnp.abs(w))) <= bound
        assert float(jnp.max(jnp.abs(w))) > 0.95 * bound
        assert abs(float(jnp.mean(w))) < 0.05 * bound
        np.testing.assert_allclose(float(jnp.var(w)), bound**2 / 3, rtol=0.1)
        assert not np.allclose(w[0], w[1])
    default = QEnsemble(OBS, ACT, M, HIDDEN, init="default", key=jax.random.key(2))
    assert float(jnp.max(jnp.abs(default.weights[-1]))) > 3e-3
    bound = 1 / np.sqrt(OBS + ACT)
    assert float(jnp.max(jnp.abs(default.biases[0]))) <= bound
    assert float(jnp.std(default.biases[0])) > 0.3 * bound


def test_lcb_is_unbiased_std_and_min():
    q = jax.random.normal(jax.random.key(3), (6, 10)) * 3 + 1
    qn = np.asarray(q, dtype=np.float64)
    expected = qn.mean(0) - 4.0 * qn.std(0, ddof=1)
    np.testing.assert_allclose(lcb(q, 4.0), expected, rtol=1e-5, atol=1e-5)
    # The biased std would differ by a factor sqrt(6/5): far outside the tolerance.
    assert not np.allclose(qn.mean(0) - 4.0 * qn.std(0, ddof=0), expected, atol=1e-3)
    np.testing.assert_allclose(ensemble_min(q), qn.min(0), rtol=1e-6)
    np.testing.assert_allclose(aggregate_q(q, "lcb", 4.0), lcb(q, 4.0))
    np.testing.assert_allclose(aggregate_q(q, "min"), ensemble_min(q))
    with pytest.raises(ValueError):
        aggregate_q(q, "mean")


def test_gradients_reach_every_member(batch):
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(4))
    grads = eqx.filter_grad(lambda e: jnp.sum(e(states, actions)))(ens)
    first = grads.weights[0]
    assert first.shape == (M, HIDDEN, OBS + ACT)
    assert bool(jnp.all(jnp.linalg.norm(first.reshape(M, -1), axis=1) > 0))
