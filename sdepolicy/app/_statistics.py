r"""Statistics that can tell two agents apart from a handful of runs on a handful of datasets:
the protocol of Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS 2021), on numpy alone (`docs/protocol.md`).

Scores are given per dataset, one normalised score per run (seed): a mapping
``{dataset: scores[runs]}``; datasets may have different numbers of runs.

- **Mean** and **interquartile mean** (IQM: the mean of the middle 50 % of the runs, SciPy's
  `trim_mean(x, 0.25)`: the lowest and highest ``floor(n / 4)`` scores dropped), per dataset and
  aggregated over the runs of all datasets pooled (each run counts once; with the same number
  of runs on every dataset this is `rliable`'s `aggregate_mean` / `aggregate_iqm` of the
  runs × datasets matrix).
- **Stratified-bootstrap confidence intervals**: each replicate resamples, with replacement,
  ``n_d`` runs from the ``n_d`` runs of dataset ``d``, for every dataset (the datasets stay
  fixed: the interval is the uncertainty of re-running the seeds, not of choosing other
  datasets); percentile intervals of the statistic over the replicates.
- **Probability of improvement** $P(X > Y)$: per dataset the probability that a run of X
  scores above a run of Y, ties counted one half (the Mann–Whitney $U$ of X over $m n$), then
  averaged over datasets; its interval resamples X's and Y's runs independently, within each
  dataset.
- **Performance profiles**: for each threshold $\tau$ the fraction of runs scoring above
  $\tau$ (per dataset, then averaged over datasets), with stratified-bootstrap bands.

Every random draw comes from `numpy.random.default_rng(seed)`: the same inputs and seed give the
same intervals. The replicates are drawn up front (their indices) and evaluated in blocks, so
memory stays bounded and the result does not depend on the block size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: Bootstrap replicates for intervals (rliable's default) and for profile bands.
DEFAULT_REPS = 50_000
DEFAULT_PROFILE_REPS = 2_000
DEFAULT_CONFIDENCE = 0.95
#: Replicates evaluated together (bounds memory; results do not depend on it).
_BLOCK = 2_048

#: Per-dataset runs: ``{dataset: scores[runs]}`` (or ``[..., runs]`` inside the bootstrap).
Scores = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.point:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclasses.dataclass(frozen=True)
class Profile:
    """A performance profile: at each threshold, the fraction of runs scoring above it, with the
    lower and upper edges of its bootstrap band."""

    thresholds: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("thresholds", "fraction", "low", "high")}


def as_scores(scores: Scores) -> dict[str, np.ndarray]:
    """`scores` as float64 vectors, datasets in sorted order; refuses an empty mapping, an empty
    dataset and non-finite scores (a diverged run has no score: leave it out and say so)."""
    if not scores:
        raise ValueError("no datasets: at least one dataset with one run is needed.")
    out = {}
    for name in sorted(scores):
        x = np.asarray(scores[name], dtype=np.float64).reshape(-1)
        if x.size == 0:
            raise ValueError(f"dataset {name!r} has no runs.")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"dataset {name!r} has non-finite scores: {x.tolist()}.")
        out[name] = x
    return out


# --- statistics: runs on the last axis, any leading (replicate) axes ------------------------------


def interquartile_mean(x: Any, axis: int = -1) -> Any:
    """The 25 %-trimmed mean along `axis`: sorted, the lowest and highest ``floor(n / 4)``
    values dropped, the rest averaged (SciPy's `trim_mean(x, 0.25)`)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    k = int(0.25 * n)
    return np.take(x, np.arange(k, n - k), axis=axis).mean(axis=axis)


def _pooled(samples: Scores) -> np.ndarray:
    return np.concatenate([np.asarray(samples[d]) for d in sorted(samples)], axis=-1)


def aggregate_mean(samples: Scores) -> Any:
    """The mean over the runs of all datasets pooled."""
    return _pooled(samples).mean(axis=-1)


def aggregate_iqm(samples: Scores) -> Any:
    """The interquartile mean over the runs of all datasets pooled."""
    return interquartile_mean(_pooled(samples))


def _p_greater(x: Any, y: Any) -> Any:
    """P(a run of x scores above a run of y), ties one half, over the last axes."""
    x, y = np.asarray(x)[..., :, None], np.asarray(y)[..., None, :]
    return ((x > y).mean(axis=(-2, -1)) + 0.5 * (x == y).mean(axis=(-2, -1))).astype(np.float64)


def probability_of_improvement(x: Scores, y: Scores) -> Any:
    """$P(X > Y)$: per dataset the probability that a run of X scores above a run of Y (ties
    count one half), averaged over the datasets (which X and Y must share)."""
    _same_datasets(x, y)
    return np.mean([_p_greater(x[d], y[d]) for d in sorted(x)], axis=0)


def score_distribution(samples: Scores, thresholds: Any) -> Any:
    """At each threshold, the fraction of runs scoring above it: per dataset, then averaged over
    datasets. Shape ``[..., thresholds]``."""
    tau = np.asarray(thresholds, dtype=np.float64)
    per = [(np.asarray(samples[d])[..., :, None] > tau).mean(axis=-2) for d in sorted(samples)]
    return np.mean(per, axis=0)


def _same_datasets(x: Scores, y: Scores) -> None:
    if set(x) != set(y):
        raise ValueError(
            f"the two agents were run on different datasets: {sorted(x)} vs {sorted(y)}."
        )


# --- the stratified bootstrap ---------------------------------------------------------------------


def _indices(sizes: Sequence[int], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, n, size=(reps, n)) for n in sizes]


def _in_blocks(fn: Callable[[slice], Any], reps: int) -> np.ndarray:
    return np.concatenate(
        [np.asarray(fn(slice(i, min(i + _BLOCK, reps)))) for i in range(0, reps, _BLOCK)]
    )


def stratified_bootstrap(
    scores: Scores,
    statistic: Callable[[Scores], Any],
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> np.ndarray:
    """The statistic on `reps` stratified resamples of `scores`: each replicate draws, with
    replacement, as many runs from each dataset as it has. `statistic` takes the mapping with
    the replicates on a leading axis (``{dataset: [reps, runs]}``) and returns ``[reps, ...]``.
    """
    s = as_scores(scores)
    names = list(s)
    idx = _indices([s[d].size for d in names], reps, np.random.default_rng(seed))
    return _in_blocks(
        lambda b: statistic({d: s[d][i[b]] for d, i in zip(names, idx, strict=True)}), reps
    )


def _interval(boot: np.ndarray, confidence: float | int) -> tuple[Any, Any]:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}.")
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(boot, [alpha, 100.0 - alpha], axis=0)
    return low, high


def interval_estimate(
    scores: Scores,
    statistic: Callable[[Scores], Any],
    *,
    reps: int = DEFAULT_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """The statistic's value on `scores` and its stratified-bootstrap percentile interval."""
    s = as_scores(scores)
    boot = stratified_bootstrap(s, statistic, reps=reps, seed=seed)
    low, high = _interval(boot, confidence)
    return Interval(float(statistic(s)), float(low), float(high))


def improvement_interval(
    x: Scores,
    y: Scores,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """$P(X > Y)$ and its interval: X's and Y's runs resampled independently within each
    dataset (`rliable`'s `StratifiedIndependentBootstrap`)."""
    return _two_agent_interval(x, y, probability_of_improvement, reps, confidence, seed)


def difference_interval(
    x: Scores,
    y: Scores,
    statistic: Callable[[Scores], Any] = aggregate_iqm,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """``statistic(X) - statistic(Y)`` (by default the difference of the IQMs) and its interval:
    X's and Y's runs resampled independently within each dataset, as `improvement_interval`
    does. An interval that excludes 0 is a difference the runs can see."""
    return _two_agent_interval(
        x, y, lambda a, b: statistic(a) - statistic(b), reps, confidence, seed
    )


def _two_agent_interval(x, y, statistic, reps, confidence, seed) -> Interval:
    sx, sy = as_scores(x), as_scores(y)
    _same_datasets(sx, sy)
    names = list(sx)
    rng = np.random.default_rng(seed)
    ix = _indices([sx[d].size for d in names], reps, rng)
    iy = _indices([sy[d].size for d in names], reps, rng)

    def block(b):
        return statistic(
            {d: sx[d][i[b]] for d, i in zip(names, ix, strict=True)},
            {d: sy[d][i[b]] for d, i in zip(names, iy, strict=True)},
        )

    boot = _in_blocks(block, reps)
    low, high = _interval(boot, confidence)
    return Interval(float(statistic(sx, sy)), float(low), float(high))


def profile_thresholds(*scores: Scores, num: int = 101) -> np.ndarray:
    """`num` evenly spaced thresholds covering 0–100 and every score given."""
    pooled = np.concatenate([_pooled(as_scores(s)) for s in scores])
    return np.linspace(min(0.0, float(pooled.min())), max(100.0, float(pooled.max())), num)


def performance_profile(
    scores: Scores,
    thresholds: Any = None,
    *,
    reps: int = DEFAULT_PROFILE_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Profile:
    """The fraction of runs scoring above each threshold (per dataset, averaged over datasets)
    with its stratified-bootstrap band (default thresholds: `profile_thresholds(scores)`)."""
    s = as_scores(scores)
    tau = profile_thresholds(s) if thresholds is None else np.asarray(thresholds, np.float64)
    stat = lambda samples: score_distribution(samples, tau)
    boot = stratified_bootstrap(s, stat, reps=reps, seed=seed)
    low, high = _interval(boot, confidence)
    return Profile(thresholds=tau, fraction=stat(s), low=low, high=high)


# --- the tables -----------------------------------------------------------------------------------


def describe(
    scores: Scores,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean and IQM with their intervals, per dataset and aggregated: ``{"per_dataset":
    {dataset: {"runs", "mean", "iqm"}}, "aggregate": {"runs", "datasets", "mean", "iqm"}}``,
    the estimates as `Interval`s."""
    s = as_scores(scores)
    kw = dict(reps=reps, confidence=confidence, seed=seed)
    per = {
        d: {
            "runs": int(x.size),
            "mean": interval_estimate({d: x}, aggregate_mean, **kw),
            "iqm": interval_estimate({d: x}, aggregate_iqm, **kw),
        }
        for d, x in s.items()
    }
    agg = {
        "runs": int(sum(x.size for x in s.values())),
        "datasets": len(s),
        "mean": interval_estimate(s, aggregate_mean, **kw),
        "iqm": interval_estimate(s, aggregate_iqm, **kw),
    }
    return {"per_dataset": per, "aggregate": agg}


def compare(
    x: Scores,
    y: Scores,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float | int = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """$P(X > Y)$ with its interval per dataset and over all datasets: ``{"per_dataset":
    {dataset: Interval}, "aggregate": Interval}``."""
    sx, sy = as_scores(x), as_scores(y)
    kw = dict(reps=reps, confidence=confidence, seed=seed)
    return {
        "per_dataset": {d: improvement_interval({d: sx[d]}, {d: sy[d]}, **kw) for d in sx},
        "aggregate": improvement_interval(sx, sy, **kw),
    }


def jsonable(obj: Any) -> Any:
    """`obj` with every `Interval` / `Profile` as a dict and numpy values as Python ones."""
    if isinstance(obj, Interval | Profile):
        return obj.as_dict()
    if isinstance(obj, Mapping):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
