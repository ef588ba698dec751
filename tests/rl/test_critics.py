"""The Q-ensemble: stacked members equal separate networks, EDAC init, LCB/min aggregates, and
the hand-written kernel (`FusedBackward`) equals autodiff of the plain code (`AutodiffBackward`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_helpers import jit, member_net
from hypothesis import given, settings
from hypothesis import strategies as st

import sdepolicy.rl._fused_critic as fused_critic
from sdepolicy.policy import mish
from sdepolicy.rl import (
    AutodiffBackward,
    FusedBackward,
    QEnsemble,
    action_gradient_similarity,
    aggregate_q,
    ensemble_min,
    lcb,
)
from sdepolicy.rl._critics import ensemble_mlp_reference
from sdepolicy.rl._fused_critic import ensemble_mlp, member_groups

FUSED, PLAIN = FusedBackward(), AutodiffBackward()

# The same sizes as the agent and training tests, so eagerly compiled ops are shared.
OBS, ACT, M, HIDDEN = 4, 2, 4, 32


@pytest.fixture(scope="module")
def batch():
    k1, k2 = jax.random.split(jax.random.key(0))
    return jax.random.normal(k1, (16, OBS)), jax.random.uniform(k2, (16, ACT), minval=-1, maxval=1)


@pytest.mark.parametrize("init", ["edac", "default"])
def test_stacked_equals_separate_networks(batch, init):
    """Member m of the ensemble is an ordinary MLP on [s, a] with the m-th slice of the params."""
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, depth=3, init=init, key=jax.random.key(1))
    q = ens(states, actions)
    assert q.shape == (M, 16)
    for m in range(M):
        want = member_net(ens, m, OBS + ACT, HIDDEN)(states, actions)
        np.testing.assert_allclose(q[m], want, rtol=1e-5, atol=1e-6)
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
    # The reference code's (in, out) storage under kaiming_uniform_(a=sqrt(5)): every weight
    # layer, the first included, is U(±1/sqrt(out)) = U(±1/sqrt(HIDDEN)): bounded, filling the
    # interval (mean ~0, variance bound^2/3), drawn independently per member
    # (docs/method.md §6.1). With OBS + ACT = 6 < HIDDEN = 32 the first layer's nn.Linear bound
    # 1/sqrt(6) would be 2.3x wider and fail the variance check.
    for w in ens.weights[:-1]:
        bound = 1 / np.sqrt(HIDDEN)
        assert float(jnp.max(jnp.abs(w))) <= bound
        assert float(jnp.max(jnp.abs(w))) > 0.95 * bound
        assert abs(float(jnp.mean(w))) < 0.05 * bound
        np.testing.assert_allclose(float(jnp.var(w)), bound**2 / 3, rtol=0.1)
        assert not np.allclose(w[0], w[1])
    default = QEnsemble(OBS, ACT, M, HIDDEN, init="default", key=jax.random.key(2))
    assert float(jnp.max(jnp.abs(default.weights[-1]))) > 3e-3
    # Diffusion-QL's critics keep nn.Linear's default: U(±1/sqrt(in)) for weights and biases.
    for w in default.weights[:-1]:  # (the output layer has too few entries for a variance)
        in_bound = 1 / np.sqrt(w.shape[-1])
        assert float(jnp.max(jnp.abs(w))) <= in_bound
        np.testing.assert_allclose(float(jnp.var(w)), in_bound**2 / 3, rtol=0.15)
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


@pytest.mark.parametrize("backward", [FUSED, PLAIN])
def test_gradients_reach_every_member(batch, backward):
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(4), backward=backward)
    grads = eqx.filter_grad(lambda e: jnp.sum(e(states, actions)))(ens)
    first = grads.weights[0]
    assert first.shape == (M, HIDDEN, OBS + ACT)
    assert bool(jnp.all(jnp.linalg.norm(first.reshape(M, -1), axis=1) > 0))


# --- the hand-written backward pass (`ensemble_mlp`) against autodiff of the plain code --------


def _random_params(members, sizes, rng):
    """Weights (M, out, in) and biases (M, out) at a scale where Mish's curvature matters (numpy
    draws: no per-shape compilation)."""
    weights, biases = [], []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append(jnp.asarray(2 * rng.normal(size=(members, o, i)) / np.sqrt(i)))
        biases.append(jnp.asarray(rng.normal(size=(members, o))))
    return tuple(weights), tuple(biases)


@settings(max_examples=10)
@given(
    members=st.sampled_from([1, 2, 3, 4, 6, 8]),
    width=st.integers(1, 24),
    depth=st.integers(1, 4),
    batch=st.integers(1, 9),
    in_dim=st.integers(1, 7),
    groups_pick=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
def test_fused_backward_equals_autodiff_of_the_plain_code(
    members, width, depth, batch, in_dim, groups_pick, seed
):
    """Values and all gradients (weights, biases, input) of `ensemble_mlp`, for any group count
    dividing M, equal JAX's autodiff of `ensemble_mlp_reference`, in float64."""
    with jax.enable_x64(True):
        divisors = [g for g in range(1, members + 1) if members % g == 0]
        groups = divisors[groups_pick % len(divisors)]
        rng = np.random.default_rng(seed)
        sizes = [in_dim] + [width] * depth + [1]
        params = _random_params(members, sizes, rng)
        x = jnp.asarray(3 * rng.normal(size=(batch, in_dim)))
        probe = jnp.asarray(rng.normal(size=(members, batch)))

        def loss(fn):
            return lambda w, b, x: jnp.sum(probe * jnp.sin(fn(w, b, x)))

        fused = loss(lambda w, b, x: ensemble_mlp(mish, groups, w, b, x))
        plain = loss(lambda w, b, x: ensemble_mlp_reference(mish, w, b, x))

        # One compilation per example (op-by-op float64 dispatch is much slower), at XLA's lowest
        # CPU optimisation level (the same numbers, faster to compile).
        @jit
        def both(w, b, x):
            values = (ensemble_mlp(mish, groups, w, b, x), ensemble_mlp_reference(mish, w, b, x))
            grads = tuple(jax.grad(f, argnums=(0, 1, 2))(w, b, x) for f in (fused, plain))
            return values, grads

        (q, q_want), (got, want) = both(*params, x)
        np.testing.assert_allclose(q, q_want, rtol=1e-12, atol=1e-12)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_fused_backward_under_jit_and_vmap_and_unused_cotangents(batch):
    """A seed axis (`vmap`, as `make_seeds_train_fn`), `jit`, and a gradient with respect to the
    input only (the actor's Q term) all agree with the plain code."""
    states, actions = batch
    keys = jax.random.split(jax.random.key(5), 3)
    fused = jax.vmap(lambda k: QEnsemble(OBS, ACT, M, HIDDEN, key=k, backward=FUSED))(keys)
    plain = jax.vmap(lambda k: QEnsemble(OBS, ACT, M, HIDDEN, key=k))(keys)
    assert fused.backward is FUSED and isinstance(plain.backward, AutodiffBackward)

    def q_of_actions(ens, a):
        return jnp.sum(lcb(ens(states, a), 4.0))

    @jax.jit
    def grads(ens):
        g_params = jax.vmap(eqx.filter_grad(lambda e: jnp.mean(e(states, actions) ** 2)))(ens)
        g_actions = jax.vmap(jax.grad(q_of_actions, argnums=1), in_axes=(0, None))(ens, actions)
        return g_params, g_actions

    (gp_f, ga_f), (gp_p, ga_p) = grads(fused), grads(plain)
    for g, w in zip(jax.tree.leaves(gp_f), jax.tree.leaves(gp_p), strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6)
    assert ga_f.shape == (3, 16, ACT)
    np.testing.assert_allclose(ga_f, ga_p, rtol=2e-4, atol=1e-6)


def test_grouped_members_on_cpu_and_forward_mode(batch, monkeypatch):
    """The paper's sizes are split into groups of 8 members on a CPU; small ensembles are one
    group. Forward mode needs `AutodiffBackward`, and gives the same directional derivative."""
    assert jax.default_backend() == "cpu"
    assert member_groups(64, 256, 256) == 8
    assert member_groups(10, 64, 256) == 1
    assert member_groups(2, 256, 256) == 1
    assert member_groups(64, 256, 1024) == 32  # 2 members of 1 MiB each per group
    for m in (1, 5, 7, 10, 12, 64):
        assert m % member_groups(m, 256, 4096) == 0
    # A small group budget forces several groups through `QEnsemble.__call__` itself.
    monkeypatch.setattr(fused_critic, "_CPU_GROUP_BYTES", 4 * HIDDEN * 16)
    assert member_groups(M, HIDDEN, 16) == M
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(6), backward=FUSED)
    plain = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(6), backward=PLAIN)
    g = eqx.filter_grad(lambda e: jnp.sum(jnp.tanh(e(states, actions))))
    for a, b in zip(jax.tree.leaves(g(ens)), jax.tree.leaves(g(plain)), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    direction = jnp.ones_like(actions)
    _, tangent = jax.jvp(lambda a: plain(states, a), (actions,), (direction,))
    eps = 1e-2
    fd = (plain(states, actions + eps * direction) - plain(states, actions - eps * direction)) / (
        2 * eps
    )
    np.testing.assert_allclose(tangent, fd, rtol=2e-2, atol=2e-3)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda a: ens(states, a), (actions,), (direction,))
    with pytest.raises(TypeError, match="backward"):
        QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(6), backward="fused")


def _mse(errors):
    return jnp.mean(errors)


def _sum_of_mses(errors):
    return jnp.sum(jnp.mean(errors, axis=1))


@pytest.mark.parametrize(("shared_targets", "loss"), [(False, _mse), (True, _sum_of_mses)])
def test_regression_loss_fused_equals_autodiff(monkeypatch, shared_targets, loss):
    """The critics' regression loss computed group by group (forward then backward per group)
    gives the loss, Q and gradients of `eqx.filter_value_and_grad` on the plain code, float64,
    with several groups; per-member targets with ER-DP-QE's MSE over batch x members, shared
    targets with Diffusion-QL's sum of per-critic MSEs."""
    monkeypatch.setattr(fused_critic, "_CPU_GROUP_BYTES", 4 * HIDDEN * 16)  # one member per group
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        states = jnp.asarray(rng.normal(size=(16, OBS)))
        actions = jnp.asarray(rng.uniform(-1, 1, (16, ACT)))
        targets = jnp.asarray(rng.normal(size=(16,) if shared_targets else (M, 16)))
        to64 = lambda e: jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_array(a) else a, e)
        fused = to64(QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(7), backward=FUSED))
        plain = to64(QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(7), backward=PLAIN))
        assert member_groups(M, HIDDEN, 16) == M

        def by_hand(ens):
            q = ens(states, actions)
            return loss((q - jnp.broadcast_to(targets, q.shape)) ** 2), q

        (want_loss, want_q), want_grads = eqx.filter_value_and_grad(by_hand, has_aux=True)(plain)
        for ens in (fused, plain):
            objective = lambda e: e.regression_loss(states, actions, targets, loss)
            value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(objective, has_aux=True))
            (value, q), grads = value_and_grad(ens)
            np.testing.assert_allclose(value, want_loss, rtol=1e-12)
            np.testing.assert_allclose(q, want_q, rtol=1e-12, atol=1e-14)
            for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14)


def test_fused_regression_loss_refuses_a_loss_not_linear_in_the_squared_errors(batch):
    """The fused kernel reads the loss's gradient off its transpose before the forward pass, so
    it needs a loss linear in the squared errors; a Huber-like or root loss is refused clearly
    (the plain code takes it)."""
    states, actions = batch
    targets = jnp.zeros((M, 16))
    root = lambda errors: jnp.mean(jnp.sqrt(errors + 1.0))
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(8), backward=FUSED)
    objective = lambda e: e.regression_loss(states, actions, targets, root)
    with pytest.raises(ValueError, match="linear in the squared errors"):
        eqx.filter_value_and_grad(objective, has_aux=True)(ens)
    plain = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(8))
    (value, _), _ = eqx.filter_value_and_grad(
        lambda e: e.regression_loss(states, actions, targets, root), has_aux=True
    )(plain)
    assert bool(jnp.isfinite(value))


def _pairwise_cosines_by_finite_differences(ens, states, actions, eps=1e-4):
    """EDAC's measure from its definition, member by member: central differences of each
    member (an ordinary MLP, `member_net`) in every action coordinate, then the explicit sum
    over ordered pairs m != n of the gradients' cosines, averaged over the batch."""
    act = actions.shape[1]
    nets = [member_net(ens, m, OBS + act, HIDDEN) for m in range(M)]
    grads = []
    for net in nets:
        cols = []
        for j in range(act):
            step = jnp.zeros_like(actions).at[:, j].set(eps)
            cols.append((net(states, actions + step) - net(states, actions - step)) / (2 * eps))
        grads.append(np.stack(cols, axis=1))
    unit = [g / np.linalg.norm(g, axis=1, keepdims=True) for g in grads]
    total = sum(np.sum(unit[m] * unit[n], axis=1) for m in range(M) for n in range(M) if m != n)
    return float(np.mean(total / (M - 1)))


@pytest.mark.parametrize("backward", [PLAIN, FUSED], ids=["autodiff", "fused"])
def test_action_gradient_similarity_matches_its_definition(batch, backward):
    """`action_gradient_similarity` (one backward pass and the identity sum_{m!=n} <u_m, u_n> =
    |sum_m u_m|^2 - M: proofs/ensemble_diversity.md) equals the explicit pairwise sum over
    finite-difference gradients, in float64, whatever the ensemble's backward; and it lies in
    [-M/(M-1), M]."""
    with jax.enable_x64(True):
        states, actions = (jnp.asarray(x, jnp.float64) for x in batch)
        ens = QEnsemble(
            OBS, ACT, M, HIDDEN, init="default", key=jax.random.key(7), backward=backward
        )
        to64 = lambda x: x.astype(jnp.float64) if eqx.is_array(x) else x
        ens = jax.tree_util.tree_map(to64, ens)
        got = float(action_gradient_similarity(ens, states, actions))
        want = _pairwise_cosines_by_finite_differences(ens, states, actions)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert -M / (M - 1) <= got <= M


def test_action_gradient_similarity_of_identical_members_and_one_dimensional_actions(batch):
    """Copies of one member agree exactly (M); with a one-dimensional action every unit
    gradient is +-1, so the measure is piecewise constant: its parameter gradient is zero
    (the term does nothing there, as its docstring says), while with 2-d actions it is not."""
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(8))
    copies = jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x[:1], x.shape) if eqx.is_array(x) else x, ens
    )
    np.testing.assert_allclose(action_gradient_similarity(copies, states, actions), M, rtol=1e-5)

    def grad_norm(critic, a):
        g = eqx.filter_grad(lambda c: action_gradient_similarity(c, states, a))(critic)
        return sum(float(jnp.sum(x**2)) for x in jax.tree_util.tree_leaves(g))

    one_d = QEnsemble(OBS, 1, M, HIDDEN, key=jax.random.key(9))
    assert grad_norm(one_d, actions[:, :1]) == 0.0
    assert grad_norm(ens, actions) > 1.0


def _numpy_layer_norm_member(ens, m, states, actions):
    """Member m of a LayerNorm ensemble in float64 numpy, written from the definition
    (Linear, LayerNorm over the features with eps 1e-5, the member's scale and offset, Mish)."""
    h = np.concatenate([np.asarray(states, np.float64), np.asarray(actions, np.float64)], -1)
    ws = [np.asarray(w[m], np.float64) for w in ens.weights]
    bs = [np.asarray(b[m], np.float64) for b in ens.biases]
    for j in range(len(ws) - 1):
        z = h @ ws[j].T + bs[j]
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)
        z = z * np.asarray(ens.norm_scales[j][m]) + np.asarray(ens.norm_offsets[j][m])
        h = z * np.tanh(np.log1p(np.exp(z)))
    return (h @ ws[-1].T + bs[-1])[:, 0]


def test_layer_norm_critics_match_their_definition_and_learn_their_affine_maps(batch):
    states, actions = batch
    ens = QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(5), layer_norm=True)
    assert len(ens.norm_scales) == 3 and ens.norm_scales[0].shape == (M, HIDDEN)
    # Random affine maps, so that the check sees them (they start at 1 and 0).
    keys = jax.random.split(jax.random.key(6), 6)
    ens = eqx.tree_at(
        lambda e: (e.norm_scales, e.norm_offsets),
        ens,
        (
            tuple(1 + 0.3 * jax.random.normal(k, (M, HIDDEN)) for k in keys[:3]),
            tuple(0.3 * jax.random.normal(k, (M, HIDDEN)) for k in keys[3:]),
        ),
    )
    q = ens(states, actions)
    for m in range(M):
        want = _numpy_layer_norm_member(ens, m, states, actions)
        np.testing.assert_allclose(q[m], want, rtol=2e-4, atol=2e-5)
    # A hidden layer's pre-activations scaled by c > 0 change nothing: the normalisation removes
    # the scale (the property that keeps such critics from growing Q by growing features).
    scaled = eqx.tree_at(
        lambda e: (e.weights[1], e.biases[1]), ens, (7.0 * ens.weights[1], 7.0 * ens.biases[1])
    )
    np.testing.assert_allclose(scaled(states, actions), q, rtol=1e-4, atol=1e-5)
    # The regression loss reaches every parameter, the affine maps included.
    y = jnp.ones((M, 16))
    grads = eqx.filter_grad(lambda e: e.regression_loss(states, actions, y, jnp.mean)[0])(ens)
    for g in (*grads.norm_scales, *grads.norm_offsets, *grads.weights):
        assert float(jnp.min(jnp.max(jnp.abs(g.reshape(M, -1)), axis=1))) > 0
    with pytest.raises(ValueError, match="autodiff only"):
        QEnsemble(OBS, ACT, M, HIDDEN, key=jax.random.key(5), layer_norm=True, backward=FUSED)
