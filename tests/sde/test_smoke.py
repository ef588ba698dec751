import jax.numpy as jnp

import sdepolicy as sp


def test_float64_and_strict_promotion_are_on():
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
    assert sde.schedule.increments.dtype == jnp.float64
    x = jnp.zeros(3)
    assert x.dtype == jnp.float64
