"""What a run writes while it trains and when it ends: the rows of `metrics.csv`, the progress
bar's line, `summary.json` (strict JSON) and the learning curve. The numbers they hold are
computed in `_diagnostics.py`."""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
from typing import Any

import jax
import numpy as np

from ._checkpoint import atomic_write_bytes
from ._plots import plot_learning_curve
from ._run_folder import writing


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
