r"""A diagonal Gaussian: what the closed forms of the SDE return."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._typing import PRNGKey, RealScalarLike


class DiagonalGaussian(eqx.Module):
    r"""$\mathcal N(m, \operatorname{diag}(v))$ over all elements of `mean`.

    `variance` broadcasts against `mean` (a scalar variance is the isotropic case $vI$).
    `log_prob` and `entropy` sum over every element: the event is the whole array. For a batch of
    independent Gaussians, `jax.vmap` over the leading axis (or use `log_prob_elementwise`).

    **Attributes:**

    - `mean`: the mean $m$.
    - `variance`: the variance $v$, broadcastable to `mean`.
    """

    mean: Float[Array, "*shape"]
    variance: Float[Array, "*vshape"]

    def __init__(
        self,
        mean: Float[ArrayLike, "*shape"] | Sequence[Any],
        variance: Float[ArrayLike, "*vshape"] | RealScalarLike | Sequence[Any],
    ):
        mean = jnp.asarray(mean)
        if not jnp.issubdtype(mean.dtype, jnp.floating):
            mean = mean.astype(float)
        # A Python or numpy scalar variance takes the mean's dtype (under strict promotion a
        # float64 default scalar could not meet a float32 mean).
        if isinstance(variance, jax.Array):
            var = variance
        else:
            var = jnp.asarray(np.asarray(variance), dtype=mean.dtype)
        self.mean = mean
        self.variance = var

    @property
    def std(self) -> Float[Array, "*vshape"]:
        return jnp.sqrt(self.variance)

    def sample(self, key: PRNGKey) -> Float[Array, "*shape"]:
        r"""$m + \sqrt v\,z$, $z \sim \mathcal N(0, I)$."""
        z = jax.random.normal(key, jnp.shape(self.mean), jnp.result_type(self.mean))
        return self.mean + jnp.sqrt(self.variance) * z

    def log_prob_elementwise(
        self, x: Float[ArrayLike, "*shape"] | Sequence[Any]
    ) -> Float[Array, "*shape"]:
        """Per-element log densities (their sum is `log_prob`)."""
        x = jnp.asarray(x, dtype=jnp.result_type(self.mean))
        var = jnp.broadcast_to(self.variance, jnp.shape(self.mean))
        return -0.5 * ((x - self.mean) ** 2 / var + jnp.log(2 * math.pi * var))

    def log_prob(self, x: Float[ArrayLike, "*shape"] | Sequence[Any]) -> Float[Array, ""]:
        r"""$\log \mathcal N(x; m, \operatorname{diag} v)$, summed over all elements."""
        return jnp.sum(self.log_prob_elementwise(x))

    def entropy(self) -> Float[Array, ""]:
        r"""$\tfrac12 \sum_i \log(2\pi e\, v_i)$."""
        var = jnp.broadcast_to(self.variance, jnp.shape(self.mean))
        return 0.5 * jnp.sum(jnp.log(2 * math.pi * math.e * var))
