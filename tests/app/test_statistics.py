"""The statistics of `docs/protocol.md` against numbers computed another way: the IQM against
SciPy's trimmed mean and a hand computation, the stratified bootstrap against the exact
bootstrap distribution of a tiny case and the coverage of its interval, P(X > Y) against the
Mann–Whitney U statistic, profiles against direct counting."""

import itertools

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import scipy.stats
from hypothesis import given

from sdepolicy.app import _statistics as S

# Integer-valued scores so that ties (which the statistics must count as one half) occur.
runs = hnp.arrays(np.float64, st.integers(1, 12), elements=st.integers(-50, 150).map(float))


def test_iqm_by_hand():
    # 8 runs: the 2 lowest and 2 highest dropped, the middle 4 averaged.
    x = np.array([100.0, -40.0, 3.0, 7.0, 1000.0, 5.0, 1.0, 9.0])
    assert S.interquartile_mean(x) == pytest.approx((3 + 5 + 7 + 9) / 4)
    # 5 runs: floor(5 / 4) = 1 dropped at each end.
    assert S.interquartile_mean(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(3.0)
    # 3 runs: nothing dropped, the plain mean.
    assert S.interquartile_mean(np.array([0.0, 3.0, 30.0])) == pytest.approx(11.0)


@given(runs)
def test_iqm_is_scipys_trimmed_mean(x):
    assert S.interquartile_mean(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25), abs=1e-9)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 5)),
                  elements=st.floats(-100, 200)))  # fmt: skip
def test_aggregates_are_rliables_on_a_matrix(m):
    """runs x datasets: rliable's aggregate_iqm is trim_mean of the whole matrix, its
    aggregate_mean the mean of the datasets' means."""
    scores = {f"d{j}": m[:, j] for j in range(m.shape[1])}
    assert S.aggregate_iqm(scores) == pytest.approx(
        scipy.stats.trim_mean(m, 0.25, axis=None), abs=1e-9
    )
    assert S.aggregate_mean(scores) == pytest.approx(m.mean(axis=0).mean(), abs=1e-9)


def test_statistics_broadcast_over_replicates():
    rng = np.random.default_rng(0)
    batch = {"a": rng.normal(size=(6, 5)), "b": rng.normal(size=(6, 3))}
    iqm = S.aggregate_iqm(batch)
    for r in range(6):
        row = np.concatenate([batch["a"][r], batch["b"][r]])
        assert iqm[r] == pytest.approx(scipy.stats.trim_mean(row, 0.25))


@given(runs, runs)
def test_probability_of_improvement_is_mann_whitney_u(x, y):
    u = scipy.stats.mannwhitneyu(x, y).statistic  # U of x: pairs x > y, ties one half
    assert S.probability_of_improvement({"d": x}, {"d": y}) == pytest.approx(u / (x.size * y.size))


def test_probability_of_improvement_averages_datasets():
    x = {"a": np.array([1.0, 2.0]), "b": np.array([5.0, 5.0, 5.0])}
    y = {"a": np.array([0.0, 3.0]), "b": np.array([5.0])}
    # a: pairs (1>0, 1<3, 2>0, 2<3) -> 2/4; b: all ties -> 1/2 ... and a second case below.
    assert S.probability_of_improvement(x, y) == pytest.approx(0.5)
    y["b"] = np.array([4.0, 6.0])  # b: 3 of 6 pairs above -> 1/2; a: 1/2
    x["a"] = np.array([10.0, 20.0])  # a: 1
    assert S.probability_of_improvement(x, y) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="different datasets"):
        S.probability_of_improvement({"a": [1.0]}, {"b": [1.0]})


@given(st.dictionaries(st.sampled_from("abcd"), runs, min_size=1),
       st.lists(st.integers(-60, 160).map(float), min_size=1, max_size=6))  # fmt: skip
def test_score_distribution_is_direct_counting(scores, thresholds):
    got = S.score_distribution(scores, thresholds)
    for k, tau in enumerate(thresholds):
        fractions = [sum(1 for v in x if v > tau) / len(x) for x in scores.values()]
        assert got[k] == pytest.approx(sum(fractions) / len(fractions))


def _exact_bootstrap(scores, statistic):
    """Every stratified resample of a tiny case, each equally likely: the exact bootstrap
    distribution of the statistic."""
    names = sorted(scores)
    per = [list(itertools.product(scores[d], repeat=len(scores[d]))) for d in names]
    return np.array(
        [
            statistic({d: np.array(c) for d, c in zip(names, combo, strict=True)})
            for combo in itertools.product(*per)
        ]
    )


def test_bootstrap_matches_the_exact_bootstrap_distribution():
    scores = {"a": np.array([0.0, 10.0]), "b": np.array([1.0, 4.0, 30.0])}  # 4 x 27 resamples
    exact = _exact_bootstrap(scores, S.aggregate_mean)
    boot = S.stratified_bootstrap(scores, S.aggregate_mean, reps=40_000, seed=3)
    assert boot.shape == (40_000,)
    # Kolmogorov-Smirnov distance between the two distributions, and their moments.
    grid = np.unique(exact)
    cdf = lambda v: np.searchsorted(np.sort(v), grid, side="right") / v.size
    assert np.max(np.abs(cdf(boot) - cdf(exact))) < 0.01
    assert boot.mean() == pytest.approx(exact.mean(), abs=0.05)
    assert boot.std() == pytest.approx(exact.std(), rel=0.02)
    # The interval's ends are the exact distribution's 2.5 and 97.5 % quantiles (an atom of
    # the discrete distribution: its CDF jumps across the level there, to Monte Carlo error).
    iv = S.interval_estimate(scores, S.aggregate_mean, reps=40_000, seed=3)
    assert iv.point == pytest.approx(S.aggregate_mean(scores))
    below = lambda v: np.mean(exact < v - 1e-9)
    at = lambda v: np.mean(exact <= v + 1e-9)
    assert below(iv.low) <= 0.025 + 0.01 and at(iv.low) >= 0.025 - 0.01
    assert below(iv.high) <= 0.975 + 0.01 and at(iv.high) >= 0.975 - 0.01


def test_bootstrap_is_stratified():
    """Every replicate holds exactly as many runs of each dataset as it has."""
    scores = {"low": np.array([0.0, 0.5, 1.0]), "high": np.array([10.0, 11.0])}
    count_low = lambda s: (np.concatenate([s["low"], s["high"]], axis=-1) < 5).sum(axis=-1)
    assert np.all(S.stratified_bootstrap(scores, count_low, reps=3000, seed=0) == 3)


def test_bootstrap_is_seeded_and_does_not_depend_on_the_block_size(monkeypatch):
    scores = {"a": np.arange(5.0), "b": np.array([3.0, 9.0])}
    a = S.stratified_bootstrap(scores, S.aggregate_iqm, reps=5000, seed=7)
    assert np.array_equal(a, S.stratified_bootstrap(scores, S.aggregate_iqm, reps=5000, seed=7))
    assert not np.array_equal(a, S.stratified_bootstrap(scores, S.aggregate_iqm, reps=5000))
    monkeypatch.setattr(S, "_BLOCK", 333)
    assert np.array_equal(a, S.stratified_bootstrap(scores, S.aggregate_iqm, reps=5000, seed=7))


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, hits = 400, 0
    for t in range(trials):
        scores = {"a": rng.normal(50.0, 10.0, 20), "b": rng.normal(80.0, 10.0, 20)}
        iv = S.interval_estimate(scores, S.aggregate_mean, reps=1000, seed=t)
        hits += iv.low <= 65.0 <= iv.high
    # The percentile bootstrap covers slightly less than nominal at 40 runs; 400 trials give a
    # binomial standard error of about 1.1 points.
    assert 0.90 <= hits / trials <= 0.98


def test_improvement_interval_resamples_each_agent_within_datasets():
    x = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([7.0, 8.0])}
    y = {"a": np.array([0.5, 2.5]), "b": np.array([7.5, 9.0, 10.0])}
    iv = S.improvement_interval(x, y, reps=20_000, seed=1)
    assert iv.point == pytest.approx(S.probability_of_improvement(x, y))
    # Brute force on the same tiny case: every resample of x and y within each dataset.
    exact = _exact_bootstrap(
        {"xa": x["a"], "xb": x["b"], "ya": y["a"], "yb": y["b"]},
        lambda s: S.probability_of_improvement(
            {"a": s["xa"], "b": s["xb"]}, {"a": s["ya"], "b": s["yb"]}
        ),
    )
    lo, hi = np.percentile(exact, [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=0.03) and iv.high == pytest.approx(hi, abs=0.03)
    # Clearly separated agents: P = 1 and its interval is the point.
    far = S.improvement_interval({"a": [10.0, 11.0]}, {"a": [0.0, 1.0, 2.0]}, reps=500)
    assert (far.point, far.low, far.high) == (1.0, 1.0, 1.0)


def test_difference_interval_is_the_exact_bootstrap_and_the_normal_one():
    # Tiny case: against the brute-force bootstrap over every resample of x and of y.
    x = {"a": np.array([1.0, 4.0, 3.0]), "b": np.array([7.0, 8.0])}
    y = {"a": np.array([0.5, 2.5]), "b": np.array([7.5, 9.0, 10.0])}
    iv = S.difference_interval(x, y, S.aggregate_mean, reps=20_000, seed=3)
    assert iv.point == pytest.approx(S.aggregate_mean(x) - S.aggregate_mean(y))
    exact = _exact_bootstrap(
        {"xa": x["a"], "xb": x["b"], "ya": y["a"], "yb": y["b"]},
        lambda s: S.aggregate_mean({"a": s["xa"], "b": s["xb"]})
        - S.aggregate_mean({"a": s["ya"], "b": s["yb"]}),
    )
    lo, hi = np.percentile(exact, [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=0.05) and iv.high == pytest.approx(hi, abs=0.05)
    # Many runs: the difference of two means has the normal interval of the textbook,
    # ±1.96 sqrt(s_x² / n + s_y² / m).
    rng = np.random.default_rng(4)
    a, b = rng.normal(60.0, 10.0, 400), rng.normal(50.0, 20.0, 300)
    iv = S.difference_interval({"d": a}, {"d": b}, S.aggregate_mean, reps=20_000)
    half = 1.96 * np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert iv.low == pytest.approx(iv.point - half, abs=0.1 * half)
    assert iv.high == pytest.approx(iv.point + half, abs=0.1 * half)
    # The default statistic is the IQM.
    assert S.difference_interval(x, y, reps=100).point == pytest.approx(
        S.aggregate_iqm(x) - S.aggregate_iqm(y)
    )


def test_profile_band_brackets_the_profile_and_falls():
    rng = np.random.default_rng(2)
    scores = {"a": rng.normal(40, 20, 5), "b": rng.normal(70, 10, 5)}
    prof = S.performance_profile(scores, reps=1000, seed=0)
    assert prof.thresholds[0] <= 0 and prof.thresholds[-1] >= 100
    assert np.all(np.diff(prof.fraction) <= 0)
    assert np.all(prof.low <= prof.fraction + 1e-12) and np.all(prof.fraction <= prof.high + 1e-12)
    assert prof.fraction[-1] == 0.0  # the last threshold is the highest score
    # Below every score all runs are above; the band of a certain value is that value.
    edge = S.performance_profile(scores, [-1e3, 1e3], reps=200)
    assert edge.fraction.tolist() == edge.low.tolist() == edge.high.tolist() == [1.0, 0.0]


def test_describe_and_compare_tables():
    x = {"a": np.array([10.0, 20.0, 30.0, 40.0]), "b": np.array([50.0, 60.0, 70.0, 80.0])}
    y = {"a": np.array([0.0, 1.0, 2.0, 3.0]), "b": np.array([90.0, 91.0, 92.0, 93.0])}
    d = S.describe(x, reps=2000)
    assert d["per_dataset"]["a"]["runs"] == 4 and d["aggregate"]["runs"] == 8
    assert d["per_dataset"]["a"]["mean"].point == pytest.approx(25.0)
    assert d["per_dataset"]["b"]["iqm"].point == pytest.approx(65.0)
    assert d["aggregate"]["iqm"].point == pytest.approx(scipy.stats.trim_mean(
        np.r_[x["a"], x["b"]], 0.25))  # fmt: skip
    c = S.compare(x, y, reps=2000)
    assert c["per_dataset"]["a"].point == 1.0 and c["per_dataset"]["b"].point == 0.0
    assert c["aggregate"].point == 0.5
    as_json = S.jsonable(c)
    assert as_json["aggregate"] == {"point": 0.5, "low": c["aggregate"].low,
                                    "high": c["aggregate"].high}  # fmt: skip


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="no datasets"):
        S.describe({})
    with pytest.raises(ValueError, match="no runs"):
        S.describe({"a": []})
    with pytest.raises(ValueError, match="non-finite"):
        S.describe({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="confidence"):
        S.interval_estimate({"a": [1.0, 2.0]}, S.aggregate_mean, confidence=95, reps=10)
