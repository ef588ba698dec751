r"""Pessimistic aggregates of a critic ensemble's values: the lower confidence bound and the
minimum over members (docs/method.md §6.3)."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import RealScalarLike

#: The pessimistic aggregates by name.
Aggregate = Literal["lcb", "min"]


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
    """Pessimistic aggregate of ensemble values: `how` is `"lcb"` (`lcb`) or `"min"`
    (`ensemble_min`)."""
    if how == "lcb":
        return lcb(q, lcb_beta)
    if how == "min":
        return ensemble_min(q)
    raise ValueError(f"aggregate_q: `how` must be 'lcb' or 'min', got {how!r}.")
