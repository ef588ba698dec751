"""Hypothesis strategies for `sdepolicy.testing`: schedules of the package, times, states and
`Case`s built around a schedule or SDE of your own.

Importing this module imports `hypothesis` (a dev dependency: `pip install hypothesis`).
Build everything inside the test (where float64 is on), never at import time.
"""

from __future__ import annotations

try:
    import hypothesis
    import hypothesis.strategies as st
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sdepolicy.testing.strategies needs hypothesis: pip install hypothesis "
        '(or pip install -e ".[dev]")'
    ) from e

import numpy as np

from .. import sde as _sde
from ._checks import Case

__all__ = ["SETTINGS", "schedules", "times", "states", "sdes", "cases"]

#: The settings the kit runs under, for a project without this package's conftest:
#: `@settings(strategies.SETTINGS, max_examples=3)`. No deadline (the first example compiles a
#: diffrax solve: hypothesis' default 200 ms deadline fails it, then reports the test as
#: flaky), derandomised (the same examples on every run), and no too-slow health check.
SETTINGS = hypothesis.settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)

SHAPES = ((), (3,), (2, 3))


@st.composite
def schedules(draw, kinds=("constant", "linear", "piecewise", "cosine", "vp"), max_steps=8):
    """A schedule of the package with random parameters (rates kept positive)."""
    kind = draw(st.sampled_from(kinds))
    if kind == "constant":
        return _sde.ConstantSchedule(draw(st.floats(0.05, 2.5)), draw(st.floats(0.5, 6.0)))
    if kind == "linear":
        return _sde.LinearSchedule(
            draw(st.floats(0.05, 2.5)), draw(st.floats(0.05, 2.5)), draw(st.floats(0.5, 6.0))
        )
    n = draw(st.integers(1, max_steps))
    if kind == "piecewise":
        inc = draw(st.lists(st.floats(0.02, 2.5), min_size=n, max_size=n))
        return _sde.PiecewiseConstantSchedule(np.asarray(inc, dtype=np.float64))
    if kind == "vp":
        return _sde.vp_schedule(n, draw(st.floats(0.05, 1.0)), draw(st.floats(2.0, 20.0)))
    return _sde.cosine_schedule(n, terminal_decay=draw(st.floats(1e-4, 0.3)))


@st.composite
def times(draw, horizon: float, n: int, min_gap: float = 0.0):
    """`n` sorted times in $[0, T]$, at least `min_gap` apart; each may be snapped to an
    integer (a jump of a piecewise-constant schedule)."""
    assert (n - 1) * min_gap < horizon
    raw = []
    for _ in range(n):
        t = draw(st.floats(0.0, 1.0)) * horizon
        raw.append(float(round(t)) if draw(st.booleans()) else t)
    raw = sorted(min(max(t, 0.0), horizon) for t in raw)
    out = []
    for i, t in enumerate(raw):
        lo = out[-1] + min_gap if out else 0.0
        hi = horizon - (n - 1 - i) * min_gap
        out.append(min(max(t, lo), hi))
    return out


@st.composite
def states(draw, shape, scale: float = 2.0):
    """A float64 state of `shape` (drawn from a seed: cheaper than element by element)."""
    seed = draw(st.integers(0, 2**31 - 1))
    return np.asarray(scale * np.random.default_rng(seed).standard_normal(shape))


def _strategy(x):
    return x if isinstance(x, st.SearchStrategy) else st.just(x)


@st.composite
def sdes(draw, schedule=None, shape=()):
    r"""A `MeanRevertingSDE` on `schedule` (a schedule, a strategy of schedules, or `None`
    for `schedules`) with a random $\lambda$ and a scalar or per-element $\mu$."""
    sch = draw(schedules() if schedule is None else _strategy(schedule))
    if shape == () or draw(st.booleans()):
        mu = np.float64(draw(st.floats(-3.0, 3.0)))
    else:
        mu = draw(states(shape, 1.5))
    return _sde.MeanRevertingSDE(sch, mu, draw(st.floats(0.2, 3.0)))


@st.composite
def cases(draw, of=None, shapes=SHAPES, min_gap_frac: float = 0.02):
    r"""A `Case`: `of` is an SDE, a schedule, a strategy of either, or `None` (any
    schedule of the package); states of a shape in `shapes`; times $s < u < t$ at least
    `min_gap_frac * T` apart."""
    shape = draw(st.sampled_from(shapes))
    if of is None:
        sde = draw(sdes(shape=shape))
    else:
        drawn = draw(_strategy(of))
        sde = drawn if isinstance(drawn, _sde.MeanRevertingSDE) else draw(sdes(drawn, shape))
    horizon = float(sde.schedule.horizon)
    s, u, t = draw(times(horizon, 3, min_gap_frac * horizon))
    return Case(sde, draw(states(shape)), draw(states(shape)), s, u, t)
