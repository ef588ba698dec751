"""Which step budget, and which ER-DP-QE configuration, under the rule of `docs/campaign.md`:
read from the learning curves of a campaign's runs, not from more runs.

A run of B steps is the first B steps of a longer run with the same seed and configuration:
the batches' and the updates' keys are `fold_in(seed key, step)` per chunk, no schedule depends
on the budget (the defaults have no learning-rate decay), and the chunk length is the same for
every budget that is a multiple of the evaluation period. So the periodic evaluation of a long
run at step B *is* the evaluation of a B-step run's policy (on the periodic evaluation's
episodes, 10 by default, not the final evaluation's 20), and its last-quarter mean is the mean
of the evaluations in the last quarter of the first B steps. `tests/app/test_protocol.py` pins
the prefix property.

For every dataset, every candidate budget B and every agent of the campaign, this prints the
IQM over seeds of the score at B (and of the last-quarter mean) with its stratified-bootstrap
95 % interval, and for every ER-DP-QE configuration the margin IQM(ER-DP-QE) − IQM(best other
agent at B) with its interval (`sdepolicy.app.difference_interval`); then the rule: per
(configuration, B), the worst lower end of that margin over the datasets, and the datasets
where the margin's interval lies below −5 (the issue's "more than 5 points below").

    python benchmarks/budgets.py --work results/campaign
    python benchmarks/budgets.py --work results/campaign --budgets 6000 10000 20000 --datasets pendulum-mixed

Writes `<work>/budgets.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from curves import REPO, read_campaign  # noqa: E402

from sdepolicy.app import difference_interval, interval_estimate, jsonable  # noqa: E402
from sdepolicy.app._statistics import aggregate_iqm  # noqa: E402


def _default(algo: str, field: str) -> str | None:
    """What a `--dataset` run uses for `field` without `--set`: the project's defaults over the
    config's."""
    import dataclasses

    from sdepolicy.app import PROJECT_DEFAULTS
    from sdepolicy.rl.agents import BCConfig, DiffusionQLConfig, ERDPQEConfig

    if field in PROJECT_DEFAULTS.get(algo, {}):
        return str(PROJECT_DEFAULTS[algo][field]).lower()
    config = {"erdpqe": ERDPQEConfig, "diffusion-ql": DiffusionQLConfig, "bc": BCConfig}[algo]
    fields = {f.name: f for f in dataclasses.fields(config)}
    return str(fields[field].default).lower() if field in fields else None


def config_label(label: str) -> str:
    """An agent's label without its budget and without overrides that repeat the default
    (`critic_layer_norm=false` is the defaults): the same configuration on every dataset."""
    algo, *parts = label.split(" (")[0].split()
    kept = [p for p in parts if p.split("=", 1)[1].lower() != _default(algo, p.split("=", 1)[0])]
    return " ".join([algo, *kept])


def at_budget(agent: dict[str, Any], budget: int) -> dict[str, np.ndarray] | None:
    """Per seed, the score at `budget` and the last-quarter mean of the first `budget` steps;
    None when a seed's curve does not reach `budget`."""
    last, quarter = [], []
    for seed in agent["seeds"]:
        evals = dict(seed["evaluations"])
        if budget not in evals:
            return None
        last.append(evals[budget])
        quarter.append(np.mean([v for s, v in evals.items() if 0.75 * budget <= s <= budget]))
    return {"last": np.array(last), "last_quarter": np.array(quarter)}


def analyse(campaign, budgets, reps, min_seeds):
    table: dict[str, Any] = {}
    for dataset, agents in sorted(campaign.items()):
        for budget in budgets:
            scores = {}
            for agent in agents:
                got = at_budget(agent, budget)
                if got is not None and len(got["last"]) >= min_seeds:
                    scores[config_label(agent["label"])] = (agent["algo"], got)
            if not scores:
                continue
            rows = {}
            for label, (algo, got) in scores.items():
                rows[label] = {
                    "algo": algo,
                    "seeds": len(got["last"]),
                    **{
                        k: interval_estimate({dataset: v}, aggregate_iqm, reps=reps)
                        for k, v in got.items()
                    },
                }
            others = {lab: r for lab, r in rows.items() if r["algo"] != "erdpqe"}
            last = lambda lab: {dataset: scores[lab][1]["last"]}  # noqa: E731
            for label, row in rows.items():
                if row["algo"] != "erdpqe":
                    continue
                if others:
                    best = max(others, key=lambda lab: others[lab]["last"].point)
                    row["margin_vs"] = best
                    row["margin"] = difference_interval(last(label), last(best), reps=reps)
                # and against every other ER-DP-QE configuration: is the change visible?
                row["vs_configs"] = {
                    other: difference_interval(last(label), last(other), reps=reps)
                    for other, r in rows.items()
                    if other != label and r["algo"] == "erdpqe"
                }
            table.setdefault(dataset, {})[budget] = rows
    return table


def rule(table) -> list[dict[str, Any]]:
    """Per (ER-DP-QE configuration, budget): the worst lower end of the margin over datasets."""
    found: dict[tuple[str, int], list[tuple[str, Any]]] = {}
    for dataset, by_budget in table.items():
        for budget, rows in by_budget.items():
            for label, row in rows.items():
                if "margin" in row:
                    found.setdefault((label, budget), []).append((dataset, row["margin"]))
    out = []
    for (label, budget), margins in sorted(found.items()):
        worst = min(margins, key=lambda m: m[1].low)
        out.append({
            "config": label,
            "budget": budget,
            "datasets": [d for d, _ in margins],
            "worst_low": worst[1].low,
            "worst_dataset": worst[0],
            "clearly_5_below": [d for d, m in margins if m.high < -5.0],
        })  # fmt: skip
    return out


def _iv(iv) -> str:
    return f"{iv.point:.1f} [{iv.low:.1f}, {iv.high:.1f}]"


def print_tables(table, decisions) -> None:
    for dataset, by_budget in table.items():
        print(f"\n{dataset}: IQM over seeds [95 % interval], score at B and last-quarter mean")
        print("| B | agent | seeds | at B | last quarter | margin vs best other at B |")
        print("|---|---|---|---|---|---|")
        for budget, rows in by_budget.items():
            for label, row in rows.items():
                margin = f"{_iv(row['margin'])} vs {row['margin_vs']}" if "margin" in row else ""
                print(f"| {budget} | {label} | {row['seeds']} | {_iv(row['last'])} | "
                      f"{_iv(row['last_quarter'])} | {margin} |")  # fmt: skip
    print("\nER-DP-QE configurations against each other: IQM(row) - IQM(column's) at B")
    print("| dataset | B | configuration | against | difference [95 % interval] |")
    print("|---|---|---|---|---|")
    for dataset, by_budget in table.items():
        for budget, rows in by_budget.items():
            done = set()
            for label, row in rows.items():
                for other, iv in row.get("vs_configs", {}).items():
                    if (other, label) not in done:
                        done.add((label, other))
                        print(f"| {dataset} | {budget} | {label} | {other} | {_iv(iv)} |")
    print("\nThe rule (docs/campaign.md): per configuration and budget, the worst lower end of "
          "IQM(ER-DP-QE) - IQM(best other) over the datasets")  # fmt: skip
    print("| configuration | B | datasets | worst lower end (dataset) | interval below -5 on |")
    print("|---|---|---|---|---|")
    for d in decisions:
        print(f"| {d['config']} | {d['budget']} | {len(d['datasets'])} | "
              f"{d['worst_low']:.1f} ({d['worst_dataset']}) | "
              f"{', '.join(d['clearly_5_below']) or 'none'} |")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=pathlib.Path, default=REPO / "results" / "campaign")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--budgets", type=int, nargs="+",
                   default=[6000, 10000, 15000, 20000, 30000])  # fmt: skip
    p.add_argument("--min-seeds", type=int, default=5, help="cells with fewer seeds are left out")
    p.add_argument("--reps", type=int, default=20_000, help="bootstrap replicates")
    p.add_argument("--out", type=pathlib.Path, help="default <work>/budgets.json")
    args = p.parse_args(argv)
    campaign = read_campaign(args.work, args.datasets)
    if not campaign:
        print(f"error: no finished runs under {args.work}/runs.", file=sys.stderr)
        return 2
    table = analyse(campaign, args.budgets, args.reps, args.min_seeds)
    decisions = rule(table)
    print_tables(table, decisions)
    out = args.out or args.work / "budgets.json"
    out.write_text(json.dumps(jsonable({"table": table, "rule": decisions}), indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
