r"""Diffusion-QL's offline model selection (its `--ms offline --early_stop`), reported as a third
labelled number beside the last and the best evaluation, never instead of them.

The official code records, after every evaluation period, the mean BC (diffusion) loss over that
period's updates. With `--early_stop` it stops at the first period whose mean BC loss is above
the previous period's (`EarlyStopping(tolerance=1, min_delta=0)`, the first period compared with
100). Among the evaluations done until then it reports one chosen by the task's `top_k` through

    top_k' = min(#evaluations - 1, top_k);   chosen = scores[argsort(bc_loss) == top_k']

which picks the evaluation whose index is the *rank* of evaluation `top_k'` (the inverse
permutation), not the evaluation of rank `top_k'`. `offline_choice` implements that literally
(`rule="reference"`) and the evidently intended rule (`rule="rank"`: the evaluation with the
`top_k'`-th smallest BC loss, 0-based). Runs here never stop early: the choice is computed from
the full history cut where the early stop would have ended the run (`docs/method.md §7.2`).
"""

from __future__ import annotations

import csv
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import ArrayLike, Float

from ._diagnostics import mean_std

RULES = ("reference", "rank")


def early_stop_index(bc_losses: Sequence[float] | Float[ArrayLike, " evals"]) -> int:
    """The index of the evaluation after which Diffusion-QL's `--early_stop` ends the run (the
    first whose mean BC loss exceeds the previous one's, the first compared with 100), or the
    last index when it never triggers."""
    losses = np.asarray(bc_losses, dtype=np.float64)
    previous = 100.0
    for i, loss in enumerate(losses):
        if loss - previous > 0.0:
            return i
        previous = loss
    return len(losses) - 1


def offline_choice(
    bc_losses: Sequence[float] | Float[ArrayLike, " evals"],
    top_k: int,
    *,
    early_stop: bool = True,
    rule: str = "reference",
) -> int:
    """The evaluation Diffusion-QL's offline model selection reports.

    **Arguments:**

    - `bc_losses`: the mean BC loss of each evaluation period, in order.
    - `top_k`: the task's `top_k` (Diffusion-QL's table, `docs/method.md §8.2`).
    - `early_stop`: consider only the evaluations up to the early stop (`--early_stop`, which the
      official README's offline command passes).
    - `rule`: `"reference"` (the code's expression, literally) or `"rank"` (the evaluation with
      the `top_k'`-th smallest BC loss).

    **Returns:**

    The index of the chosen evaluation.
    """
    if rule not in RULES:
        raise ValueError(f"offline_choice: rule must be one of {RULES}, got {rule!r}.")
    losses = np.asarray(bc_losses, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError("offline_choice: needs a non-empty 1-d array of BC losses.")
    if early_stop:
        losses = losses[: early_stop_index(losses) + 1]
    k = min(len(losses) - 1, int(top_k))
    order = np.argsort(losses, kind="stable")
    if rule == "rank":
        return int(order[k])
    return int(np.flatnonzero(order == k)[0])


def period_bc_losses(
    metrics_csv: str | pathlib.Path, eval_steps: Sequence[int], seeds: Sequence[int]
) -> np.ndarray:
    """The mean `bc_loss` of each evaluation period, per seed, from a run's `metrics.csv`.

    The CSV holds one row per (chunk of fused updates, seed), chunks of equal size, so the mean
    of a period's rows is the mean over its updates. It is what a resumed run rewrites
    consistently, which makes the selection the same with or without a resume.

    **Returns:**

    An array `(seeds, evaluations)`.
    """
    steps, per_seed = [], {int(s): [] for s in seeds}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("bc_loss") in (None, ""):
                continue
            per_seed[int(row["seed"])].append((int(row["step"]), float(row["bc_loss"])))
            steps.append(int(row["step"]))
    out = np.full((len(seeds), len(eval_steps)), np.nan)
    bounds = [0, *[int(s) for s in eval_steps]]
    for i, seed in enumerate(seeds):
        rows = np.array(per_seed[int(seed)], dtype=np.float64).reshape(-1, 2)
        for j in range(len(eval_steps)):
            sel = (rows[:, 0] > bounds[j]) & (rows[:, 0] <= bounds[j + 1])
            if sel.any():
                out[i, j] = rows[sel, 1].mean()
    return out


def offline_selection_summary(
    metrics_csv: str | pathlib.Path,
    history: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    top_k: int | None,
    *,
    rule: str = "reference",
    early_stop: bool = True,
) -> dict[str, Any]:
    """The `offline_selection` entry of a run's summary: per seed the evaluation chosen by
    `offline_choice`, then mean ± std over seeds (ddof = 1), labelled.

    **Arguments:**

    - `metrics_csv`: the run's `metrics.csv` (per-chunk `bc_loss` per seed).
    - `history`: the run's evaluations (`step`, per-seed `returns` and `normalized`).
    - `seeds`: the run's seeds, in the order of the per-seed lists.
    - `top_k`: the task's `top_k`; None (a task without one) uses 1, and says so.
    - `rule`, `early_stop`: see `offline_choice`.

    **Returns:**

    A JSON-ready dict with `note`, `rule`, `top_k`, `steps` (chosen step per seed), `return` and
    `normalized` (mean/std over seeds).
    """
    k = 1 if top_k is None else int(top_k)
    steps = [int(h["step"]) for h in history]
    losses = period_bc_losses(metrics_csv, steps, seeds)
    returns = np.array([h["returns"] for h in history], dtype=float)  # [evals, seeds]
    normalized = np.array([h["normalized"] for h in history], dtype=float)
    chosen = []
    for i in range(len(seeds)):
        valid = ~np.isnan(losses[i])
        idx = np.flatnonzero(valid)
        if idx.size == 0:
            raise ValueError("offline_selection_summary: no bc_loss in the metrics for a seed.")
        chosen.append(
            int(idx[offline_choice(losses[i][valid], k, early_stop=early_stop, rule=rule)])
        )
    cols = np.arange(len(seeds))
    note = (
        "Diffusion-QL's offline model selection (--ms offline"
        + (" --early_stop" if early_stop else "")
        + f", top_k={k}{' (task has none; default 1)' if top_k is None else ''}, rule={rule}): "
        "per seed the evaluation picked from the BC losses alone, then mean ± std over seeds"
    )
    return {
        "note": note,
        "rule": rule,
        "top_k": k,
        "steps": [steps[c] for c in chosen],
        "return": mean_std(returns[chosen, cols]),
        "normalized": mean_std(normalized[chosen, cols]),
    }
