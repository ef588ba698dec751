"""Diffusion-QL's offline model selection (docs/method.md §7.2): early stop on the BC loss, then
its top_k expression, reported per seed beside (never instead of) last and best."""

import csv

import numpy as np
import pytest

from sdepolicy.app._model_selection import (
    early_stop_index,
    offline_choice,
    offline_selection_summary,
    period_bc_losses,
)


def reference_expression(bc_loss, top_k):
    """Diffusion-QL's main.py, verbatim in spirit: the row of `scores` where
    `np.argsort(bc_loss) == top_k`, with top_k capped at len - 1."""
    scores = np.arange(len(bc_loss))[:, None]  # each row carries its own index
    k = min(len(bc_loss) - 1, top_k)
    where_k = np.argsort(bc_loss) == k
    return int(scores[where_k][0][-1])


def test_early_stop_is_the_first_rise():
    assert early_stop_index([0.5, 0.3, 0.4, 0.2]) == 2  # 0.4 > 0.3
    assert early_stop_index([0.5, 0.4, 0.3]) == 2  # never rises: the last
    assert early_stop_index([120.0, 0.1]) == 0  # the first is compared with 100


def test_reference_rule_is_the_inverse_permutation():
    rng = np.random.default_rng(0)
    disagree = 0
    for _ in range(200):
        bc = rng.permutation(6).astype(float) / 10 + 0.1
        for k in range(4):
            ref = offline_choice(bc, k, early_stop=False, rule="reference")
            assert ref == reference_expression(bc, k)
            rank = offline_choice(bc, k, early_stop=False, rule="rank")
            assert bc[rank] == np.sort(bc)[k]  # the k-th smallest BC loss
            disagree += ref != rank
    assert disagree > 100  # the two rules are genuinely different
    # A worked case: the early stop keeps [0.5, 0.3, 0.4]; argsort = [1, 2, 0].
    bc = [0.5, 0.3, 0.4, 0.2]
    assert offline_choice(bc, 1, rule="rank") == 2  # 0.4 is the 2nd smallest of the three
    assert offline_choice(bc, 1, rule="reference") == 0  # argsort[0] == 1
    assert offline_choice(bc, 7, rule="reference") == reference_expression(bc[:3], 7)
    with pytest.raises(ValueError):
        offline_choice(bc, 1, rule="best")


def test_summary_from_metrics_csv(tmp_path):
    """Per seed, the chosen evaluation from the per-period mean BC losses of metrics.csv."""
    path = tmp_path / "metrics.csv"
    # Two chunks per evaluation period (steps 10, 20 | 30, 40 | 50, 60), two seeds.
    bc = {0: [0.9, 0.7, 0.5, 0.5, 0.6, 0.8], 1: [0.9, 0.9, 0.8, 0.6, 0.5, 0.3]}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "seed", "actor_loss", "bc_loss", "eval_return", "eval_normalized"])
        for j, step in enumerate(range(10, 70, 10)):
            for seed in (0, 1):
                w.writerow([step, seed, 1.0, bc[seed][j], "", ""])
    losses = period_bc_losses(path, [20, 40, 60], [0, 1])
    np.testing.assert_allclose(losses, [[0.8, 0.5, 0.7], [0.9, 0.7, 0.4]])
    history = [
        {"step": 20, "returns": [1.0, 10.0], "normalized": [11.0, 110.0]},
        {"step": 40, "returns": [2.0, 20.0], "normalized": [12.0, 120.0]},
        {"step": 60, "returns": [3.0, 30.0], "normalized": [13.0, 130.0]},
    ]
    out = offline_selection_summary(path, history, [0, 1], top_k=0, rule="rank")
    # Seed 0 stops after period 3 (0.7 > 0.5) and picks the smallest loss, period 2; seed 1
    # never stops and picks period 3.
    assert out["steps"] == [40, 60]
    assert out["return"]["mean"] == pytest.approx((2.0 + 30.0) / 2)
    assert out["normalized"]["std"] == pytest.approx(np.std([12.0, 130.0], ddof=1))
    assert "offline model selection" in out["note"] and out["top_k"] == 0
    ref = offline_selection_summary(path, history, [0, 1], top_k=1)
    assert ref["rule"] == "reference"
    assert ref["steps"] == [20 * (1 + reference_expression([0.8, 0.5, 0.7], 1)),
                            20 * (1 + reference_expression([0.9, 0.7, 0.4], 1))]  # fmt: skip
