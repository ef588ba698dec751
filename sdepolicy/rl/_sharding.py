"""Spreading seeds over devices with JAX's own sharding (no home-made distribution layer)."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def seed_mesh(num_seeds: int) -> Mesh | None:
    """A 1-D mesh over as many devices as divide `num_seeds` evenly, or `None` for one device."""
    devices = jax.devices()
    n = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    if n == 1:
        return None
    return Mesh(np.array(devices[:n]), ("seeds",))


def shard_seeds(states):
    """Place every array leaf of a seed-stacked pytree with its leading (seed) axis split over
    the devices of `seed_mesh`; a no-op on one device. Compiled code that consumes the result
    runs each device's seeds there (XLA's sharding propagation), and the dataset, passed
    unsharded, is replicated."""
    arrays = jax.tree.leaves(eqx.filter(states, eqx.is_array))
    if not arrays:
        return states
    mesh = seed_mesh(arrays[0].shape[0])
    if mesh is None:
        return states
    sharding = NamedSharding(mesh, PartitionSpec("seeds"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, states)
