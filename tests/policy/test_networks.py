"""Mish, the time embedding, the denoiser and the action box (float32 unless stated)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdepolicy.policy import ActionBox, Denoiser, SinusoidalTimeEmbedding, mish, mish_and_slope


def _naive_mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


def _mish_inputs(dtype):
    grid = np.linspace(-30.0, 30.0, 2001)
    extra = np.array([-1e4, -100.0, -50.0, 0.0, 1e-6, 19.999, 20.0, 20.001, 45.0, 100.0, 1e4])
    return jnp.asarray(np.concatenate([grid, extra]), dtype=dtype)


@pytest.mark.parametrize("x64", [False, True])
def test_mish_equals_the_naive_formula_and_its_gradient(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        rtol = 1e-13 if x64 else 2e-6
        x = _mish_inputs(dtype)
        got, want = jax.jit(mish)(x), jax.jit(_naive_mish)(x)
        assert got.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(got)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-300 if x64 else 1e-37)
        g = jax.jit(jax.vmap(jax.grad(mish)))(x)
        g_want = jax.jit(jax.vmap(jax.grad(_naive_mish)))(x)
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g, g_want, rtol=4 * rtol, atol=1e-14 if x64 else 1e-7)
    # Known values, not produced by either implementation: mish(1) = tanh(log(1 + e)).
    np.testing.assert_allclose(mish(jnp.array(1.0)), math.tanh(math.log1p(math.e)), rtol=1e-6)
    assert float(mish(jnp.array(0.0))) == 0.0


def test_mish_closed_form_derivative_rule_forward_mode_and_second_derivative():
    """Mish's `custom_jvp` rule (the slope from `mish_and_slope`) against autodiff of the
    textbook formula, in forward mode and at second order (the rule is itself differentiated),
    in float64; and against central finite differences, numbers neither produced."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.concatenate([np.linspace(-25.0, 19.0, 1501), [19.5, 21.0, 60.0]]))
        value, slope = mish_and_slope(x)
        np.testing.assert_allclose(value, _naive_mish(x), rtol=1e-13, atol=1e-300)
        _, tangent = jax.jvp(mish, (x,), (jnp.ones_like(x),))
        np.testing.assert_allclose(tangent, slope, rtol=0, atol=0)
        want = jax.vmap(jax.grad(_naive_mish))(x)
        np.testing.assert_allclose(slope, want, rtol=1e-12, atol=1e-15)
        second = jax.vmap(jax.grad(jax.grad(mish)))(x)
        second_want = jax.vmap(jax.grad(jax.grad(_naive_mish)))(x)
        np.testing.assert_allclose(second, second_want, rtol=1e-10, atol=1e-12)
        h = 1e-5
        fd = (_naive_mish(x + h) - _naive_mish(x - h)) / (2 * h)
        np.testing.assert_allclose(slope, fd, rtol=1e-8, atol=1e-9)


def test_sinusoidal_embedding_matches_the_reference_formula():
    emb = SinusoidalTimeEmbedding(16)
    for k in (0.0, 1.0, 4.0, 37.5):
        half = 8
        freqs = np.exp(np.arange(half) * -(math.log(10000) / (half - 1)))
        want = np.concatenate([np.sin(k * freqs), np.cos(k * freqs)])
        got = emb(jnp.array(k))
        assert got.shape == (16,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for bad in (2, 7):
        with pytest.raises(ValueError, match="even and >= 4"):
            SinusoidalTimeEmbedding(bad)


def _hand_forward(net: Denoiser, x_t, k, state):
    # The docs/method.md §6 architecture written out with the naive Mish, from the weights.
    np_mish = lambda v: v * np.tanh(np.log1p(np.exp(v)))
    lin = lambda layer, v: np.asarray(layer.weight) @ v + np.asarray(layer.bias)
    half = net.time_embedding.dim // 2
    freqs = np.exp(np.arange(half) * -(math.log(10000) / (half - 1)))
    emb = np.concatenate([np.sin(k * freqs), np.cos(k * freqs)])
    emb = lin(net.time_layers[1], np_mish(lin(net.time_layers[0], emb)))
    h = np.concatenate([x_t, emb, state])
    for layer in net.hidden_layers:
        h = np_mish(lin(layer, h))
    return lin(net.output_layer, h)


def test_denoiser_default_architecture():
    # Shapes only (eval_shape: nothing is computed or compiled).
    net = eqx.filter_eval_shape(lambda k: Denoiser(11, 3, key=k), jax.random.key(0))
    sizes = lambda layers: [(layer.in_features, layer.out_features) for layer in layers]
    assert sizes(net.time_layers) == [(16, 32), (32, 16)]
    assert sizes(net.hidden_layers) == [(3 + 16 + 11, 256), (256, 256), (256, 256)]
    assert (net.output_layer.in_features, net.output_layer.out_features) == (256, 3)
    n_params = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(net))
    want = (16 * 32 + 32) + (32 * 16 + 16) + (30 * 256 + 256) + 2 * (256**2 + 256) + (256 * 3 + 3)
    assert n_params == want


def test_denoiser_init_is_pytorch_default():
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, every layer.
    net = _small_net()
    for layer in (*net.time_layers, *net.hidden_layers, net.output_layer):
        bound = 1 / math.sqrt(layer.in_features)
        w, b = np.asarray(layer.weight), np.asarray(layer.bias)
        assert np.max(np.abs(w)) <= bound and np.max(np.abs(b)) <= bound
        assert np.max(np.abs(w)) > 0.8 * bound  # uses the whole range
    # 64 x 64 = 4096 draws scaled to U(-1, 1): mean 0 (SE 0.009), variance 1/3 (SE 0.005);
    # tolerances are 5 standard errors.
    w = np.asarray(net.hidden_layers[1].weight).ravel() * 8.0
    assert abs(w.mean()) < 0.045 and abs(w.var() - 1 / 3) < 0.025


def _small_net():
    return Denoiser(4, 2, key=jax.random.key(1), hidden=64, depth=2, time_dim=8)


def test_denoiser_matches_a_hand_forward_pass_and_vmaps():
    net = _small_net()
    rng = np.random.default_rng(2)
    x_t = jnp.asarray(rng.standard_normal((5, 2)), dtype=jnp.float32)
    state = jnp.asarray(rng.standard_normal((5, 4)), dtype=jnp.float32)
    k = jnp.arange(5, dtype=jnp.float32)

    @eqx.filter_jit
    def run(net, x_t, k, state):
        jac = jax.jacrev(net, argnums=(0, 1, 2))(k[1], x_t[0], state[0])
        return jax.vmap(net)(k, x_t, state), jac

    batched, jac = run(net, x_t, k, state)
    assert batched.shape == (5, 2)
    for i in range(5):
        want = _hand_forward(net, np.asarray(x_t[i]), float(k[i]), np.asarray(state[i]))
        np.testing.assert_allclose(batched[i], want, rtol=2e-4, atol=2e-5)
    # The output depends on every input.
    for j in jac:
        assert np.max(np.abs(np.asarray(j))) > 1e-4
    with pytest.raises(ValueError):
        Denoiser(4, 0, key=jax.random.key(0))


@jax.jit
def _box_maps(box, a, u):
    return {
        "to_unit": box.to_unit(a),
        "from_unit": box.from_unit(u),
        "clip": box.clip(a),
        "round_trip_u": box.to_unit(box.from_unit(u)),
        "round_trip_a": box.from_unit(box.to_unit(a)),
    }


def test_action_box_round_trip_and_pendulum():
    pendulum = ActionBox([-2.0], [2.0])
    a = np.array([[-2.0], [0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    u = np.array([[-1.0], [0.25], [1.0], [0.0], [-0.5]], dtype=np.float32)
    out = _box_maps(pendulum, a, u)
    np.testing.assert_allclose(out["to_unit"], [[-1.0], [0.0], [0.5], [1.0], [1.5]], atol=1e-7)
    np.testing.assert_allclose(out["from_unit"], [[-2.0], [0.5], [2.0], [0.0], [-1.0]], atol=1e-7)
    np.testing.assert_allclose(out["clip"], [[-2.0], [0.0], [1.0], [2.0], [2.0]])
    # An asymmetric box, batched: bounds map to -1 and 1, the centre to 0, round trips.
    low, high = np.array([0.0, -3.0, 10.0]), np.array([1.0, 5.0, 10.5])
    box = ActionBox(jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32))
    rng = np.random.default_rng(0)
    u = rng.uniform(-1, 1, (100, 3)).astype(np.float32)
    a = np.concatenate(
        [low[None], high[None], (low + high)[None] / 2, rng.uniform(low, high, (97, 3))]
    ).astype(np.float32)
    out = _box_maps(box, a, u)
    np.testing.assert_allclose(out["to_unit"][:3], [[-1.0] * 3, [1.0] * 3, [0.0] * 3], atol=1e-6)
    np.testing.assert_allclose(
        out["from_unit"], low + (u + 1) * (high - low) / 2, rtol=1e-6, atol=1e-6
    )
    assert np.all((np.asarray(out["from_unit"]) >= low) & (np.asarray(out["from_unit"]) <= high))
    np.testing.assert_allclose(out["round_trip_u"], u, atol=1e-5)
    np.testing.assert_allclose(out["round_trip_a"], a, rtol=1e-6, atol=1e-5)
    # Works when built and used inside jit (values traced: the checks step aside).
    f = jax.jit(lambda lo, hi, x: ActionBox(lo, hi).to_unit(x))
    np.testing.assert_allclose(f(jnp.array([-2.0]), jnp.array([2.0]), jnp.array([1.0])), [0.5])


@pytest.mark.parametrize(
    "low, high, match",
    [
        ([0.0, 1.0], [1.0, 1.0], "low < high"),
        ([0.0], [-1.0], "low < high"),
        ([-np.inf], [1.0], "finite"),
        ([0.0], [np.nan], "finite"),
        ([0.0, 0.0], [1.0], "same shape"),
        (np.zeros((1, 1)), np.ones((1, 1)), "1-D|action"),
    ],
)
def test_action_box_validation(low, high, match):
    # A 2-D array is already refused by the jaxtyping annotation when the tests run with
    # beartype (a TypeError); without it, `__check_init__` raises the ValueError.
    with pytest.raises((ValueError, TypeError), match=match):
        ActionBox(low, high)
