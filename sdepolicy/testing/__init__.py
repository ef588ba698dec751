r"""A property-testing kit for mean-reverting SDEs: ready checks of the closed forms against
computations they do not share, for the package's schedules or your own.

```python
import hypothesis.strategies as st
from hypothesis import given, settings
from sdepolicy.testing import check_all, strategies

@settings(strategies.SETTINGS, max_examples=10)  # no deadline: the first example compiles
@given(strategies.cases(st.builds(MySchedule, ...)))  # or an SDE, or a strategy of schedules
def test_my_schedule(case):
    check_all(case)
```

Each check takes a `Case` (an SDE, two states, times $0 \le s < u < t \le T$) and raises
`AssertionError` when the closed form disagrees with the reference:

- `check_posterior`: `sde.posterior` against numpy Gaussian conditioning of the joint
  $(x_s, x_t) \mid x_0$ built from $\Theta$ alone;
- `check_transition`: `sde.transition` against a diffrax (Tsit5) solve of the moment ODEs
  $m' = \theta(\mu - m)$, $v' = -2\theta v + 2\lambda^2\theta$ that reads only `rate`;
- `check_chapman_kolmogorov`: $s \to u \to t$ composed equals $s \to t$;
- `check_cumulative`: `cumulative` against Gauss–Legendre quadrature of `rate` (split at
  the jumps) and `jax.grad(cumulative)` against `rate` away from jumps;
- `check_score`: `sde.score` equals `jax.grad` of the marginal log density;
- `check_schedule`: the contract of every schedule, $\theta \ge 0$, $\Theta_0 = 0$,
  $\Theta$ non-decreasing, on a dense grid (it also takes a schedule alone).

Hypothesis' default `deadline` (200 ms) fails the first example, which compiles, and then
reports the test as flaky: decorate with `@settings(strategies.SETTINGS, max_examples=...)`,
the settings the kit is meant to run under (no deadline, derandomised, no too-slow health
check), or set `deadline=None` yourself.

The checks need only JAX, numpy and diffrax; `strategies` needs `hypothesis` (a dev
dependency of this package: `pip install hypothesis`), imported when that module is.
Run them in float64 (`jax.config.update("jax_enable_x64", True)`, or the whole test inside
`with jax.enable_x64(True):`): the default tolerances assume it, and a check run without it
raises `KitPrecisionError` saying so.
"""

from ._checks import Case as Case
from ._checks import KitPrecisionError as KitPrecisionError
from ._checks import check_all as check_all
from ._checks import check_chapman_kolmogorov as check_chapman_kolmogorov
from ._checks import check_cumulative as check_cumulative
from ._checks import check_posterior as check_posterior
from ._checks import check_schedule as check_schedule
from ._checks import check_score as check_score
from ._checks import check_transition as check_transition


def __getattr__(name):
    # `strategies` imports hypothesis: only when asked for.
    if name == "strategies":
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(name)
