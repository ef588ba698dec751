"""Hypothesis strategies and independent reference computations shared by the SDE-floor tests.

Not a test module (no `test_` prefix). It is imported by name because `tests/sde/` has no
`__init__.py` and pytest's default import mode puts this folder on `sys.path`.

Everything here must be built while float64 is on (the `maths_precision` fixture), i.e. inside a
test, never at import time.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np

import sdepolicy.sde as sp

SHAPES = [(), (3,), (2, 3)]

#: The schedule families drawn by `schedules()`.
KINDS = (
    "constant",
    "linear",
    "piecewise",
    "cosine",
    "linear_theta",
    "constant_theta",
    "vp",
)


@st.composite
def schedules(draw, kinds=KINDS, allow_zero_rates: bool = False, max_steps: int = 10):
    """Any schedule of the package with random parameters and horizon.

    `allow_zero_rates` lets the constant/linear/piecewise families have zero rates (on some
    steps); the SDE tests keep rates positive so that every posterior is well defined.
    """
    kind = draw(st.sampled_from(kinds))
    low = 0.0 if allow_zero_rates else 0.05
    if kind == "constant":
        value = draw(st.floats(low, 2.5))
        return sp.ConstantSchedule(value, draw(st.floats(0.5, 6.0)))
    if kind == "linear":
        start = draw(st.floats(0.0, 2.5))
        end = draw(st.floats(0.0, 2.5))
        if not allow_zero_rates and start + end < 0.1:
            end = end + 0.1
        return sp.LinearSchedule(start, end, draw(st.floats(0.5, 6.0)))
    if kind == "piecewise":
        n = draw(st.integers(1, max_steps))
        pos = st.floats(0.02, 2.5)
        elem = st.one_of(st.just(0.0), pos) if allow_zero_rates else pos
        inc = draw(st.lists(elem, min_size=n, max_size=n))
        if sum(inc) == 0.0:
            inc[-1] = 0.5
        return sp.PiecewiseConstantSchedule(np.asarray(inc, dtype=np.float64))
    n = draw(st.integers(1, max_steps))
    if kind == "vp":
        beta_min = draw(st.floats(0.05, 1.0))
        beta_max = draw(st.floats(2.0, 20.0))
        return sp.vp_schedule(n, beta_min, beta_max)
    decay = draw(st.floats(1e-4, 0.3))
    factory = {
        "cosine": sp.cosine_schedule,
        "linear_theta": sp.linear_theta_schedule,
        "constant_theta": sp.constant_theta_schedule,
    }[kind]
    return factory(n, terminal_decay=decay)


@st.composite
def times(draw, schedule, n: int, min_gap_frac: float = 0.0):
    """`n` sorted times in [0, T]; each may be snapped to an integer (a jump point of a
    piecewise-constant schedule) and consecutive ones are at least `min_gap_frac * T` apart."""
    horizon = float(schedule.horizon)
    out = []
    for _ in range(n):
        t = draw(st.floats(0.0, 1.0)) * horizon
        if draw(st.booleans()):
            t = float(round(t))
        out.append(min(max(t, 0.0), horizon))
    out = sorted(out)
    gap = min_gap_frac * horizon
    # Spread the times apart (keeps them inside [0, T] because n * gap <= T is required).
    assert n * gap <= horizon
    fixed = []
    for i, t in enumerate(out):
        lo = fixed[-1] + gap if fixed else 0.0
        hi = horizon - (n - 1 - i) * gap
        fixed.append(min(max(t, lo), hi))
    return fixed


def rng_array(seed: int, shape, scale: float = 1.0, loc: float = 0.0) -> np.ndarray:
    """A float64 normal array from a seed (cheaper than drawing element by element)."""
    return loc + scale * np.random.default_rng(seed).standard_normal(shape)


@st.composite
def means(draw, shape):
    """$\\mu$: a scalar or a per-element array of the state's shape."""
    if draw(st.booleans()) or shape == ():
        return np.float64(draw(st.floats(-3.0, 3.0)))
    return rng_array(draw(st.integers(0, 2**31 - 1)), shape, scale=1.5)


def condition_gaussian(mean: np.ndarray, cov: np.ndarray, given: np.ndarray, values: np.ndarray):
    """Condition $\\mathcal N(m, C)$ on $x_{given} = values$ with numpy linear algebra (Schur
    complement). Returns the conditional mean and covariance of the remaining coordinates."""
    n = mean.shape[0]
    free = np.setdiff1d(np.arange(n), given)
    c_fg = cov[np.ix_(free, given)]
    c_gg = cov[np.ix_(given, given)]
    gain = np.linalg.solve(c_gg, c_fg.T).T
    cond_mean = mean[free] + gain @ (values - mean[given])
    cond_cov = cov[np.ix_(free, free)] - gain @ c_fg.T
    return cond_mean, cond_cov
