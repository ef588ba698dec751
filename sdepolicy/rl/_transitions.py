"""A dataset of transitions held on device, and batch sampling inside compiled code."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey


class Transitions(eqx.Module):
    r"""Transitions $(s, a, r, s', \text{terminal})$ as stacked arrays (a pytree).

    `terminals` is 1.0 where the episode *terminated* at $s'$ (the MDP ended: no bootstrap) and
    0.0 otherwise; a time-limit truncation is not a terminal. Actions are in the environment's
    action box. Used both as a whole dataset and as a batch.
    """

    observations: Float[Array, "n obs"]
    actions: Float[Array, "n act"]
    rewards: Float[Array, " n"]
    next_observations: Float[Array, "n obs"]
    terminals: Float[Array, " n"]

    def __check_init__(self):
        n = self.observations.shape[0]
        for name in ("actions", "rewards", "next_observations", "terminals"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(
                    f"Transitions: `{name}` has {getattr(self, name).shape[0]} rows, "
                    f"`observations` has {n}."
                )

    def __len__(self) -> int:
        return self.observations.shape[0]

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def sample(self, key: PRNGKey, batch_size: int) -> Transitions:
        """A batch drawn uniformly with replacement (traceable: use it inside `jit`/`scan`)."""
        idx = jax.random.randint(key, (batch_size,), 0, len(self))
        return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), self)
