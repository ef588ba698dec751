r"""The Q-ensemble's fast kernel: `FusedBackward`, a drop-in for `AutodiffBackward`
with the same values and gradients (pinned to it by `tests/rl/test_critics.py` and
`tests/rl/test_fast_step.py`), arranged for speed on a CPU (docs/method.md §11,
`benchmarks/README.md`):

- activations are kept feature-major, `(members, features, batch)`, so that with the weights'
  `(members, out, in)` layout every forward and weight-gradient matmul is a plain batched matmul
  (no transposed left operand, which this CPU's matmul kernels run at about half speed), and the
  input-gradient matmul uses an explicitly transposed weight;
- the activation's derivative is taken with its value in the forward pass (its
  vector-Jacobian product with ones, which for `sdepolicy.policy.mish` is its closed-form
  slope) and kept, so the backward pass is one multiplication per layer;
- on a CPU, the members are processed in groups (8 at a time for the paper's sizes) so that one
  group's activations stay in cache, where a batched matmul of a group runs faster than one of
  all 64 members (the rates: `benchmarks/README.md`);
- the critics' regression loss is a custom-VJP function of its own (`fused_regression_loss`):
  the agent's loss is linear in the squared errors, so its gradient with respect to them is a
  constant known before the forward pass, and each group's forward pass is followed at once by
  its backward pass while its activations are still in cache, instead of storing every group's
  activations for a later backward pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._critics import AbstractCriticBackward, Activation, Params, RegressionLoss

# Members per group on a CPU: the largest divisor of M whose activations of one layer,
# `(group, hidden, batch)` float32, fit in this many bytes (about L2-sized; 8 members at the
# paper's hidden 256 and batch 256).
_CPU_GROUP_BYTES = 2 * 2**20


def member_groups(num_members: int, hidden: int, batch: int) -> int:
    """How many groups `FusedBackward` splits the members into on this backend: on a CPU,
    the fewest groups whose per-layer activations fit about 2 MiB; elsewhere (GPUs), one
    group."""
    if jax.default_backend() != "cpu":
        return 1
    per_member = 4 * hidden * max(batch, 1)
    size = max(1, min(num_members, _CPU_GROUP_BYTES // per_member))
    while num_members % size:
        size -= 1
    return num_members // size


def _groups_for(weights: tuple[Array, ...], x: Array) -> int:
    return member_groups(weights[0].shape[0], max(w.shape[-2] for w in weights), x.shape[0])


def _value_and_slope(activation: Activation, z: Array) -> tuple[Array, Array]:
    # The activation is elementwise, so its vector-Jacobian product with ones is its slope
    # (reverse mode, so that an activation with a custom VJP rule works too).
    value, vjp = jax.vjp(activation, z)
    return value, vjp(jnp.ones_like(z))[0]


def _group_forward(activation: Activation, params: Params, x: Array, keep: bool):
    """One group of members, feature-major; with `keep`, also the activations and slopes."""
    (w0, *ws), (b0, *bs) = params
    g, out, n_in = w0.shape
    act = (lambda z: _value_and_slope(activation, z)) if keep else (lambda z: (activation(z), None))
    # (g*out, in) @ (in, batch): the shared input makes the first layer one plain matmul.
    z = (w0.reshape(g * out, n_in) @ x.T).reshape(g, out, -1) + b0[:, :, None]
    h, s = act(z)
    hs, ss = [h], [s]
    for w, b in zip(ws[:-1], bs[:-1], strict=True):
        h, s = act(jnp.matmul(w, h) + b[:, :, None])
        hs.append(h)
        ss.append(s)
    q = jnp.einsum("gi,gib->gb", ws[-1][:, 0, :], h) + bs[-1]
    return (q, (tuple(hs), tuple(ss))) if keep else (q, None)


def _transposed(w: Array) -> Array:
    """`w` with its last two axes swapped, in memory. On a CPU the barrier keeps XLA from folding
    the transpose back into the matmul as a transposed left operand (the slow case); elsewhere the
    matmul takes the transposed operand directly."""
    t = jnp.swapaxes(w, -1, -2)
    return jax.lax.optimization_barrier(t) if jax.default_backend() == "cpu" else t


def _group_backward(params: Params, saved, x: Array, dq: Array, need_x: bool = True):
    (w0, *ws), _ = params
    hs, ss = saved
    g, out, n_in = w0.shape
    dws = [jnp.einsum("gb,gib->gi", dq, hs[-1])[:, None, :]]
    dbs = [jnp.sum(dq, axis=-1, keepdims=True)]
    dh = ws[-1][:, 0, :, None] * dq[:, None, :]  # W_out^T dq: an outer product per member
    for j in range(len(ws) - 2, -1, -1):
        dz = dh * ss[j + 1]
        dws.append(jnp.matmul(dz, jnp.swapaxes(hs[j], -1, -2)))  # dz h^T
        dbs.append(jnp.sum(dz, axis=-1))
        dh = jnp.matmul(_transposed(ws[j]), dz)  # W^T dz
    dz = (dh * ss[0]).reshape(g * out, -1)
    dws.append((dz @ x).reshape(g, out, n_in))
    dbs.append(jnp.sum(dz, axis=-1).reshape(g, out))
    dx = dz.T @ w0.reshape(g * out, n_in) if need_x else None
    return tuple(dws[::-1]), tuple(dbs[::-1]), dx


def _grouped(fn, groups: int, *trees):
    """`fn` on each of `groups` groups of members (a sequential `lax.map`), results merged back
    along the member axis; `groups == 1` calls `fn` once on everything."""
    if groups == 1:
        return fn(*trees)
    split = lambda a: a.reshape(groups, a.shape[0] // groups, *a.shape[1:])
    out = jax.lax.map(lambda args: fn(*args), jax.tree.map(split, trees))
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def ensemble_mlp(
    activation: Activation,
    groups: int,
    weights: tuple[Array, ...],
    biases: tuple[Array, ...],
    x: Float[Array, "batch in"],
) -> Float[Array, "members batch"]:
    r"""$Q_m(x_i)$ of the ensemble's MLP for every member $m$ and row $i$, as
    `ensemble_mlp_reference` (same function, same gradients up to float rounding) with a
    hand-written reverse-mode rule (see the module's introduction). `groups` (a divisor of the
    number of members) sets how many groups of members are processed one after the other.

    Reverse mode (`jax.grad`, `jax.vjp`) and `jax.vmap` work; forward mode (`jax.jvp`,
    `jax.jacfwd`, Hessians) does not: use `AutodiffBackward` for those.
    """
    return _grouped(
        lambda p: _group_forward(activation, p, x, keep=False)[0], groups, (weights, biases)
    )


def _ensemble_mlp_fwd(activation, groups, weights, biases, x):
    q, saved = _grouped(
        lambda p: _group_forward(activation, p, x, keep=True), groups, (weights, biases)
    )
    return q, (weights, biases, x, saved)


def _ensemble_mlp_bwd(activation, groups, residuals, dq):
    weights, biases, x, saved = residuals

    def group(params, saved, dq):
        dws, dbs, dx = _group_backward(params, saved, x, dq)
        return dws, dbs, dx[None]  # a member-like axis, summed over groups below

    dws, dbs, dx = _grouped(group, groups, (weights, biases), saved, dq)
    return dws, dbs, jnp.sum(dx, axis=0)


ensemble_mlp.defvjp(_ensemble_mlp_fwd, _ensemble_mlp_bwd)


def _loss_weights(loss: RegressionLoss, like: Array) -> Array:
    r"""$W = \partial \ell / \partial E$ of a loss linear in the squared errors $E$ (a constant,
    read off by transposing $\ell$); a clear error for a loss that is not linear."""
    try:
        (weights,) = jax.linear_transpose(loss, jax.ShapeDtypeStruct(like.shape, like.dtype))(
            jnp.ones((), like.dtype)
        )
    except Exception as e:  # JAX raises various types for a non-linear function
        raise ValueError(
            "FusedBackward: the critic loss must be linear in the squared errors (a weighted "
            "sum of them, as a mean squared error is); differentiate other losses with "
            f"AutodiffBackward(). ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    return weights


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def fused_regression_loss(
    activation: Activation,
    loss: RegressionLoss,
    groups: int,
    weights: tuple[Array, ...],
    biases: tuple[Array, ...],
    x: Float[Array, "batch in"],
    targets: Float[Array, "members batch"],
) -> tuple[Float[Array, ""], Float[Array, "members batch"]]:
    r"""`(loss(E), Q)` with $E_{mi} = (Q_m(x_i) - y_{mi})^2$, for a loss linear in $E$; its
    reverse-mode rule gives the gradient with respect to the parameters (`x` and `targets` are
    data: their cotangents are zero, callers stop their gradients).

    Under differentiation, each group's forward pass is followed at once by its backward pass
    from $\partial L / \partial Q = 2 W \odot (Q - y)$, $W = \partial \ell / \partial E$ (a
    constant since $\ell$ is linear), so no group's activations are stored for later; the
    parameters' gradient is the residual that the backward rule scales by the cotangent. The
    same numbers as differentiating `loss((ensemble_mlp_reference(...) - targets) ** 2)`.
    """
    q = ensemble_mlp(activation, groups, weights, biases, x)
    return loss((q - targets) ** 2), q


def _fused_regression_fwd(activation, loss, groups, weights, biases, x, targets):
    scale = 2 * _loss_weights(loss, targets)

    def group(params, y, scale):
        q, saved = _group_forward(activation, params, x, keep=True)
        r = q - y
        dws, dbs, _ = _group_backward(params, saved, x, scale * r, need_x=False)
        return r * r, q, dws, dbs

    errors, q, dws, dbs = _grouped(group, groups, (weights, biases), targets, scale)
    return (loss(errors), q), (dws, dbs, jnp.zeros_like(x), jnp.zeros_like(targets))


def _fused_regression_bwd(activation, loss, groups, residuals, cotangents):
    dws, dbs, zero_x, zero_targets = residuals
    # Q is an auxiliary output (metrics): its cotangent is not propagated.
    ct, _ = cotangents
    scaled = lambda grads: tuple(ct.astype(g.dtype) * g for g in grads)
    return scaled(dws), scaled(dbs), zero_x, zero_targets


fused_regression_loss.defvjp(_fused_regression_fwd, _fused_regression_bwd)


class FusedBackward(AbstractCriticBackward):
    """The hand-written kernel of this module: the Q-ensemble's values through
    `ensemble_mlp` and its regression loss through `fused_regression_loss`, members in
    cache-sized groups on a CPU. Reverse mode and `vmap` only (no `jax.jvp`), and a regression
    loss linear in the squared errors; `AutodiffBackward` has neither restriction."""

    def values(self, activation, weights, biases, x):
        return ensemble_mlp(activation, _groups_for(weights, x), weights, biases, x)

    def regression_loss(self, activation, loss, weights, biases, x, targets):
        groups = _groups_for(weights, x)
        return fused_regression_loss(activation, loss, groups, weights, biases, x, targets)
