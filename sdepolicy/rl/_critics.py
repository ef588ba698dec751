r"""A Q-ensemble: $M$ independent critics $Q_m(s, a)$ stored as one module.

Every parameter carries a leading member axis, so the forward pass of all $M$ critics is one
batched matmul per layer rather than $M$ calls; this is what makes the paper's $M = 64$
affordable.

How the ensemble is differentiated is an object of its own, chosen when the ensemble is built,
as diffrax chooses an `adjoint`: `AutodiffBackward` (the default) differentiates the plain
code below with JAX; `sdepolicy.rl.FusedBackward` (`sdepolicy/rl/_fused_critic.py`) is the
hand-written kernel that computes the same values and gradients faster on a CPU. Both serve the
two things an agent asks of its critics: their values (`QEnsemble.__call__`) and the value
and gradient of the critics' regression loss, written by the agent as a function of the squared
TD errors (`QEnsemble.regression_loss`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._activations import mish
from .._typing import PRNGKey

#: The critics' regression loss as the agent writes it: the squared TD errors
#: $(Q_m(s_i, a_i) - y_{mi})^2$, shape `(members, batch)`, to a scalar.
RegressionLoss = Callable[[Float[Array, "members batch"]], Float[Array, ""]]
#: An elementwise activation, e.g. `mish` or `jax.nn.relu`.
Activation = Callable[[Array], Array]
Params = tuple[tuple[Array, ...], tuple[Array, ...]]


def _init_params(
    sizes: list[int], num_members: int, init: str, key: PRNGKey
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """Weights `(M, out, in)` and biases `(M, out)` of every layer, initialised as in the
    reference code (see `QEnsemble`)."""
    shapes = [((o, i), (o,)) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    total = sum(o * i + o for (o, i), _ in shapes)
    # One uniform draw for every parameter of every member, sliced afterwards: the same law as
    # layer-by-layer draws, but one random-number kernel for XLA to compile instead of two per
    # layer (their compilation dominates the time to build a small ensemble).
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


#: PyTorch's `nn.LayerNorm` epsilon, as the papers that put LayerNorm in critics use it.
LAYER_NORM_EPS = 1e-5


def _layer_norm(
    z: Float[Array, "members batch out"], scale: Float[Array, "members out"], offset
) -> Float[Array, "members batch out"]:
    """LayerNorm over the features of every row of every member, then each member's own affine
    map (`scale`, `offset`)."""
    mean = jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(z - mean), axis=-1, keepdims=True)
    normed = (z - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS)
    return normed * scale[:, None, :] + offset[:, None, :]


def ensemble_mlp_reference(
    activation: Activation,
    weights: tuple[Array, ...],
    biases: tuple[Array, ...],
    x: Float[Array, "batch in"] | Float[Array, "members batch in"],
    norms: tuple[tuple[Array, ...], tuple[Array, ...]] | None = None,
) -> Float[Array, "members batch"]:
    r"""The ensemble's MLP written plainly (batch-major activations, autodiff for derivatives):
    $h_1 = \sigma(W_0 x + b_0)$, $h_{j+1} = \sigma(W_j h_j + b_j)$, $Q = W_\text{out} h +
    b_\text{out}$ for every member, $\sigma$ = `activation`. The definition the fused kernel
    (`sdepolicy.rl.FusedBackward`) is tested against; works with every JAX transformation,
    forward mode included.

    With `norms = (scales, offsets)` (one `(M, out)` pair per hidden layer), every hidden
    layer is $h_{j+1} = \sigma(\operatorname{LN}(W_j h_j + b_j))$: LayerNorm over the layer's
    features, then the member's scale and offset (Linear, LayerNorm, activation, as Ball et al.,
    ICML 2023, and ReBRAC put it in their critics)."""
    (w0, *ws), (b0, *bs) = weights, biases
    scales, offsets = norms if norms is not None else ((None,) * len(ws), (None,) * len(ws))

    def layer(z, j):
        if norms is not None:
            z = _layer_norm(z, scales[j], offsets[j])
        return activation(z)

    # The input is shared by all members: one (b, in) x (M, out, in) contraction; or each
    # member has its own, `(M, batch, in)` (so a gradient in the input is per member).
    spec = "mbi,moi->mbo" if x.ndim == 3 else "bi,moi->mbo"
    h = layer(jnp.einsum(spec, x, w0) + b0[:, None, :], 0)
    for j, (w, b) in enumerate(zip(ws[:-1], bs[:-1], strict=True), start=1):
        h = layer(jnp.einsum("mbi,moi->mbo", h, w) + b[:, None, :], j)
    return jnp.einsum("mbi,mi->mb", h, ws[-1][:, 0, :]) + bs[-1]


def action_gradient_similarity(
    critic: QEnsemble,
    states: Float[Array, "batch obs"],
    actions: Float[Array, "batch act"],
) -> Float[Array, ""]:
    r"""EDAC's ensemble-diversity measure: the mean, over the batch, of the members' pairwise
    cosine similarities of their action gradients,

    $$\frac{1}{B}\sum_i \frac{1}{M - 1}\sum_{m \ne n} \langle \hat g_{mi}, \hat g_{ni}\rangle
    = \frac{1}{B}\sum_i \frac{\lVert\sum_m \hat g_{mi}\rVert^2 - M}{M - 1},\qquad
    \hat g_{mi} = \frac{\nabla_a Q_m(s_i, a_i)}{\lVert\nabla_a Q_m(s_i, a_i)\rVert},$$

    in $[-M/(M - 1), M]$ (proofs/ensemble_diversity.md): $M$ when every member's gradient points
    the same way (EDAC's normalisation, so that its weight means what EDAC's $\eta$ means).
    Added to the critics' loss with a weight (`critic_diversity`, an experimental option of
    `sdepolicy.rl.experimental`), it makes the members disagree about which way Q rises off the
    data's actions, so that their LCB penalises leaving them
    (An et al., 2021, "Uncertainty-based offline RL with diversified Q-ensemble"; docs/method.md
    §6.1). Computed on the plain MLP (`ensemble_mlp_reference`) whatever the ensemble's
    `backward`, so that it can be differentiated with respect to the parameters.

    With a one-dimensional action $\hat g = \pm 1$, so the measure is piecewise constant in
    the parameters: its gradient is zero (returned as such, not as the rounding noise of
    differentiating $x/|x|$), and the term changes nothing.
    """
    weights, biases = tuple(critic.weights), tuple(critic.biases)
    m = critic.num_members
    s = jnp.broadcast_to(jax.lax.stop_gradient(states), (m, *states.shape))

    def total_q(a):
        x = jnp.concatenate([s, a], axis=-1)
        return jnp.sum(
            ensemble_mlp_reference(critic.activation, weights, biases, x, critic.norms())
        )

    # Each member reads its own copy of the actions, and Q_m(s_i, a_i) depends on a_mi only,
    # so one backward pass of the sum gives every member's per-sample gradient: (M, batch, act).
    a = jnp.broadcast_to(jax.lax.stop_gradient(actions), (m, *actions.shape))
    g = jax.grad(total_q)(a)
    # Exact unit vectors (a zero gradient has none and counts as 0), not EDAC's g/(|g| + 1e-10):
    # the offset makes the measure depend on |g| where |g| is tiny, e.g. at the EDAC init.
    norm = jnp.linalg.norm(g, axis=-1, keepdims=True)
    g_hat = jnp.where(norm > 0, g / jnp.where(norm > 0, norm, 1.0), 0.0)
    total = jnp.sum(jnp.sum(g_hat, axis=0) ** 2, axis=-1)
    similarity = jnp.mean((total - m) / max(m - 1, 1))
    if actions.shape[-1] == 1:
        # Piecewise constant: its derivative is zero; differentiating x/|x| would only return
        # rounding noise, which Adam would turn into steps of a full learning rate.
        return jax.lax.stop_gradient(similarity)
    return similarity


class AbstractCriticBackward(eqx.Module):
    """How a `QEnsemble` computes, and is differentiated through, its two operations.

    Both methods are differentiable with respect to the parameters `(weights, biases)`;
    `values` also with respect to its input `x` (the actor's Q term differentiates through the
    action). Concrete classes: `AutodiffBackward` and `sdepolicy.rl.FusedBackward`.
    """

    @abc.abstractmethod
    def values(
        self,
        activation: Activation,
        weights: tuple[Array, ...],
        biases: tuple[Array, ...],
        x: Float[Array, "batch in"],
    ) -> Float[Array, "members batch"]:
        """$Q_m(x_i)$ for every member $m$ and row $i$ (see `ensemble_mlp_reference`)."""

    @abc.abstractmethod
    def regression_loss(
        self,
        activation: Activation,
        loss: RegressionLoss,
        weights: tuple[Array, ...],
        biases: tuple[Array, ...],
        x: Float[Array, "batch in"],
        targets: Float[Array, "members batch"],
    ) -> tuple[Float[Array, ""], Float[Array, "members batch"]]:
        """`(loss(E), Q)` with $E_{mi} = (Q_m(x_i) - y_{mi})^2$, differentiable in the
        parameters only (`x` and `targets` are data)."""


class AutodiffBackward(AbstractCriticBackward):
    """The plain code (`ensemble_mlp_reference`) differentiated by JAX: every JAX
    transformation works, forward mode included; the reference for the fused kernel."""

    def values(self, activation, weights, biases, x):
        return ensemble_mlp_reference(activation, weights, biases, x)

    def regression_loss(self, activation, loss, weights, biases, x, targets):
        q = ensemble_mlp_reference(activation, weights, biases, x)
        return loss((q - targets) ** 2), q


_AUTODIFF = AutodiffBackward()


class QEnsemble(eqx.Module):
    r"""$M$ critics $Q_m(s, a)$, each an MLP on $[s, a]$ with `depth` hidden layers of width
    `hidden`, with stacked parameters.

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
    - `activation`: the elementwise activation of the hidden layers (default
        `sdepolicy.policy.mish`, as the reference codes).
    - `backward`: an `AbstractCriticBackward`: `AutodiffBackward` (default) or
        `sdepolicy.rl.FusedBackward` (the hand-written kernel, faster; no forward mode). Both
        compute the same function and gradients.
    - `layer_norm`: LayerNorm in every hidden layer (`ensemble_mlp_reference`), with a
        learned scale (initialised to 1) and offset (0) per member and layer; differentiated
        by autodiff only (`AutodiffBackward`: the fused kernel does not have it).

    **Attributes:**

    - `weights`: per layer, an array `(M, out, in)`; the last layer has `out = 1`.
    - `biases`: per layer, an array `(M, out)`.
    - `norm_scales`, `norm_offsets`: with `layer_norm`, per hidden layer an array `(M, hidden)`;
        empty tuples otherwise.

    Member `m` is the MLP $h_0 = [s, a]$, $h_j = \sigma(W_j[m] h_{j-1} + b_j[m])$,
    $Q_m = W_\text{out}[m] h + b_\text{out}[m]$.
    """

    weights: tuple[Float[Array, "members out in"], ...]
    biases: tuple[Float[Array, "members out"], ...]
    norm_scales: tuple[Float[Array, "members hidden"], ...]
    norm_offsets: tuple[Float[Array, "members hidden"], ...]
    num_members: int = eqx.field(static=True)
    activation: Activation = eqx.field(static=True)
    backward: AbstractCriticBackward = eqx.field(static=True)

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
        activation: Activation = mish,
        backward: AbstractCriticBackward = _AUTODIFF,
        layer_norm: bool = False,
    ):
        if not isinstance(backward, AbstractCriticBackward):
            raise TypeError(
                "QEnsemble: `backward` must be an AbstractCriticBackward (AutodiffBackward() or "
                f"FusedBackward()), got {backward!r}."
            )
        if init not in ("edac", "default"):
            raise ValueError(f"QEnsemble: init must be 'edac' or 'default', got {init!r}.")
        if min(obs_dim + action_dim, num_members, hidden, depth) < 1:
            raise ValueError("QEnsemble: sizes, num_members and depth must be positive.")
        if layer_norm and not isinstance(backward, AutodiffBackward):
            raise ValueError(
                "QEnsemble: layer_norm=True is differentiated by autodiff only; pass "
                f"backward=AutodiffBackward() (got {type(backward).__name__})."
            )
        sizes = [obs_dim + action_dim] + [hidden] * depth + [1]
        self.weights, self.biases = _init_params(sizes, num_members, init, key)
        norm_shape = (num_members, hidden)
        self.norm_scales = tuple(jnp.ones(norm_shape) for _ in range(depth)) if layer_norm else ()
        self.norm_offsets = tuple(jnp.zeros(norm_shape) for _ in range(depth)) if layer_norm else ()
        self.num_members = num_members
        self.activation = activation
        self.backward = backward

    def __call__(
        self, states: Float[Array, "batch obs"], actions: Float[Array, "batch act"]
    ) -> Float[Array, "members batch"]:
        r"""$Q_m(s_i, a_i)$ for every member $m$ and row $i$.

        **Returns:** an array of shape `(num_members, batch)`.
        """
        x = jnp.concatenate([states, actions], axis=-1)
        weights, biases = tuple(self.weights), tuple(self.biases)
        if self.norm_scales:
            return ensemble_mlp_reference(self.activation, weights, biases, x, self.norms())
        return self.backward.values(self.activation, weights, biases, x)

    def norms(self) -> tuple[tuple[Array, ...], tuple[Array, ...]] | None:
        """`(scales, offsets)` of the hidden layers' LayerNorms, or None without them."""
        return (tuple(self.norm_scales), tuple(self.norm_offsets)) if self.norm_scales else None

    def regression_loss(
        self,
        states: Float[Array, "batch obs"],
        actions: Float[Array, "batch act"],
        targets: Float[Array, "*members batch"],
        loss: RegressionLoss,
    ) -> tuple[Float[Array, ""], Float[Array, "members batch"]]:
        r"""The critics' regression loss $L = \ell(E)$ on the squared TD errors
        $E_{mi} = (Q_m(s_i, a_i) - y_{mi})^2$, and the values $Q$.

        Differentiate it with respect to the ensemble (`eqx.filter_value_and_grad(...,
        has_aux=True)`, $Q$ the auxiliary output): states, actions and targets are data
        (their gradient is stopped). With `FusedBackward`, $\ell$ must be linear in $E$ (a
        weighted sum, as every mean squared error is).

        **Arguments:**

        - `states`, `actions`: the batch.
        - `targets`: $y$, per member `(members, batch)` or shared `(batch,)` (broadcast).
        - `loss`: $\ell$, the agent's reduction of the squared errors, e.g. `jnp.mean` for the
            MSE over batch $\times$ members.

        **Returns:** `(loss, q)`.
        """
        x = jax.lax.stop_gradient(jnp.concatenate([states, actions], axis=-1))
        y = jax.lax.stop_gradient(
            jnp.broadcast_to(targets, (self.num_members, x.shape[0])).astype(x.dtype)
        )
        weights, biases = tuple(self.weights), tuple(self.biases)
        if self.norm_scales:
            q = ensemble_mlp_reference(self.activation, weights, biases, x, self.norms())
            return loss((q - y) ** 2), q
        return self.backward.regression_loss(self.activation, loss, weights, biases, x, y)
