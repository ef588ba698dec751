r"""D4RL normalised scores and where their reference returns come from.

$$\text{score} = 100 \cdot \frac{R - R_\text{random}}{R_\text{expert} - R_\text{random}}$$

on the mean return $R$. The references come, in this order, from the dataset itself (Minari
stores `ref_min_score`/`ref_max_score` in its metadata, `dataset.storage.metadata`, when the
dataset was created with them), else from the D4RL values of `docs/method.md §8.4` by
environment family; a task preset can ask for D4RL's values outright (`prefer="d4rl"`: AntMaze,
whose Minari metadata hold a waypoint controller's returns, not D4RL's 0/1).
Minari's `mujoco/*` datasets are re-collections on the v5 environments and carry their own
references, which are not D4RL's: the provenance string says which one was used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import ArrayLike, Float, Shaped

from .._typing import RealScalarLike
from ._errors import UnknownTaskError

#: D4RL reference returns (random, expert) per environment family, `docs/method.md §8.4`.
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331),
    "door": (-56.512833, 2880.5693),
    "hammer": (-274.856578, 12794.1348),
    "relocate": (-6.425911, 4233.8778),
    "kitchen": (0.0, 4.0),
}

PROVENANCE_DATASET = "minari dataset metadata"
PROVENANCE_D4RL = "D4RL reference (docs/method.md §8.4)"


def env_family(name: str) -> str | None:
    """The D4RL environment family named in a task or dataset id, if any.

    Matches whole tokens (split on `/`, `-`, `_`), so `"D4RL/pen/human-v2"` and
    `"pen-human-v1"` are `"pen"` while `"open"` is nothing.
    """
    tokens = set(re.split(r"[/\-_\s]+", name.lower()))
    for family in D4RL_REFERENCE_SCORES:
        if family in tokens:
            return family
    return None


def _metadata(dataset: Any) -> dict:
    storage = getattr(dataset, "storage", None)
    meta = getattr(storage, "metadata", None)
    return meta if isinstance(meta, dict) else {}


def reference_scores(
    dataset: Any = None, task: str | None = None, prefer: str = "dataset"
) -> tuple[float, float, str]:
    """The (random, expert) reference returns for normalising, with their provenance.

    **Arguments:**

    - `dataset`: a `minari.MinariDataset`; its metadata's `ref_min_score`/`ref_max_score` win
      when both are present.
    - `task`: a D4RL task name or Minari id used to find the environment family otherwise (the
      dataset's id is tried too).
    - `prefer`: `"dataset"` (metadata first) or `"d4rl"` (D4RL's values by family, ignoring the
      metadata).

    **Returns:**

    `(ref_min, ref_max, provenance)` with provenance `"minari dataset metadata"` or
    `"D4RL reference (docs/method.md §8.4)"`.

    **Raises:**

    `UnknownTaskError` when neither source has references.
    """
    if prefer not in ("dataset", "d4rl"):
        raise ValueError(f"reference_scores: prefer must be 'dataset' or 'd4rl', got {prefer!r}.")
    meta = _metadata(dataset) if prefer == "dataset" else {}
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    if lo is not None and hi is not None:
        return float(lo), float(hi), PROVENANCE_DATASET
    names = [n for n in (task, getattr(dataset, "id", None)) if isinstance(n, str)]
    for n in names:
        family = env_family(n)
        if family is not None:
            lo, hi = D4RL_REFERENCE_SCORES[family]
            return lo, hi, PROVENANCE_D4RL
    raise UnknownTaskError(
        f"No reference scores for {' / '.join(repr(n) for n in names) or 'this run'}: the dataset "
        f"has no ref_min_score/ref_max_score and no D4RL family "
        f"({', '.join(D4RL_REFERENCE_SCORES)}) is in its name."
    )


def normalized_score(
    returns: RealScalarLike | Sequence[RealScalarLike] | Float[ArrayLike, "*batch"],
    ref_min: RealScalarLike,
    ref_max: RealScalarLike,
) -> float | Float[np.ndarray, "*batch"]:
    r"""$100 (R - R_\text{min}) / (R_\text{max} - R_\text{min})$, elementwise.

    **Returns:**

    A float for a scalar `returns`, else a float64 array of the same shape (a list of per-episode
    returns gives an array of per-episode scores).
    """
    if float(ref_max) == float(ref_min):
        raise ValueError("normalized_score: ref_max equals ref_min.")
    r = np.asarray(returns, dtype=np.float64)
    score = 100.0 * (r - float(ref_min)) / (float(ref_max) - float(ref_min))
    return float(score) if score.ndim == 0 else score


def success_rate(
    successes: Shaped[ArrayLike, "*batch episodes"],
) -> float | Float[np.ndarray, "*batch"]:
    r"""D4RL's AntMaze score: $100 \cdot$ the fraction of episodes that reached the goal
    (each episode scores 0 or 1), over the last axis (`docs/method.md §12.3`).

    **Returns:**

    A float for one set of episodes, else a float64 array over the leading axes.
    """
    rate = 100.0 * np.mean(np.asarray(successes, dtype=np.float64), axis=-1)
    return float(rate) if np.ndim(rate) == 0 else rate
