"""`sdepolicy.testing`, the public property-testing kit, on the package's schedules and on a
user-defined one (as the README shows), and it catches a schedule whose `cumulative` is not
the integral of its `rate`."""

import equinox as eqx
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jaxtyping import Array, Float

import sdepolicy.sde as sp
from sdepolicy.testing import Case, check_all, check_cumulative, check_posterior, strategies


class ExpRate(sp.AbstractSchedule):
    r"""A user's schedule: $\theta(t) = a e^{t/T}$, $\Theta_t = aT(e^{t/T} - 1)$."""

    a: Float[Array, ""]
    horizon: float = eqx.field(static=True)

    def rate(self, t):
        return self.a * jnp.exp(jnp.asarray(t, self.a.dtype) / self.horizon)

    def cumulative(self, t):
        return self.a * self.horizon * jnp.expm1(jnp.asarray(t, self.a.dtype) / self.horizon)


class WrongCumulative(ExpRate):
    def cumulative(self, t):
        return 1.01 * super().cumulative(t)


# Few examples: the transition check compiles one diffrax solve per schedule structure.
@settings(max_examples=3)
@given(case=strategies.cases(shapes=[(3,)]))
def test_kit_on_the_package_schedules(case):
    check_all(case)


# A strategy, not an instance: arrays built at import time would miss the float64 fixture.
@settings(max_examples=4)
@given(case=strategies.cases(st.builds(lambda: ExpRate(jnp.asarray(0.4), 3.0)), shapes=[(3,)]))
def test_kit_on_a_user_schedule(case):
    check_all(case)


def test_kit_catches_a_wrong_cumulative():
    sde = sp.MeanRevertingSDE(WrongCumulative(jnp.asarray(0.4), 3.0), 0.3, 1.2)
    case = Case(sde, np.array([0.5, -1.0]), np.array([1.0, 0.2]), 0.5, 1.5, 2.5)
    with pytest.raises(AssertionError, match="cumulative"):
        check_cumulative(case)
    # the posterior check builds its reference from cumulative too: it cannot see this one,
    # which is why the kit has a quadrature check
    check_posterior(case)
