"""Learning curves of a campaign: where each agent plateaus, and whether its critics diverge.

Reads the finished (or running) run folders that `benchmarks/real_data.py` keeps under
`<work>/runs/<dataset>/<algo>-<key>/seed-<s>` (each with `cell.json` beside the seeds) and, per
dataset, draws one figure with two panels:

- the normalised score of every periodic evaluation, one thin line per seed and the mean over
  seeds thick, per agent (an agent is an algorithm with its `--set` overrides and budget);
- the critics' TD loss (`critic_loss`, the mean over each evaluation period) on a log scale, the
  first sign of a divergence.

and prints, per dataset and agent, the mean score at each evaluation, the **plateau step** (the
first evaluation from which the mean over seeds stays within `--band` points of its final value,
the mean over the last quarter of training) and the ratio of the critics' TD loss over the last
quarter to its minimum over the run's later half (a late rise says the critics drift).

    python benchmarks/curves.py --work runs/campaign                  # every dataset found
    python benchmarks/curves.py --work runs/campaign --out docs/figures --datasets pendulum-expert

Writes `<out>/curves_<dataset>.png` and `<out>/curves.json` (updating the entries of the
datasets it analysed, keeping the others).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
COLOURS = {"bc": "tab:blue", "diffusion-ql": "tab:orange", "erdpqe": "tab:green"}


def _label(cell: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((cell.get("overrides") or {}).items())]
    steps = cell.get("budget", {}).get("steps")
    return " ".join([cell["algo"], *parts, *([f"({steps} steps)"] if steps else [])])


def _critic_loss_per_period(path: pathlib.Path, period: int) -> list[tuple[int, float]]:
    """The mean `critic_loss` over each `period` steps of a run's metrics.csv (seed 0 rows)."""
    if not path.is_file():
        return []
    sums: dict[int, list[float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            value = row.get("critic_loss")
            if not value:
                continue
            step = int(row["step"])
            end = ((step - 1) // period + 1) * period
            sums.setdefault(end, []).append(float(value))
    return [(s, float(np.mean(v))) for s, v in sorted(sums.items())]


def read_campaign(work: pathlib.Path, datasets: list[str] | None) -> dict[str, list[dict]]:
    """Per dataset, one entry per agent: its label, algorithm and, per seed, the evaluations
    `(step, normalised score)` and the critics' loss per evaluation period."""
    found: dict[str, list[dict]] = {}
    for cell_path in sorted((work / "runs").glob("*/*/cell.json")):
        cell = json.loads(cell_path.read_text())
        dataset = cell["dataset"]
        if datasets and dataset not in datasets:
            continue
        seeds = []
        for seed_dir in sorted(cell_path.parent.glob("seed-*")):
            summary_path = seed_dir / "summary.json"
            if not summary_path.is_file():
                continue
            summary = json.loads(summary_path.read_text())
            evals = [(e["step"], float(np.mean(e["normalized"]))) for e in summary["evaluations"]]
            if not evals:
                continue
            period = evals[0][0]
            seeds.append(
                {
                    "seed": int(seed_dir.name.split("-")[1]),
                    "status": summary.get("status"),
                    "evaluations": evals,
                    "critic_loss": _critic_loss_per_period(seed_dir / "metrics.csv", period),
                }
            )
        if seeds:
            found.setdefault(dataset, []).append(
                {"label": _label(cell), "algo": cell["algo"], "seeds": seeds}
            )
    return found


def analyse(agent: dict[str, Any], band: float) -> dict[str, Any]:
    """The mean curve over the seeds that share the longest common evaluation grid, its final
    value (mean over the last quarter), its plateau step and the critics' late-loss ratio."""
    grids = [tuple(s for s, _ in seed["evaluations"]) for seed in agent["seeds"]]
    grid = max(grids, key=len)
    complete = [seed for seed, g in zip(agent["seeds"], grids, strict=True) if g == grid]
    scores = np.array([[v for _, v in seed["evaluations"]] for seed in complete])
    mean = scores.mean(axis=0)
    steps = np.array(grid)
    last_quarter = steps >= 0.75 * steps[-1]
    final = float(mean[last_quarter].mean())
    inside = np.abs(mean - final) <= band
    # The first index from which every later mean stays inside the band.
    # None when even the last evaluation is outside the band (a curve still moving at its end).
    plateau_index = next((i for i in range(len(mean)) if inside[i:].all()), None)
    out = {
        "label": agent["label"],
        "algo": agent["algo"],
        "seeds": [seed["seed"] for seed in complete],
        "steps": steps.tolist(),
        "mean": mean.tolist(),
        "per_seed": scores.tolist(),
        "final": final,
        "plateau_step": None if plateau_index is None else int(steps[plateau_index]),
    }
    ratios = []
    for seed in complete:
        loss = np.array([v for _, v in seed["critic_loss"]])
        if len(loss) >= 4:
            later = loss[len(loss) // 2 :]
            ratios.append(float(later[-max(1, len(loss) // 4) :].mean() / later.min()))
    out["critic_late_ratio"] = ratios
    return out


def _plateau(result: dict[str, Any]) -> str:
    step = result["plateau_step"]
    return "none (still moving at the end)" if step is None else str(step)


def plot(dataset: str, agents: list[dict], analyses: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    seen: dict[str, int] = {}
    for agent, result in zip(agents, analyses, strict=True):
        c = COLOURS.get(agent["algo"], None)
        # Configurations of one algorithm share its colour and differ in the line's style.
        ls = ("-", "--", ":", "-.")[seen.setdefault(agent["algo"], 0) % 4]
        seen[agent["algo"]] += 1
        for row in result["per_seed"]:
            ax.plot(result["steps"], row, color=c, lw=0.6, alpha=0.35, ls=ls)
        ax.plot(result["steps"], result["mean"], color=c, lw=2, ls=ls,
                label=f"{result['label']}: {len(result['seeds'])} seeds, plateau "
                f"{_plateau(result)}")  # fmt: skip
        for i, seed in enumerate(agent["seeds"]):
            if seed["critic_loss"]:
                s, v = zip(*seed["critic_loss"], strict=True)
                bx.plot(s, v, color=c, lw=1, alpha=0.7, ls=ls,
                        label=agent["label"] if i == 0 else None)  # fmt: skip
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("normalised score (periodic evaluation)")
    ax.set_title(f"{dataset}: score (thin: seeds, thick: mean)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    bx.set_yscale("log")
    bx.set_xlabel("gradient steps")
    bx.set_ylabel("critics' TD loss (mean per period)")
    bx.set_title(f"{dataset}: critics' TD loss, one line per seed", fontsize=10)
    if bx.get_legend_handles_labels()[0]:
        bx.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=pathlib.Path, default=REPO / "runs" / "real_data")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--out", type=pathlib.Path, help="folder of the figures (default <work>)")
    p.add_argument("--band", type=float, default=5.0, help="plateau band, normalised points")
    args = p.parse_args(argv)
    campaign = read_campaign(args.work, args.datasets)
    if not campaign:
        print(f"error: no finished runs under {args.work / 'runs'}.", file=sys.stderr)
        return 2
    out = args.out or args.work
    report = {}
    for dataset, agents in campaign.items():
        analyses = [analyse(a, args.band) for a in agents]
        report[dataset] = analyses
        plot(dataset, agents, analyses, out / f"curves_{dataset}.png")
        print(f"\n{dataset} (mean normalised score over the seeds at each evaluation)")
        steps = max((r["steps"] for r in analyses), key=len)
        print("| agent | seeds | " + " | ".join(f"{s // 1000}k" for s in steps[1::2])
              + " | last quarter | plateau step | critics' late loss / min |")  # fmt: skip
        print("|---" * (len(steps[1::2]) + 5) + "|")
        for r in analyses:
            by_step = dict(zip(r["steps"], r["mean"], strict=True))
            cells = " | ".join(f"{by_step[s]:.1f}" if s in by_step else "—" for s in steps[1::2])
            ratios = ", ".join(f"{x:.2f}" for x in r["critic_late_ratio"]) or "—"
            print(f"| {r['label']} | {len(r['seeds'])} | {cells} | {r['final']:.1f} | "
                  f"{_plateau(r)} | {ratios} |")  # fmt: skip
    # Datasets not analysed this time keep their entries (a campaign is read dataset by dataset).
    path = out / "curves.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(kept | report, indent=1) + "\n")
    print(f"\nwrote {out}/curves_*.png and {out / 'curves.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
