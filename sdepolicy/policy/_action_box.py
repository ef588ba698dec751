r"""The environment's action box and its affine map onto the unit box $[-1, 1]^d$.

Diffusion policies work in the unit box (their clipping of $\hat x_0$ and of the output is to
$[-1, 1]$); environments need not (Pendulum's box is $[-2, 2]$, some are asymmetric).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


class ActionBox(eqx.Module):
    r"""A box $[l, h] = \prod_i [l_i, h_i]$ with $l_i < h_i$ finite, and the affine bijection

    $$u = 2\,\frac{a - l}{h - l} - 1 \in [-1, 1]^d, \qquad a = l + \frac{u + 1}{2}\,(h - l).$$

    **Arguments:**

    - `low`, `high`: the bounds, arrays (or sequences of floats) of shape `(action,)`.
    """

    low: Float[Array, " action"]
    high: Float[Array, " action"]

    def __init__(
        self,
        low: Float[ArrayLike, " action"] | Sequence[float],
        high: Float[ArrayLike, " action"] | Sequence[float],
    ):
        self.low = jnp.asarray(low, dtype=float)
        self.high = jnp.asarray(high, dtype=float)

    def __check_init__(self):
        if self.low.ndim != 1 or self.low.shape != self.high.shape:
            raise ValueError(
                "ActionBox: `low` and `high` must be 1-D with the same shape, got "
                f"{self.low.shape} and {self.high.shape}."
            )
        if isinstance(self.low, jax.core.Tracer) or isinstance(self.high, jax.core.Tracer):
            return  # traced (e.g. rebuilt inside jit): values cannot be checked
        low, high = np.asarray(self.low), np.asarray(self.high)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("ActionBox: bounds must be finite.")
        if not np.all(low < high):
            raise ValueError(f"ActionBox: need low < high elementwise, got {low} and {high}.")

    @property
    def dim(self) -> int:
        return self.low.shape[0]

    def to_unit(self, a: Float[Array, "*batch action"]) -> Float[Array, "*batch action"]:
        r"""Map environment actions to the unit box: $u = 2(a - l)/(h - l) - 1$."""
        low, high = self._bounds_like(a)
        return 2 * (a - low) / (high - low) - 1

    def from_unit(self, u: Float[Array, "*batch action"]) -> Float[Array, "*batch action"]:
        r"""Map unit-box actions to the environment box: $a = l + (u + 1)(h - l)/2$."""
        low, high = self._bounds_like(u)
        return low + (u + 1) * (0.5 * (high - low))

    def clip(self, a: Float[Array, "*batch action"]) -> Float[Array, "*batch action"]:
        """Clip environment actions into the box."""
        return jnp.clip(a, *self._bounds_like(a))

    def _bounds_like(self, x: Array) -> tuple[Array, Array]:
        # Explicit broadcasting keeps batched inputs legal under strict rank promotion.
        low = jnp.broadcast_to(self.low.astype(x.dtype), x.shape)
        high = jnp.broadcast_to(self.high.astype(x.dtype), x.shape)
        return low, high
