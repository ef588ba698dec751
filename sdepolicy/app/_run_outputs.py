"""What a run writes while it trains and when it ends: the rows of `metrics.csv`, the checks of
each chunk (non-finite values, critic divergence), `summary.json` (strict JSON) and the learning
curve."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib
import sys
from typing import Any

import jax
import numpy as np

from ._checkpoint import atomic_write_bytes
from ._plots import plot_learning_curve
from ._run_folder import writing
from ._scores import normalized_score

#: Critic divergence: |mean Q| or the critics' RMS TD error beyond this many times the largest
#: value any return can have, r_max / (1 - gamma) with r_max the largest |reward| of the data.
CRITIC_DIVERGENCE_MARGIN = 2.0


def warn(message: str) -> None:
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


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


def strict_json(obj, path: str = "") -> tuple[Any, list[str]]:
    """`obj` with every NaN or infinity replaced by None, and the paths where that happened."""
    if isinstance(obj, dict):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = strict_json(v, f"{path}.{k}" if path else str(k))
            bad += b
        return out, bad
    if isinstance(obj, list | tuple):
        out, bad = [], []
        for i, v in enumerate(obj):
            x, b = strict_json(v, f"{path}[{i}]")
            out.append(x)
            bad += b
        return out, bad
    if isinstance(obj, float | np.floating) and not math.isfinite(obj):
        return None, [path]
    if isinstance(obj, np.floating):
        return float(obj), []
    if isinstance(obj, np.integer):
        return int(obj), []
    return obj, []


def finish(out, summary, history, diverged_at, elapsed, rate, num_seeds) -> dict[str, Any]:
    """Write `summary.json` (strict JSON) and the learning curve; returns the summary."""
    summary["critic_divergence"] = {**summary["critic_divergence"], "first_step": diverged_at}
    summary["critic_divergence"]["diverged"] = bool(diverged_at)
    summary["wall_time_s"] = elapsed
    summary["update_steps_per_s"] = rate
    summary["devices"] = [str(d) for d in jax.devices()]
    summary, bad_paths = strict_json(summary)
    if bad_paths:
        summary["non_finite_values"] = bad_paths
    path = out / "summary.json"
    with writing(path, out):
        atomic_write_bytes(path, json.dumps(summary, indent=2, allow_nan=False).encode())
        if history:
            plot_learning_curve(out / "learning_curve.png", history, summary)
    return summary


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


def postfix(metrics, record) -> dict[str, str]:
    post = {k: f"{float(np.mean(v)):.3g}" for k, v in metrics.items() if "loss" in k}
    if record is not None:
        post["return"] = f"{np.mean(record['returns']):.1f}"
    return post


def truncate_csv(path: pathlib.Path, step: int) -> None:
    """Drop rows written after the checkpoint we resume from (a killed run may have logged
    steps whose state was never saved), and a partial last row; rewritten atomically."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    width = len(rows[0])
    kept = [rows[0]] + [
        r for r in rows[1:] if len(r) == width and r[0].isdigit() and int(r[0]) <= step
    ]
    buf = io.StringIO()
    csv.writer(buf).writerows(kept)
    atomic_write_bytes(path, buf.getvalue().encode())


def append_csv(path, step, seeds, metrics, record, over=None) -> None:
    """One row per seed; `over` (per seed, or None for agents without critics) is the critic
    divergence flag of the chunk."""
    names = sorted(metrics)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            flag = [] if over is None else ["critic_over_bound"]
            w.writerow(["step", "seed", *names, *flag, "eval_return", "eval_normalized"])
        for i, seed in enumerate(seeds):
            ev = ["", ""] if record is None else [record["returns"][i], record["normalized"][i]]
            flag = [] if over is None else [int(over[i])]
            w.writerow([step, seed, *[f"{float(metrics[n][i]):.6g}" for n in names], *flag, *ev])
