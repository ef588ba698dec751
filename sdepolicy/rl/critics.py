r"""A Q-ensemble: $M$ independent critics $Q_m(s, a)$ stored as one module.

Every parameter carries a leading member axis, so the forward pass of all $M$ critics is one
batched matmul per layer rather than $M$ calls; this is what makes the paper's $M = 64$ affordable.

The ensemble's MLP has a hand-written reverse-mode rule ([`ensemble_mlp`][]), the same function
and the same derivatives as differentiating the straightforward code ([`ensemble_mlp_reference`][],
pinned to it by `tests/rl/test_critics.py`), arranged for speed on a CPU (docs/method.md §11,
`benchmarks/`):

- activations are kept feature-major, `(members, features, batch)`, so that with the weights'
  `(members, out, in)` layout every forward and weight-gradient matmul is a plain batched matmul
  (no transposed left operand, which this CPU's matmul kernels run at about half speed), and the
  input-gradient matmul uses an explicitly transposed weight;
- Mish's derivative is computed with its value in the forward pass ([`mish_and_slope`][]) and
  kept, so the backward pass is one multiplication per layer;
- on a CPU, the members are processed in groups (8 at a time for the paper's sizes) so that one
  group's activations stay in cache: a batched matmul of `8 x [256, 256]` runs at about 1.4x the
  rate of `64 x [256, 256]` on the 2-core machine of `benchmarks/README.md`;
- the critics' own regression loss, a squared error separable over members, has its value and
  gradient computed group by group in one pass ([`QEnsemble.squared_error_and_grad`][]): each
  group's forward pass is followed at once by its backward pass while its activations are still
  in cache, instead of storing every group's activations for a later backward pass.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey, RealScalarLike
from ..policy import mish, mish_and_slope

# Members per group on a CPU: the largest divisor of M whose activations of one layer,
# `(group, hidden, batch)` float32, fit in this many bytes (about L2-sized; 8 members at the
# paper's hidden 256 and batch 256).
_CPU_GROUP_BYTES = 2 * 2**20


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
        # "default" is nn.Linear's init: weight and bias ~ U(±1/sqrt(fan_in)). The reference
        # code's ensemble stores each weight as (in, out) and calls kaiming_uniform_(a=sqrt(5)),
        # for which PyTorch takes the fan-in from the tensor's second axis: the *output* width.
        # So under "edac" every weight layer, the first included, is U(±1/sqrt(fan_out))
        # (docs/method.md §6.1); its biases are all overwritten below.
        bound = 1.0 / math.sqrt(fan_out if init == "edac" else fan_in)
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


Params = tuple[tuple[Array, ...], tuple[Array, ...]]


def ensemble_mlp_reference(
    weights: tuple[Array, ...], biases: tuple[Array, ...], x: Float[Array, "batch in"]
) -> Float[Array, "members batch"]:
    r"""The ensemble's MLP written plainly (batch-major activations, autodiff for derivatives):
    $h_1 = \operatorname{mish}(W_0 x + b_0)$, $h_{j+1} = \operatorname{mish}(W_j h_j + b_j)$,
    $Q = W_\text{out} h + b_\text{out}$ for every member. The reference [`ensemble_mlp`][] is
    tested against; works with every JAX transformation, forward-mode included."""
    (w0, *ws), (b0, *bs) = weights, biases
    # The input is shared by all members: one (b, in) x (M, out, in) contraction.
    h = mish(jnp.einsum("bi,moi->mbo", x, w0) + b0[:, None, :])
    for w, b in zip(ws[:-1], bs[:-1], strict=True):
        h = mish(jnp.einsum("mbi,moi->mbo", h, w) + b[:, None, :])
    return jnp.einsum("mbi,mi->mb", h, ws[-1][:, 0, :]) + bs[-1]


def _group_forward(params: Params, x: Array, keep: bool):
    """One group of members, feature-major; with `keep`, also the activations and slopes."""
    (w0, *ws), (b0, *bs) = params
    g, out, n_in = w0.shape
    # (g*out, in) @ (in, batch): the shared input makes the first layer one plain matmul.
    z = (w0.reshape(g * out, n_in) @ x.T).reshape(g, out, -1) + b0[:, :, None]
    h, s = mish_and_slope(z)
    hs, ss = [h], [s]
    for w, b in zip(ws[:-1], bs[:-1], strict=True):
        h, s = mish_and_slope(jnp.matmul(w, h) + b[:, :, None])
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


def _group_backward(params: Params, saved, x: Array, dq: Array):
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
    dx = dz.T @ w0.reshape(g * out, n_in)
    return tuple(dws[::-1]), tuple(dbs[::-1]), dx


def _grouped(fn, groups: int, *trees):
    """`fn` on each of `groups` groups of members (a sequential `lax.map`), results merged back
    along the member axis; `groups == 1` calls `fn` once on everything."""
    if groups == 1:
        return fn(*trees)
    split = lambda a: a.reshape(groups, a.shape[0] // groups, *a.shape[1:])
    out = jax.lax.map(lambda args: fn(*args), jax.tree.map(split, trees))
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def ensemble_mlp(
    weights: tuple[Array, ...], biases: tuple[Array, ...], x: Float[Array, "batch in"], groups: int
) -> Float[Array, "members batch"]:
    r"""$Q_m(x_i)$ of the ensemble's MLP for every member $m$ and row $i$, as
    [`ensemble_mlp_reference`][] (same function, same gradients up to float rounding) with a
    hand-written reverse-mode rule (see the module's introduction). `groups` (a divisor of the
    number of members) sets how many groups of members are processed one after the other.

    Reverse mode (`jax.grad`, `jax.vjp`) and `jax.vmap` work; forward mode (`jax.jvp`,
    `jax.jacfwd`, Hessians) does not: use [`ensemble_mlp_reference`][] (`QEnsemble(...,
    backward="autodiff")`) for those.
    """
    return _grouped(lambda p: _group_forward(p, x, keep=False)[0], groups, (weights, biases))


def _ensemble_mlp_fwd(weights, biases, x, groups):
    q, saved = _grouped(lambda p: _group_forward(p, x, keep=True), groups, (weights, biases))
    return q, (weights, biases, x, saved)


def _ensemble_mlp_bwd(groups, residuals, dq):
    weights, biases, x, saved = residuals

    def group(params, saved, dq):
        dws, dbs, dx = _group_backward(params, saved, x, dq)
        return dws, dbs, dx[None]  # a member-like axis, summed over groups below

    dws, dbs, dx = _grouped(group, groups, (weights, biases), saved, dq)
    return dws, dbs, jnp.sum(dx, axis=0)


ensemble_mlp.defvjp(_ensemble_mlp_fwd, _ensemble_mlp_bwd)


def ensemble_squared_error_and_grad(
    weights: tuple[Array, ...],
    biases: tuple[Array, ...],
    x: Float[Array, "batch in"],
    targets: Float[Array, "members batch"],
    scale: RealScalarLike,
    groups: int,
) -> tuple[Float[Array, ""], Float[Array, "members batch"], Params]:
    r"""$L = \text{scale}\sum_{m,i}(Q_m(x_i) - y_{mi})^2$, $Q$ and $\partial L/\partial$(weights,
    biases), one group of members at a time: each group's forward pass is followed at once by
    its backward pass (from $\partial L/\partial Q = 2\,\text{scale}\,(Q - y)$), so no group's
    activations are stored for later. The same numbers as differentiating
    `scale * sum((ensemble_mlp_reference(...) - targets) ** 2)`.

    **Returns:** `(loss, q, (weight_grads, bias_grads))`.
    """

    def group(params, y):
        q, saved = _group_forward(params, x, keep=True)
        r = q - y
        dws, dbs, _ = _group_backward(params, saved, x, (2 * scale) * r)
        return jnp.sum(r * r)[None], q, dws, dbs

    sq, q, dws, dbs = _grouped(group, groups, (weights, biases), targets)
    return scale * jnp.sum(sq), q, (dws, dbs)


def member_groups(num_members: int, hidden: int, batch: int) -> int:
    """How many groups [`QEnsemble`][] splits its members into on this backend: on a CPU, the
    fewest groups whose per-layer activations fit about 2 MiB; elsewhere (GPUs), one group."""
    if jax.default_backend() != "cpu":
        return 1
    per_member = 4 * hidden * max(batch, 1)
    size = max(1, min(num_members, _CPU_GROUP_BYTES // per_member))
    while num_members % size:
        size -= 1
    return num_members // size


class QEnsemble(eqx.Module):
    r"""$M$ critics $Q_m(s, a)$, each an MLP on $[s, a]$ with `depth` hidden layers of width
    `hidden` and Mish activations, with stacked parameters.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of $s$ and $a$.
    - `num_members`: $M$ (the paper: 64; Diffusion-QL's two critics: 2).
    - `hidden`, `depth`: width and number of hidden layers (the paper: 256, 3).
    - `init`: `"edac"` (the ER-DP-QE reference code's: every weight layer, the first
        included, $\sim U(\pm 1/\sqrt{\text{fan\_out}})$, because it stores weights as
        `(in, out)` and PyTorch's `kaiming_uniform_` reads the fan-in from the second axis; then
        every hidden bias $0.1$ and the output layer's weight and bias
        $\sim U(-3\cdot10^{-3}, 3\cdot10^{-3})$; `docs/method.md §6.1`) or `"default"`
        (`nn.Linear`'s default, weight and bias $\sim U(\pm 1/\sqrt{\text{fan\_in}})$:
        Diffusion-QL's critics).
    - `key`: PRNG key; members are independent draws.
    - `backward`: `"fused"` (default: [`ensemble_mlp`][], the hand-written backward pass, grouped
        members on a CPU) or `"autodiff"` ([`ensemble_mlp_reference`][]: slower, but supports
        forward-mode differentiation). Both compute the same function and gradients.

    **Attributes:**

    - `weights`: per layer, an array `(M, out, in)`; the last layer has `out = 1`.
    - `biases`: per layer, an array `(M, out)`.

    Member `m` is the MLP $h_0 = [s, a]$, $h_j = \operatorname{mish}(W_j[m] h_{j-1} + b_j[m])$,
    $Q_m = W_\text{out}[m] h + b_\text{out}[m]$.
    """

    weights: tuple[Float[Array, "members out in"], ...]
    biases: tuple[Float[Array, "members out"], ...]
    num_members: int = eqx.field(static=True)
    backward: str = eqx.field(static=True)

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
        backward: str = "fused",
    ):
        if backward not in ("fused", "autodiff"):
            raise ValueError(
                f"QEnsemble: backward must be 'fused' or 'autodiff', got {backward!r}."
            )
        if init not in ("edac", "default"):
            raise ValueError(f"QEnsemble: init must be 'edac' or 'default', got {init!r}.")
        if min(obs_dim + action_dim, num_members, hidden, depth) < 1:
            raise ValueError("QEnsemble: sizes, num_members and depth must be positive.")
        sizes = [obs_dim + action_dim] + [hidden] * depth + [1]
        self.weights, self.biases = _init_params(sizes, num_members, init, key)
        self.num_members = num_members
        self.backward = backward

    def __call__(
        self, states: Float[Array, "batch obs"], actions: Float[Array, "batch act"]
    ) -> Float[Array, "members batch"]:
        r"""$Q_m(s_i, a_i)$ for every member $m$ and row $i$.

        **Returns:** an array of shape `(num_members, batch)`.
        """
        x, weights, biases, groups = self._inputs(states, actions)
        if self.backward == "autodiff":
            return ensemble_mlp_reference(weights, biases, x)
        return ensemble_mlp(weights, biases, x, groups)

    def _inputs(self, states, actions):
        """`[s, a]`, the parameters as tuples, and the member group count for this batch."""
        x = jnp.concatenate([states, actions], axis=-1)
        hidden = max(w.shape[-2] for w in self.weights)
        groups = member_groups(self.num_members, hidden, x.shape[0])
        return x, tuple(self.weights), tuple(self.biases), groups

    def squared_error_and_grad(
        self,
        states: Float[Array, "batch obs"],
        actions: Float[Array, "batch act"],
        targets: Float[Array, "*members batch"],
        scale: RealScalarLike,
    ) -> tuple[Float[Array, ""], Float[Array, "members batch"], "QEnsemble"]:
        r"""The critics' regression loss $L = \text{scale}\sum_{m,i}(Q_m(s_i, a_i) - y_{mi})^2$, the
        values $Q$ and $\nabla L$ with respect to the parameters, in one call: what
        `eqx.filter_value_and_grad` of that loss returns (with $Q$ as its auxiliary output), and
        with `backward="fused"` computed one group of members at a time
        ([`ensemble_squared_error_and_grad`][]).

        **Arguments:**

        - `states`, `actions`: the batch.
        - `targets`: $y$, per member `(members, batch)` or shared `(batch,)` (broadcast); treated
            as constants.
        - `scale`: e.g. `1 / (members * batch)` for the mean over members and rows.

        **Returns:** `(loss, q, grads)`, `grads` a `QEnsemble` holding the gradients.
        """
        x, weights, biases, groups = self._inputs(states, actions)
        y = jax.lax.stop_gradient(
            jnp.broadcast_to(targets, (self.num_members, x.shape[0])).astype(x.dtype)
        )
        if self.backward == "autodiff":

            def loss(ens):
                q = ens(states, actions)
                return scale * jnp.sum((q - y) ** 2), q

            (value, q), grads = eqx.filter_value_and_grad(loss, has_aux=True)(self)
            return value, q, grads
        value, q, (dws, dbs) = ensemble_squared_error_and_grad(weights, biases, x, y, scale, groups)
        grads = eqx.tree_at(lambda e: (e.weights, e.biases), self, (dws, dbs))
        return value, q, grads


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
