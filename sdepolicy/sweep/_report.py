"""The report of a sweep over its finished runs (docs/protocol.md): per dataset and aggregated
over datasets, the mean and the interquartile mean of the normalised scores with
stratified-bootstrap 95 % intervals, of the last evaluation and of the last-quarter mean; the
probability of improvement of ER-DP-QE over BC and Diffusion-QL; performance profiles; the
evaluation's share of the run time; and each run's status (completed, diverged, failed with its
error line). `benchmarks/real_data.py` and `python -m sdepolicy.sweep` both write it."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import platform
from typing import Any

import numpy as np

#: The order of the agents in the tables.
AGENT_ORDER = ("bc", "diffusion-ql", "erdpqe")


def label_cells(cells: list[dict]) -> dict[str, str]:
    """key -> agent label: the algorithm, with the settings that tell its cells apart when
    several configurations of one algorithm are in the report."""
    labels = {}
    for algo in {c["algo"] for c in cells}:
        mine = [c for c in cells if c["algo"] == algo]
        variants = {json.dumps([c["overrides"], c["budget"], c["reward_transform"]],
                               sort_keys=True) for c in mine}  # fmt: skip
        for c in mine:
            if len(variants) == 1:
                labels[c["key"]] = algo
                continue
            parts = [f"{k}={v}" for k, v in sorted(c["overrides"].items())]
            others = [x for x in mine if x is not c]
            if any(x["budget"]["steps"] != c["budget"]["steps"] for x in others):
                parts.append(f"steps={c['budget']['steps']}")
            if any(x["reward_transform"] != c["reward_transform"] for x in others):
                parts.append(f"rewards={c['reward_transform']}")
            labels[c["key"]] = f"{algo}[{','.join(parts) or c['key'][:6]}]"
    return labels


KINDS = {"last": "last evaluation", "last_quarter": "mean over the last quarter of training"}


def _scores(rows, labels, kind) -> dict[str, dict[str, np.ndarray]]:
    """agent -> dataset -> the normalised scores of its completed runs."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r.get("status") == "completed" and r.get(kind) is not None:
            out.setdefault(labels[r["key"]], {}).setdefault(r["dataset"], []).append(r[kind])
    return {a: {d: np.asarray(v) for d, v in per.items()} for a, per in out.items()}


def _ci(iv) -> str:
    return f"{iv.point:.1f} [{iv.low:.1f}, {iv.high:.1f}]"


def _p(iv) -> str:
    return f"{iv.point:.2f} [{iv.low:.2f}, {iv.high:.2f}]"


def _order(agents) -> list[str]:
    rank = {a: i for i, a in enumerate(AGENT_ORDER)}
    return sorted(agents, key=lambda a: (rank.get(a.split("[")[0], 9), a))


def build_report(rows, cells, names, *, reps: int, seed: int = 0) -> dict[str, Any]:
    """The protocol's statistics of the finished runs and their tables (Markdown lines)."""
    from sdepolicy.app import compare, describe, performance_profile, profile_thresholds

    labels = label_cells(cells)
    agents = _order({labels[c["key"]] for c in cells})
    data_info = {c["dataset"]: c["data_info"] for c in cells}
    report: dict[str, Any] = {"agents": agents, "kinds": KINDS, "stats": {}, "improvement": {}}
    lines: list[str] = []
    profiles: dict[str, dict[str, Any]] = {}
    counts = {}
    for kind, what in KINDS.items():
        scores = _scores(rows, labels, kind)
        stats = {a: describe(scores[a], reps=reps, seed=seed) for a in agents if a in scores}
        report["stats"][kind] = stats
        counts[kind] = {a: {d: len(x) for d, x in scores[a].items()} for a in scores}
        head = ["dataset", "data"] + [f"{a} {s}" for a in agents for s in ("mean", "IQM")]
        lines += [f"**{what.capitalize()}** (normalised; 95 % stratified-bootstrap intervals; "
                  "runs per cell in parentheses)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        for d in [n for n in names if any(n in per for per in scores.values())]:
            cells_ = [d, f"{data_info[d]['normalized']:.1f}"]
            for a in agents:
                per = stats.get(a, {}).get("per_dataset", {}).get(d)
                if per is None:
                    cells_ += ["—", "—"]
                else:
                    cells_ += [f"{_ci(per['mean'])} ({per['runs']})", _ci(per["iqm"])]
            lines.append("| " + " | ".join(cells_) + " |")
        agg = ["**aggregate**", ""]
        for a in agents:
            if a in stats:
                g = stats[a]["aggregate"]
                agg += [
                    f"{_ci(g['mean'])} ({g['runs']} runs, {g['datasets']} datasets)",
                    _ci(g["iqm"]),
                ]
            else:
                agg += ["—", "—"]
        lines += ["| " + " | ".join(agg) + " |", ""]
        # P(ER-DP-QE > BC) and P(ER-DP-QE > Diffusion-QL), on the datasets both have.
        base = lambda a: a.split("[")[0]
        pairs = [(x, y) for x in agents for y in agents if base(x) == "erdpqe"
                 and base(y) in ("bc", "diffusion-ql") and x in scores and y in scores]  # fmt: skip
        imp = {}
        for x, y in pairs:
            common = sorted(set(scores[x]) & set(scores[y]))
            if common:
                sx = {d: scores[x][d] for d in common}
                sy = {d: scores[y][d] for d in common}
                imp[f"P({x} > {y})"] = compare(sx, sy, reps=reps, seed=seed)
        report["improvement"][kind] = imp
        if imp:
            head = ["dataset", *imp]
            lines += [f"**Probability of improvement, {what}** (P(X > Y): a run of X scores "
                      "above a run of Y, ties one half; 95 % intervals)", "",
                      "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
            datasets = [n for n in names if any(n in v["per_dataset"] for v in imp.values())]
            for d in datasets:
                cells_ = [d] + [_p(v["per_dataset"][d]) if d in v["per_dataset"] else "—"
                                for v in imp.values()]  # fmt: skip
                lines.append("| " + " | ".join(cells_) + " |")
            agg = ["**aggregate**"] + [_p(v["aggregate"]) for v in imp.values()]
            lines += ["| " + " | ".join(agg) + " |", ""]
        if scores:
            tau = profile_thresholds(*scores.values())
            profiles[what] = {
                a: performance_profile(scores[a], tau, seed=seed) for a in agents if a in scores
            }
    report["profiles"] = profiles
    report["runs_per_cell"] = counts["last"]
    if len({n for c in counts["last"].values() for n in c.values()}) > 1:
        lines.append(
            "Note: the cells have different numbers of runs (above in parentheses); the "
            "aggregate pools the runs, so a dataset with more runs weighs more (docs/protocol.md)."
        )
    # Time: training against evaluation, over the runs.
    timed = [r for r in rows if r.get("eval_s") is not None and r.get("train_s")]
    if timed:
        train = sum(r["train_s"] for r in timed)
        evals = sum(r["eval_s"] for r in timed)
        report["time"] = {"runs": len(timed), "train_s": train, "eval_s": evals,
                          "eval_share": evals / (train + evals)}  # fmt: skip
        lines.append(
            f"Time over {len(timed)} runs: training {train / 60:.1f} min, evaluation "
            f"{evals / 60:.1f} min ({100 * evals / (train + evals):.1f} % of the two)."
        )
    report["tables"] = lines
    return report


def overview(names, algos_or_agents, data, results) -> list[str]:
    """The table per dataset and agent: last, last quarter and best (mean ± std over seeds)."""
    by = {(r["dataset"], r["agent"]): r for r in results}
    head = ["dataset", "transitions", "data (norm.)"]
    for a in algos_or_agents:
        head += [f"{a} last", f"{a} last quarter", f"{a} best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        d = data[n]
        cells = [n, f"{d['transitions']:,}", f"{d['mean_return']:.1f} ({d['normalized']:.1f})"]
        for a in algos_or_agents:
            r = by.get((n, a), {})
            if "last" in r:
                cells += [_fmt(r["last"]), _fmt(r["last_quarter"]), _fmt(r["best"])]
            else:
                what = r.get("error", "not run")
                cells += [what.split(":")[0][:20], "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mean_std(values) -> dict[str, float] | None:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "runs": int(x.size)}  # fmt: skip


def cell_results(cells, rows, labels) -> list[dict[str, Any]]:
    """Per (dataset, agent): mean ± std over its completed runs, and what did not finish."""
    results = []
    for c in cells:
        mine = [r for r in rows if r["key"] == c["key"]]
        done = [r for r in mine if r.get("status") == "completed"]
        res = {"dataset": c["dataset"], "algo": c["algo"], "agent": labels[c["key"]],
               "key": c["key"], "seeds": sorted(r["seed"] for r in done),
               "steps": c["budget"]["steps"]}  # fmt: skip
        if done:
            for k in ("last", "last_quarter", "best"):
                res[k] = _mean_std(r[k] for r in done)
            res["wall_s"] = sum(r.get("train_s") or 0 for r in done)
        problems = [r for r in mine if r.get("status") != "completed"]
        if problems:
            res["not_completed"] = [{k: r.get(k) for k in ("seed", "status", "message")}
                                    for r in problems]  # fmt: skip
            if not done:
                res["error"] = problems[0].get("message") or problems[0]["status"]
        results.append(res)
    return results


def _fmt(stat: dict | None) -> str:
    if stat is None:
        return "—"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def machine_line() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    devices = ", ".join(str(d) for d in jax.devices())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores ({cpu}); jax {jax.__version__} on {devices}; load {load}"


STATUSES = ("completed", "diverged", "failed", "skipped", "busy", "unfinished", "interrupted")


def status_lines(rows, labels) -> list[str]:
    """Each run's status: how many runs have each, and a line per run that did not complete
    (diverged, failed with its error line, skipped, busy, unfinished)."""
    if not rows:
        return []
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status") or "unknown"] = counts.get(r.get("status") or "unknown", 0) + 1
    order = sorted(counts, key=lambda s: (STATUSES.index(s) if s in STATUSES else 99, s))
    lines = ["**Runs**: " + ", ".join(f"{counts[s]} {s}" for s in order), ""]
    others = [r for r in rows if r.get("status") != "completed"]
    if others:
        lines += ["| dataset | agent | seed | status | message |", "|---|---|---|---|---|"]
        for r in others:
            agent = labels.get(r.get("key"), r.get("algo"))
            seed = "—" if r.get("seed") is None else r["seed"]
            message = str(r.get("message") or "").replace("|", "\\|")
            lines.append(f"| {r['dataset']} | {agent} | {seed} | {r.get('status')} | {message} |")
        lines.append("")
    return lines


def write_report(
    out: pathlib.Path,
    cells,
    rows,
    names,
    *,
    reps: int,
    seeds,
    wall: float,
    title: str = "Sweep report",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`<out>` (JSON), `<out>.md` and `<out>_profiles.png`; returns the JSON's payload. `rows`
    may hold runs of no cell (a dataset that could not be read): they appear in the statuses."""
    from sdepolicy.app import jsonable, plot_performance_profiles

    out = pathlib.Path(out)
    labels = label_cells(cells)
    keys = {c["key"] for c in cells}
    cell_rows = [r for r in rows if r.get("key") in keys]
    results = cell_results(cells, cell_rows, labels)
    report = build_report(cell_rows, cells, names, reps=reps)
    data = {c["dataset"]: c["data"] | c["data_info"] for c in cells}
    names = [n for n in names if n in data]
    agents = report["agents"]
    table = overview(names, agents, data, results)
    statuses = status_lines(rows, labels)
    png = out.with_name(out.stem + "_profiles.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if report["profiles"]:
        plot_performance_profiles(
            png, report["profiles"],
            title=f"Performance profiles over {len(names)} dataset(s): {', '.join(names)}",
        )  # fmt: skip
    payload = {
        "machine": machine_line(),
        "wall_s": wall,
        "seeds": list(seeds),
        **(extra or {}),
        "datasets": data,
        "cells": cells,
        "runs": rows,
        "results": results,
        "table": table,
        "statuses": statuses,
        "report": jsonable(report),
        "profiles_png": str(png),
    }
    out.write_text(json.dumps(payload, indent=2, default=float))
    md = [f"# {title}", "", f"{payload['machine']}", "", *table, "", *report["tables"], "",
          *statuses, f"![performance profiles]({png.name})", ""]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md))
    return payload


def progress_line(row: dict) -> str:
    """One line per run as it finishes."""
    what = f"[{row['dataset']} / {row['algo']} / seed {row['seed']}]"
    if row.get("last") is None:
        return f"{what} {row['status']}: {row.get('message')}"
    how = "cached" if row["cached"] else ("resumed" if row.get("resumed") else "trained")
    if row.get("status") == "diverged":
        how += f" ({row.get('message')})"
    share = ""
    if row.get("eval_s") is not None and row.get("train_s"):
        share = f", evaluation {100 * row['eval_s'] / (row['eval_s'] + row['train_s']):.0f} %"
    return (f"{what} {how}: last {row['last']:.1f}, last quarter {row['last_quarter']:.1f}, "
            f"best {row['best']:.1f} ({row['train_s']:.0f} s of training{share})")  # fmt: skip
