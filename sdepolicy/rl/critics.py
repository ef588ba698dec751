r"""A Q-ensemble: $M$ independent critics $Q_m(s, a)$ stored as one module.

Every parameter carries a leading member axis, so the forward pass of all $M$ critics is one
batched matmul per layer rather than $M$ calls; this is what makes the paper's $M = 64$ affordable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey, RealScalarLike
from ..policy import mish


def _member_layers(
    in_size: int, hidden: int, depth: int, init: str, key: PRNGKey
) -> tuple[eqx.nn.Linear, ...]:
    """The linear layers of one critic, initialised as in the reference code."""
    keys = jax.random.split(key, depth + 2)
    sizes = [in_size] + [hidden] * depth
    # eqx.nn.Linear's default draws weight and bias from U(±1/sqrt(fan_in)): PyTorch's default.
    layers = [eqx.nn.Linear(sizes[j], sizes[j + 1], key=keys[j]) for j in range(depth)]
    last = eqx.nn.Linear(hidden, "scalar", key=keys[depth])
    if init == "edac":
        # EDAC init (SPEC §6): every bias 0.1, then the output layer re-drawn from U(±3e-3) so
        # that all members start near Q = 0 with small, distinct slopes.
        layers = [
            eqx.tree_at(lambda lin: lin.bias, lin, jnp.full_like(lin.bias, 0.1)) for lin in layers
        ]
        kw, kb = jax.random.split(keys[depth + 1])
        last = eqx.tree_at(
            lambda lin: (lin.weight, lin.bias),
            last,
            (
                jax.random.uniform(kw, last.weight.shape, minval=-3e-3, maxval=3e-3),
                jax.random.uniform(kb, last.bias.shape, minval=-3e-3, maxval=3e-3),
            ),
        )
    return (*layers, last)


class QEnsemble(eqx.Module):
    r"""$M$ critics $Q_m(s, a)$, each an MLP on $[s, a]$ with `depth` hidden layers of width
    `hidden` and Mish activations, with stacked parameters.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of $s$ and $a$.
    - `num_members`: $M$ (the paper: 64; Diffusion-QL's two critics: 2).
    - `hidden`, `depth`: width and number of hidden layers (the paper: 256, 3).
    - `init`: `"edac"` (PyTorch default per member, then every bias $0.1$ and the output layer
        $\sim U(-3\cdot10^{-3}, 3\cdot10^{-3})$: ER-DP-QE) or `"default"` (PyTorch default:
        Diffusion-QL's critics).
    - `key`: PRNG key; members get independent keys.

    **Attributes:**

    - `layers`: a tuple of `eqx.nn.Linear` whose arrays have a leading axis of size $M$; member
        `m`'s network is `jax.tree.map(lambda x: x[m], layers)`.
    """

    layers: tuple[eqx.nn.Linear, ...]
    num_members: int = eqx.field(static=True)

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        num_members: int = 64,
        hidden: int = 256,
        depth: int = 3,
        init: str = "edac",
        *,
        key: PRNGKey,
    ):
        if init not in ("edac", "default"):
            raise ValueError(f"QEnsemble: init must be 'edac' or 'default', got {init!r}.")
        if num_members < 1 or depth < 1:
            raise ValueError("QEnsemble: num_members and depth must be positive.")
        keys = jax.random.split(key, num_members)
        make = lambda k: _member_layers(obs_dim + action_dim, hidden, depth, init, k)
        self.layers = eqx.filter_vmap(make)(keys)
        self.num_members = num_members

    def __call__(
        self, states: Float[Array, "batch obs"], actions: Float[Array, "batch act"]
    ) -> Float[Array, "members batch"]:
        r"""$Q_m(s_i, a_i)$ for every member $m$ and row $i$.

        **Returns:** an array of shape `(num_members, batch)`.
        """
        x = jnp.concatenate([states, actions], axis=-1)
        first, *middle, last = self.layers
        # The input is shared by all members: one (b, in) x (M, out, in) contraction.
        h = mish(jnp.einsum("bi,moi->mbo", x, first.weight) + first.bias[:, None, :])
        for lin in middle:
            h = mish(jnp.einsum("mbi,moi->mbo", h, lin.weight) + lin.bias[:, None, :])
        # "scalar" output layer: weight (M, 1, hidden), bias (M, 1).
        return jnp.einsum("mbi,mi->mb", h, last.weight[:, 0, :]) + last.bias


def lcb(q: Float[Array, "members batch"], beta: RealScalarLike) -> Float[Array, " batch"]:
    r"""Lower confidence bound over members: $\bar Q - \beta\,\hat\sigma_Q$, with the unbiased
    standard deviation ($\text{ddof} = 1$, as `torch.std`)."""
    return jnp.mean(q, axis=0) - beta * jnp.std(q, axis=0, ddof=1)


def ensemble_min(q: Float[Array, "members batch"]) -> Float[Array, " batch"]:
    r"""$\min_m Q_m$: the clipped double-Q rule generalised to $M$ members."""
    return jnp.min(q, axis=0)


def aggregate_q(
    q: Float[Array, "members batch"], how: str, lcb_beta: RealScalarLike = 4.0
) -> Float[Array, " batch"]:
    """Pessimistic aggregate of ensemble values: `how` is `"lcb"` ([`lcb`][]) or `"min"`."""
    if how == "lcb":
        return lcb(q, lcb_beta)
    if how == "min":
        return ensemble_min(q)
    raise ValueError(f"aggregate_q: `how` must be 'lcb' or 'min', got {how!r}.")
