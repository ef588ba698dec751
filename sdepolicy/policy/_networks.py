r"""The denoiser network of ER-DP-QE and Diffusion-QL (docs/method.md §6).

Architecture (both reference codes): a sinusoidal embedding of the step index (16) →
Linear(16, 32) → Mish → Linear(32, 16); then $[x_t, \text{emb}, s]$ → `depth` × (Linear(hidden),
Mish) → Linear(hidden, action). Weights and biases start uniform in $\pm 1/\sqrt{\text{fan\_in}}$,
which is both PyTorch's and equinox's default `Linear` initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._activations import mish
from .._typing import PRNGKey


class SinusoidalTimeEmbedding(eqx.Module):
    r"""The sinusoidal embedding of a (real-valued) step index used by Diffusion-QL and ER-DP-QE.

    With $h = \text{dim}/2$ and frequencies $\omega_i = \exp(-\log(10^4)\, i/(h - 1))$,
    $i = 0, \dots, h-1$:

    $$\text{emb}(k) = [\sin(k\omega_0), \dots, \sin(k\omega_{h-1}), \cos(k\omega_0), \dots,
    \cos(k\omega_{h-1})].$$

    **Arguments:**

    - `dim`: the embedding size, even and at least 4 (so that $h - 1 > 0$).
    """

    dim: int = eqx.field(static=True)

    def __check_init__(self):
        if self.dim < 4 or self.dim % 2 != 0:
            raise ValueError(
                f"SinusoidalTimeEmbedding: `dim` must be even and >= 4, got {self.dim}."
            )

    def __call__(self, k: Float[Array, ""]) -> Float[Array, " embed"]:
        """Embed one scalar step index `k`; returns a vector of size `dim`."""
        half = self.dim // 2
        scale = math.log(10000.0) / (half - 1)
        freqs = jnp.exp(-scale * jnp.arange(half, dtype=k.dtype))
        arg = k * freqs
        return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)])


class Denoiser(eqx.Module):
    r"""The noise predictor $\varepsilon_\phi(k, x_t, s)$: an MLP with a time embedding
    (docs/method.md §6), called in diffrax's order `denoiser(t, x_t, state)`.

    $$\text{emb} = W_2\,\operatorname{mish}(W_1\,\text{sin-emb}(k) + b_1) + b_2, \qquad
    h_0 = [x_t, \text{emb}, s], \qquad h_{j} = \operatorname{mish}(A_j h_{j-1} + c_j),\
    j = 1..\text{depth},$$

    output $A_\text{out} h_\text{depth} + c_\text{out}$. One sample per call: `jax.vmap` for
    batches.

    **Arguments:**

    - `state_dim`, `action_dim`: sizes of $s$ and $x_t$.
    - `key`: PRNG key for the initialisation (keyword only).
    - `hidden`: width of the hidden layers (default 256).
    - `depth`: number of hidden (Linear, Mish) layers (default 3).
    - `time_dim`: size of the time embedding (default 16; the first time layer has twice that).
    - `activation`: the elementwise activation $\sigma$ written `mish` above (default
        `mish`, the reference codes'; as `eqx.nn.MLP`'s `activation`).
    """

    time_embedding: SinusoidalTimeEmbedding
    time_layers: tuple[eqx.nn.Linear, eqx.nn.Linear]
    hidden_layers: tuple[eqx.nn.Linear, ...]
    output_layer: eqx.nn.Linear
    state_dim: int = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        key: PRNGKey,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 16,
        activation: Callable[[Array], Array] = mish,
    ):
        if min(state_dim, action_dim, hidden, depth) < 1:
            raise ValueError("Denoiser: state_dim, action_dim, hidden and depth must be >= 1.")
        keys = jax.random.split(key, depth + 3)
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        self.time_layers = (
            eqx.nn.Linear(time_dim, 2 * time_dim, key=keys[0]),
            eqx.nn.Linear(2 * time_dim, time_dim, key=keys[1]),
        )
        widths = [action_dim + time_dim + state_dim] + [hidden] * depth
        self.hidden_layers = tuple(
            eqx.nn.Linear(widths[j], widths[j + 1], key=keys[2 + j]) for j in range(depth)
        )
        self.output_layer = eqx.nn.Linear(hidden, action_dim, key=keys[-1])
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.activation = activation

    def __call__(
        self,
        t: Float[Array, ""],
        x_t: Float[Array, " action"],
        state: Float[Array, " state"],
    ) -> Float[Array, " action"]:
        r"""Predict the noise in `x_t`.

        **Arguments:**

        - `t`: the network's time input, which is the reference code's step index
            $k = \tau - 1$ for diffusion time $\tau$ (so $\tau = 1..T$ enters as $0..T-1$),
            as a float scalar. `DiffusionPolicy.predict_noise` takes the diffusion time
            and does the shift.
        - `x_t`: the noisy action.
        - `state`: the RL state $s$ (the `args` of the calling convention).

        **Returns:** $\hat\varepsilon$, the same shape as `x_t`.
        """
        first, second = self.time_layers
        emb = second(self.activation(first(self.time_embedding(t))))
        h = jnp.concatenate([x_t, emb, state])
        for layer in self.hidden_layers:
            h = self.activation(layer(h))
        return self.output_layer(h)
