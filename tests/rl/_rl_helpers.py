"""Helpers shared by the agent tests: a low-optimisation `jit` and one Q-ensemble member as an
ordinary function (the reference the ensemble's stacked maths is checked against)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

from sdepolicy.policy import mish


@functools.partial(
    jax.jit, static_argnums=(0, 1), compiler_options={"xla_backend_optimization_level": 0}
)
def _call(fn, static, dynamic):
    return fn(*eqx.combine(dynamic, static))


def jit(fn):
    """`eqx.filter_jit` at XLA's lowest CPU optimisation level: same results, about half the
    compile time."""

    def wrapped(*args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        return _call(fn, static, dynamic)

    return wrapped


def member_net(ensemble, m, in_dim, hidden):
    """Member m of a QEnsemble as an ordinary function (s, a) -> q[b], via an eqx MLP."""
    template = eqx.nn.MLP(in_dim, "scalar", hidden, 3, activation=mish, key=jax.random.key(0))
    leaves = lambda n: [x for lin in n.layers for x in (lin.weight, lin.bias)]
    params = [p[m] for wb in zip(ensemble.weights, ensemble.biases, strict=True) for p in wb]
    mlp = eqx.tree_at(leaves, template, params)
    return lambda s, a: jax.vmap(mlp)(jnp.concatenate([s, a], axis=1))
