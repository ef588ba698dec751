r"""A Q-ensemble: $M$ independent critics $Q_m(s, a)$ stored as one module.

Every parameter carries a leading member axis, so the forward pass of all $M$ critics is one
batched matmul per layer rather than $M$ calls; this is what makes the paper's $M = 64$ affordable.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey, RealScalarLike
from ..policy import mish


def _init_params(
    sizes: list[int], num_members: int, init: str, key: PRNGKey
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """Weights `(M, out, in)` and biases `(M, out)` of every layer, initialised as in the
    reference code (see `QEnsemble`)."""
    shapes = [((o, i), (o,)) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    total = sum(o * i + o for (o, i), _ in shapes)
    # One uniform draw for every parameter of every member, sliced afterwards: the same law as
    # layer-by-layer draws, but one random-number kernel for XLA to compile instead of two per
    # layer (each costs ~0.4 s of CPU compile time, which dominates building small ensembles).
    u = jax.random.uniform(key, (num_members, total), minval=-1.0, maxval=1.0)
    weights, biases, offset = [], [], 0
    last = len(shapes) - 1
    for j, ((fan_out, fan_in), _) in enumerate(shapes):
        # PyTorch's default Linear init: weight and bias ~ U(±1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(fan_in)
        if init == "edac" and j == last:
            bound = 3e-3  # EDAC: output layer ~ U(±3e-3), members start near Q = 0
        n_w = fan_out * fan_in
        w = bound * u[:, offset : offset + n_w].reshape(num_members, fan_out, fan_in)
        b = bound * u[:, offset + n_w : offset + n_w + fan_out]
        offset += n_w + fan_out
        if init == "edac" and j != last:
            b = jnp.full_like(b, 0.1)  # EDAC: every (hidden) bias 0.1
        weights.append(w)
        biases.append(b)
    return tuple(weights), tuple(biases)


class QEnsemble(eqx.Module):
    r"""$M$ critics $Q_m(s, a)$, each an MLP on $[s, a]$ with `depth` hidden layers of width
    `hidden` and Mish activations, with stacked parameters.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of $s$ and $a$.
    - `num_members`: $M$ (the paper: 64; Diffusion-QL's two critics: 2).
    - `hidden`, `depth`: width and number of hidden layers (the paper: 256, 3).
    - `init`: `"edac"` (PyTorch's default per member, weight and bias
        $\sim U(\pm 1/\sqrt{\text{fan\_in}})$, then every hidden bias $0.1$ and the output
        layer's weight and bias $\sim U(-3\cdot10^{-3}, 3\cdot10^{-3})$: ER-DP-QE, SPEC §6) or
        `"default"` (PyTorch's default only: Diffusion-QL's critics).
    - `key`: PRNG key; members are independent draws.

    **Attributes:**

    - `weights`: per layer, an array `(M, out, in)`; the last layer has `out = 1`.
    - `biases`: per layer, an array `(M, out)`.

    Member `m` is the MLP $h_0 = [s, a]$, $h_j = \operatorname{mish}(W_j[m] h_{j-1} + b_j[m])$,
    $Q_m = W_\text{out}[m] h + b_\text{out}[m]$.
    """

    weights: tuple[Float[Array, "members out in"], ...]
    biases: tuple[Float[Array, "members out"], ...]
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
        if min(obs_dim + action_dim, num_members, hidden, depth) < 1:
            raise ValueError("QEnsemble: sizes, num_members and depth must be positive.")
        sizes = [obs_dim + action_dim] + [hidden] * depth + [1]
        self.weights, self.biases = _init_params(sizes, num_members, init, key)
        self.num_members = num_members

    def __call__(
        self, states: Float[Array, "batch obs"], actions: Float[Array, "batch act"]
    ) -> Float[Array, "members batch"]:
        r"""$Q_m(s_i, a_i)$ for every member $m$ and row $i$.

        **Returns:** an array of shape `(num_members, batch)`.
        """
        x = jnp.concatenate([states, actions], axis=-1)
        (w0, *ws), (b0, *bs) = self.weights, self.biases
        # The input is shared by all members: one (b, in) x (M, out, in) contraction.
        h = mish(jnp.einsum("bi,moi->mbo", x, w0) + b0[:, None, :])
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            h = mish(jnp.einsum("mbi,moi->mbo", h, w) + b[:, None, :])
        return jnp.einsum("mbi,mi->mb", h, ws[-1][:, 0, :]) + bs[-1]


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
