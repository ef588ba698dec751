"""The learning-curve figure of a run."""

from __future__ import annotations

import io
import pathlib
from typing import Any

import numpy as np

from ._checkpoint import atomic_write_bytes


def plot_learning_curve(path: pathlib.Path, history: list[dict], summary: dict[str, Any]) -> None:
    """Evaluation return against gradient steps: mean ± std over seeds, each seed faintly, and
    the dataset's mean return for comparison. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history])
    returns = np.array([h["returns"] for h in history])  # [evals, seeds]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i in range(returns.shape[1]):
        ax.plot(steps, returns[:, i], color="tab:blue", alpha=0.25, lw=1)
    mean = returns.mean(axis=1)
    std = returns.std(axis=1, ddof=1) if returns.shape[1] > 1 else np.zeros_like(mean)
    n = returns.shape[1]
    label = f"{summary['algo']} ({n} seed{'s' if n > 1 else ''})"
    ax.plot(steps, mean, color="tab:blue", lw=2, marker="o", label=label)
    ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.2)
    ax.axhline(
        summary["dataset"]["mean_return"], color="tab:gray", ls="--", label="dataset mean return"
    )
    refs = summary["reference_scores"]
    ax.axhline(refs["max"], color="tab:green", ls=":", label="reference max (score 100)")
    ax.axhline(refs["min"], color="tab:red", ls=":", label="reference min (score 0)")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("evaluation return")
    name = summary.get("name", summary["task"])
    # A --dataset run is named after its dataset; the preset only lends its hyper-parameters.
    preset = f" ({summary['task']} settings)" if name != summary["task"] else ""
    ax.set_title(f"{name}: {summary['algo']}{preset}", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Rendered in memory and written atomically, like every output of a run.
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_performance_profiles(
    path: pathlib.Path,
    panels: dict[str, dict[str, Any]],
    *,
    title: str | None = None,
    xlabel: str = "normalised score τ",
) -> None:
    """Performance profiles (Agarwal et al. 2021, `docs/protocol.md`): per panel, for each
    agent the fraction of runs scoring above τ against τ, with its bootstrap band shaded.
    `panels` maps a panel's title to `{agent: Profile}` (`sdepolicy.app.performance_profile`);
    one panel per entry, side by side, sharing the y axis. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.0), dpi=120, sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    agents = sorted({a for profiles in panels.values() for a in profiles})
    for ax, (name, profiles) in zip(axes[0], panels.items(), strict=False):
        for agent, prof in profiles.items():
            color = colors[agents.index(agent) % len(colors)]
            ax.plot(prof.thresholds, prof.fraction, color=color, lw=2, label=agent)
            ax.fill_between(prof.thresholds, prof.low, prof.high, color=color, alpha=0.2, lw=0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[0][0].set_ylabel("fraction of runs with score > τ")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
