"""What a run's numbers say, computed from them (no file is written here): the checks of each
chunk (non-finite values, critic divergence against the largest value a return can have) and
the summary's scores (the last evaluation, the last quarter of training, the best evaluation,
mean ± std over seeds). `_run_outputs.py` writes them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ._run_folder import warn
from ._scores import normalized_score

#: Critic divergence: |mean Q| or the critics' RMS TD error beyond this many times the largest
#: value any return can have, r_max / (1 - gamma) with r_max the largest |reward| of the data.
CRITIC_DIVERGENCE_MARGIN = 2.0


def critic_bound(transitions, config) -> float | None:
    gamma = getattr(config, "gamma", None)
    if gamma is None:
        return None
    r_max = max(float(np.max(np.abs(np.asarray(transitions.rewards)))), 1e-6)
    return CRITIC_DIVERGENCE_MARGIN * r_max / (1.0 - gamma)


def critic_divergence(metrics, bound, seeds, step, first_steps) -> np.ndarray | None:
    """Per seed, whether the chunk's critics went beyond `bound` (|mean Q| or RMS TD error);
    the first such update of each seed is recorded in `first_steps` (and warned about once)."""
    if bound is None or "q_mean" not in metrics:
        return None
    q = np.abs(metrics["q_mean"])
    rms = np.sqrt(np.abs(metrics.get("critic_loss", np.zeros_like(q))))
    with np.errstate(invalid="ignore"):
        exceed = (q > bound) | (rms > bound)
    for i, seed in enumerate(seeds):
        if exceed[i].any() and str(seed) not in first_steps:
            j = int(np.argmax(exceed[i]))
            first_steps[str(seed)] = step + j + 1
            warn(
                f"critic divergence (seed {seed}, update {step + j + 1}): |mean Q| {q[i, j]:.3g} "
                f"or RMS TD error {rms[i, j]:.3g} exceeds {CRITIC_DIVERGENCE_MARGIN:g} x "
                f"r_max/(1-gamma) = {bound:.3g}; training continues (recorded in metrics.csv "
                "and summary.json)."
            )
    return exceed.any(axis=1)


def non_finite(report, seeds, step, chunk) -> dict | None:
    """What the compiled chunk's finite report says went NaN or infinite, if anything."""
    first = report["first_bad"]
    params = report["params"]
    bad = [i for i in range(len(seeds)) if first[i] >= 0 or not all(v[i] for v in params.values())]
    if not bad:
        return None
    at = min(step + int(first[i]) + 1 if first[i] >= 0 else step + chunk for i in bad)
    names = sorted(k for k, v in report["metrics"].items() if np.any(v))
    parts = sorted(k for k, v in params.items() if not np.all(v))
    what = []
    if names:
        what.append("non-finite " + ", ".join(names))
    if parts:
        what.append("non-finite parameters in " + ", ".join(parts))
    which = [seeds[i] for i in bad]
    text = " and ".join(what) + f" (seed{'s' if len(which) > 1 else ''} "
    text += ", ".join(map(str, which)) + ")"
    return {"step": int(at), "what": text, "metrics": names, "parameters": parts, "seeds": which}


def mean_std(x) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def summarise(
    spec, config, steps, history, data_returns, refs, *, name, out, settings, q_bound
) -> dict[str, Any]:
    ref_min, ref_max, provenance = refs
    summary = {
        "name": name,
        "task": spec.task,
        "algo": spec.algo,
        "seeds": list(spec.seeds),
        "steps": steps,
        "run": settings,
        "out": out,
        "config": dataclasses.asdict(config),
        "reference_scores": {"min": ref_min, "max": ref_max, "provenance": provenance},
        "dataset": {
            "ids": list(spec.dataset) if spec.dataset else None,
            "episodes": int(data_returns.size),
            "mean_return": float(data_returns.mean()),
            "normalized": float(normalized_score(data_returns.mean(), ref_min, ref_max)),
        },
        "last_evaluation": None,
        "last_quarter": None,
        "best_evaluation": None,
        "critic_divergence": {
            "rule": f"|mean Q| or the critics' RMS TD error above {CRITIC_DIVERGENCE_MARGIN:g} x "
            "r_max/(1-gamma), r_max the largest |reward| of the training data; first_step: the "
            "first update where a seed's critics did so",
            "bound": q_bound,
        },
        "evaluations": history,
    }
    if history:
        returns = np.array([h["returns"] for h in history])  # [evals, seeds]
        normalized = np.array([h["normalized"] for h in history])
        summary["last_evaluation"] = {
            "step": history[-1]["step"],
            "episodes": history[-1].get("episodes", settings["eval_episodes"]),
            "return": mean_std(returns[-1]),
            "normalized": mean_std(normalized[-1]),
        }
        summary["last_quarter"] = last_quarter(history, steps)
        summary["best_evaluation"] = {
            "note": "per seed the max over evaluations, then mean ± std over seeds "
            "(optimistic: the reference code's online model selection)",
            "return": mean_std(returns.max(axis=0)),
            "normalized": mean_std(normalized.max(axis=0)),
        }
    return summary


#: The last quarter of training: evaluations at step >= LAST_QUARTER x steps.
LAST_QUARTER = 0.75


def last_quarter(history, steps) -> dict[str, Any] | None:
    """Per seed the mean over the evaluations of the last quarter of training (step >= 3/4 of
    the steps), then mean ± std over seeds: robust to one lucky or unlucky last evaluation
    (docs/protocol.md). None when no evaluation lies there (a run stopped early)."""
    start = LAST_QUARTER * steps
    evals = [h for h in history if h["step"] >= start]
    if not evals:
        return None
    return {
        "from_step": math.ceil(start),
        "steps": [h["step"] for h in evals],
        "return": mean_std(np.mean([h["returns"] for h in evals], axis=0)),
        "normalized": mean_std(np.mean([h["normalized"] for h in evals], axis=0)),
        "per_seed_normalized": np.mean([h["normalized"] for h in evals], axis=0).tolist(),
    }
