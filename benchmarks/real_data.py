"""Real data recorded by others: diffusion BC, Diffusion-QL and ER-DP-QE with the project's
defaults, on every dataset of a folder of real offline-RL files, under the protocol of
`docs/protocol.md`: 5 seeds, one run per (dataset, agent, config, seed, budget), cached, and a
report with stratified-bootstrap confidence intervals.

    python benchmarks/real_data.py                      # all datasets, seeds 0-4, defaults
    python benchmarks/real_data.py --datasets pendulum-random pendulum-expert
    python benchmarks/real_data.py --seeds 5 6 7        # three more seeds: only those train
    python benchmarks/real_data.py --set alpha=0        # an ablation (runs of its own)
    python benchmarks/real_data.py --report-only        # the report of the finished runs
    python benchmarks/real_data.py --quick              # smoke test on the slices in tests/data

Each file is imported into a private Minari store (`<work>/datasets`) with
`sdepolicy.app.importers.import_dataset` (its known-file defaults give the environment and the
reference scores), then every algorithm is trained with `sdepolicy.app.run` exactly as
`python examples/d4rl_train.py --dataset <id> --algo <algo> --seeds <seed>` would: the defaults
of a `--dataset` run (the embedded task's hyper-parameters and step budget) unless `--set` or
`--steps` say otherwise.

**The cache.** A run is one seed. Its folder is `<work>/runs/<dataset>/<algo>-<key>/seed-<s>`,
where `<key>` hashes what decides its result: the dataset (its source files' SHA-256, the
transitions imported), the algorithm, its full config (the presets' values with `--set`
applied), the reward transform and the budget (steps, evaluation period and episodes, final
evaluation episodes, updates per call); `cell.json` beside the seeds records it. A finished run
(`summary.json`) is read, not re-run; a killed one is resumed from its checkpoint; so adding
seeds, datasets or an ablation trains only what is new, and a campaign killed at any point
continues with the same command. Run one campaign per `--work` at a time.

**The report** (printed, `<out>.md`, `<out>.json`, `<out>_profiles.png`): per dataset and
aggregated over datasets, the mean and the interquartile mean (IQM) of the normalised scores
with stratified-bootstrap 95 % intervals, of the last evaluation (20 episodes) and of the mean
over the last quarter of training; the probability of improvement of ER-DP-QE over BC and over
Diffusion-QL; performance profiles; the evaluation's share of the run time.

Datasets (files from the folder given by `--data-dir`, by default the `shared/data` folder
beside the repository; their provenance and licences are in the README's table):

- `pendulum-random`: d3rlpy's uniform-random Pendulum buffer (498 episodes).
- `pendulum-expert`: stable-baselines' GAIL expert rollouts (100 episodes).
- `pendulum-mixed-real`: a medium-expert-like mixture built here, the first 100 random episodes
  followed by the 100 expert ones (half and half, as D4RL's medium-expert).
- `hopper-expert`, `halfcheetah-expert`, `walker2d-expert`, `ant-expert`: cs285's two expert
  episodes of each MuJoCo task (behaviour-cloning-level checks: 2,000 transitions).
- `door-human`: the 25 Adroit door human demonstrations (D4RL's `door-human` source; needs the
  `robotics` extra to evaluate).

Pendulum scores are normalised with −1229 (random) and −150 (expert); the others with D4RL's
reference scores.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import platform
import shutil
import sys
import time
from typing import Any

import h5py
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
ALGOS = ("bc", "diffusion-ql", "erdpqe")

# name -> (file names in the data folder, files in the quick (tests/data) folder)
DATASETS: dict[str, dict[str, Any]] = {
    "pendulum-random": {"file": "d3rlpy_pendulum_random.h5"},
    "pendulum-expert": {"file": "sb_expert_pendulum.npz"},
    "pendulum-mixed-real": {"mixture": ("pendulum-random-100", "pendulum-expert")},
    "hopper-expert": {"file": "cs285_expert_Hopper-v4.pkl"},
    "halfcheetah-expert": {"file": "cs285_expert_HalfCheetah-v4.pkl"},
    "walker2d-expert": {"file": "cs285_expert_Walker2d-v4.pkl"},
    "ant-expert": {"file": "cs285_expert_Ant-v4.pkl"},
    "door-human": {"file": "hand_dapg_door-v0_demos.pickle"},
}
QUICK_FILES = {
    "pendulum-expert": "sb_expert_pendulum_slice.npz",
    "pendulum-random": "d3rlpy_pendulum_random_slice.h5",
}
MIXTURE_RANDOM_EPISODES = 100


def _minari_id(name: str) -> str:
    return f"real/{name}-v0"


def _slice_d3rlpy(src: pathlib.Path, dst: pathlib.Path, episodes: int) -> None:
    """The first `episodes` episodes of a d3rlpy 1.x file, in the same layout (row-indexed
    datasets cut, scalar ones copied)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        rows_total = f["observations"].shape[0]
        rows = int(np.flatnonzero(np.asarray(f["episode_terminals"]))[episodes - 1]) + 1
        for key in f:
            data = f[key]
            cut = data.shape and data.shape[0] == rows_total
            g[key] = data[:rows] if cut else data[()]


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_all(names, data_dir: pathlib.Path, quick: bool, work: pathlib.Path) -> dict:
    """Imports the files behind `names` into the Minari store; returns name -> info."""
    from sdepolicy.app.importers import KNOWN_FILES, import_dataset

    info: dict[str, dict[str, Any]] = {}

    def one(name: str, path: pathlib.Path, known: str, source: pathlib.Path) -> None:
        defaults = KNOWN_FILES[known]
        ds = import_dataset(
            str(path),
            _minari_id(name),
            env_id=defaults["env_id"],
            ref_min_score=defaults["ref_min_score"],
            ref_max_score=defaults["ref_max_score"],
            clip_actions=defaults.get("clip_actions"),
            overwrite=True,
        )
        returns = np.array([float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()])
        info[name] = {
            "ids": (_minari_id(name),),
            "file": source.name,
            "sources": {source.name: _sha256(source)},
            "env_id": defaults["env_id"],
            "ref": (defaults["ref_min_score"], defaults["ref_max_score"]),
            "episodes": int(returns.size),
            "transitions": int(ds.total_steps),
            "returns": returns,
        }

    needed = set()
    for name in names:
        needed |= set(DATASETS[name].get("mixture", (name,)))
    for name in sorted(needed):
        if name == "pendulum-random-100":
            quick_file = QUICK_FILES["pendulum-random"]
            src = data_dir / (quick_file if quick else DATASETS["pendulum-random"]["file"])
            cut = work / "pendulum_random_first100.h5"
            _slice_d3rlpy(src, cut, 2 if quick else MIXTURE_RANDOM_EPISODES)
            one(name, cut, "d3rlpy_pendulum_random.h5", src)
            info[name]["file"] = f"{src.name} (first {info[name]['episodes']} episodes)"
            continue
        file = QUICK_FILES[name] if quick else DATASETS[name]["file"]
        known = DATASETS[name]["file"]
        one(name, data_dir / file, known, data_dir / file)
    for name in names:
        parts = DATASETS[name].get("mixture")
        if parts:
            a, b = (info[p] for p in parts)
            info[name] = {
                "ids": a["ids"] + b["ids"],
                "file": f"{a['file']} + {b['file']}",
                "sources": a["sources"] | b["sources"],
                "env_id": a["env_id"],
                "ref": a["ref"],
                "episodes": a["episodes"] + b["episodes"],
                "transitions": a["transitions"] + b["transitions"],
                "returns": np.concatenate([a["returns"], b["returns"]]),
            }
    return info


# --- the cache: one run folder per (dataset, agent, config, seed, budget) ---------------------


def _fields_of(algo: str, overrides: dict[str, str]) -> dict[str, str]:
    """The overrides that `algo`'s config has (`--set alpha=0` concerns ER-DP-QE only), its
    experimental options included (`--set critic_conservatism=1`)."""
    from sdepolicy.app import option_names

    names = option_names(algo)
    return {k: v for k, v in overrides.items() if k in names}


def _spec(algo: str, data: dict, seed: int, args, out: pathlib.Path | None = None, **kw):
    from sdepolicy.app import RunSpec

    return RunSpec(
        algo=algo,
        seeds=(seed,),
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        final_eval_episodes=args.final_eval_episodes,
        steps_per_call=min(250, args.steps) if args.steps else None,
        out=None if out is None else str(out),
        overrides=_fields_of(algo, args.overrides),
        progress=False,
        dataset=tuple(data["ids"]),
        reward_transform=args.reward_transform,
        **kw,
    )


def cell_record(name: str, data: dict, algo: str, args) -> dict[str, Any]:
    """What decides a run's result besides its seed, and its hash (the cache key): the data, the
    algorithm, its resolved config, the reward transform and the resolved budget."""
    from sdepolicy.app import apply_overrides, config_record, get_preset
    from sdepolicy.app._runner import _run_settings  # the budget a run resolves

    spec = _spec(algo, data, 0, args)
    preset = get_preset(spec.task)
    config = apply_overrides(preset.config(algo), spec.overrides)
    settings = _run_settings(spec, preset, None, None)
    budget = {k: settings[k] for k in ("steps", "eval_every", "eval_episodes",
                                       "final_eval_episodes", "steps_per_call")}  # fmt: skip
    decides = {
        "dataset": name,
        "data": {k: data[k] for k in ("sources", "env_id", "ref", "episodes", "transitions")},
        "algo": algo,
        "task_settings": spec.task,
        "config": config_record(config),
        "reward_transform": args.reward_transform or preset.reward_transform,
        "budget": budget,
    }
    blob = json.dumps(decides, sort_keys=True, default=str).encode()
    key = hashlib.sha256(blob).hexdigest()[:12]
    returns = np.asarray(data["returns"])
    return decides | {
        "key": key,
        "overrides": _fields_of(algo, args.overrides),
        "data_info": {
            "file": data["file"],
            "mean_return": float(returns.mean()),
            "normalized": _norm(returns, data["ref"]),
        },
    }


def cell_dir(work: pathlib.Path, cell: dict) -> pathlib.Path:
    return work / "runs" / cell["dataset"] / f"{cell['algo']}-{cell['key']}"


def _busy(out: pathlib.Path) -> bool:
    """Whether a run (of another process) holds the folder's lock."""
    lock = out / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _finished(out: pathlib.Path) -> dict | None:
    path = out / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("status") in ("completed", "diverged") else None


def run_one(cell: dict, data: dict, seed: int, args, work: pathlib.Path) -> dict[str, Any]:
    """One seed of one cell: read when finished, resumed when killed, trained otherwise."""
    from sdepolicy.app import (
        MissingExtraError,
        RunInterruptedError,
        SdepolicyError,
        TrainingDivergedError,
        run,
    )

    out = cell_dir(work, cell) / f"seed-{seed}"
    done = _finished(out)
    if done is not None:
        return _record(cell, seed, done, cached=True)
    if _busy(out):
        return _record(cell, seed, None, status="busy", message="another process is running it")
    resume = (out / "checkpoint.eqx").is_file()
    if out.exists() and not resume:
        shutil.rmtree(out)  # stopped before its first checkpoint: nothing to keep
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        summary = run(_spec(cell["algo"], data, seed, args, out, resume=resume))
    except TrainingDivergedError:
        summary = _finished(out)
    except RunInterruptedError:
        raise  # Ctrl-C stops the campaign; the same command continues it
    except MissingExtraError as e:
        return _record(cell, seed, None, status="skipped", message=str(e))
    except SdepolicyError as e:
        return _record(cell, seed, None, status="error", message=str(e))
    row = _record(cell, seed, summary, cached=False)
    row["process_s"] = time.time() - t0
    if resume:
        row["resumed"] = True
    return row


def _record(cell, seed, summary, *, cached=False, status=None, message=None) -> dict[str, Any]:
    """One run's line of the report: its scores (normalised) and times."""
    from sdepolicy.app._run_outputs import last_quarter

    row = {"dataset": cell["dataset"], "algo": cell["algo"], "key": cell["key"], "seed": seed}
    if summary is None:
        return row | {"status": status, "message": message}
    history = summary["evaluations"]
    quarter = summary.get("last_quarter") or last_quarter(history, summary["steps"])
    timing = summary.get("timing") or {}
    value = lambda d: None if d is None else d["normalized"]["mean"]
    return row | {
        "status": summary["status"],
        "cached": cached,
        "steps": summary["steps"],
        "last": value(summary["last_evaluation"]),
        "last_step": summary["last_evaluation"]["step"] if summary["last_evaluation"] else None,
        "last_episodes": (summary["last_evaluation"] or {}).get("episodes"),
        "last_quarter": value(quarter),
        "best": value(summary["best_evaluation"]),
        "train_s": timing.get("train_s", summary.get("wall_time_s")),
        "eval_s": timing.get("eval_s"),
        "curve": [[h["step"], h["normalized"][0]] for h in history],
        "diverged_critics": bool((summary.get("critic_divergence") or {}).get("diverged")),
    }


def read_cells(work: pathlib.Path) -> list[tuple[dict, list[dict]]]:
    """Every cell under `<work>/runs` with the records of its finished runs (`--report-only`)."""
    found = []
    for path in sorted((work / "runs").glob("*/*/cell.json")):
        cell = json.loads(path.read_text())
        rows = []
        for seed_dir in sorted(path.parent.glob("seed-*")):
            done = _finished(seed_dir)
            seed = int(seed_dir.name.split("-", 1)[1])
            if done is not None:
                rows.append(_record(cell, seed, done, cached=True))
            else:
                rows.append(_record(cell, seed, None, status="unfinished", message=str(seed_dir)))
        found.append((cell, rows))
    return found


# --- the report --------------------------------------------------------------------------------


def _label_cells(cells: list[dict]) -> dict[str, str]:
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
    rank = {a: i for i, a in enumerate(ALGOS)}
    return sorted(agents, key=lambda a: (rank.get(a.split("[")[0], 9), a))


def build_report(rows, cells, names, *, reps: int, seed: int = 0) -> dict[str, Any]:
    """The protocol's statistics of the finished runs and their tables (Markdown lines)."""
    from sdepolicy.app import compare, describe, performance_profile, profile_thresholds

    labels = _label_cells(cells)
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


def _norm(x, ref) -> float:
    return float(100.0 * (np.mean(x) - ref[0]) / (ref[1] - ref[0]))


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


def parse_args(argv=None) -> argparse.Namespace:
    from sdepolicy.app import REWARD_TRANSFORMS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=pathlib.Path, help="folder of the real files")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="default: all")
    p.add_argument("--algos", nargs="+", choices=ALGOS, help="default: all three")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="one run each (default: 0 1 2 3 4; --quick: 0)")  # fmt: skip
    p.add_argument("--steps", type=int, help="gradient steps (default: the defaults' budget)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: defaults')")
    p.add_argument("--eval-episodes", type=int, help="episodes per periodic evaluation")
    p.add_argument("--final-eval-episodes", type=int,
                   help="episodes of the last evaluation (default 20)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="agent override for every run (an ablation)")  # fmt: skip
    p.add_argument("--work", type=pathlib.Path, default=REPO / "runs" / "real_data",
                   help="folder for the Minari store, the runs and the report")  # fmt: skip
    p.add_argument("--reward-transform", choices=REWARD_TRANSFORMS,
                   help="instead of the defaults' (standardised rewards)")  # fmt: skip
    p.add_argument("--out", type=pathlib.Path,
                   help="report JSON (default <work>/real_data.json); its .md and "
                   "_profiles.png beside it")  # fmt: skip
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap replicates (intervals)")
    p.add_argument("--quick", action="store_true", help="smoke test on tests/data slices")
    p.add_argument("--report-only", "--collect", dest="report_only", action="store_true",
                   help="train nothing: the report of the finished runs in --work (those the "
                   "other flags select; all of them when --datasets/--algos/--seeds/--set are "
                   "not given)")  # fmt: skip
    args = p.parse_args(argv)
    # What --report-only filters on: the flags given.
    args.given = {k for k in ("datasets", "algos", "seeds", "set") if getattr(args, k)}
    args.algos = args.algos or list(ALGOS)
    return args


DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = args.seeds or list(DEFAULT_SEEDS)
    if args.quick:
        data_dir = args.data_dir or REPO / "tests" / "data"
        names = args.datasets or ["pendulum-expert"]
        args.steps, args.eval_every = args.steps or 10, args.eval_every or 10
        args.eval_episodes = args.eval_episodes or 1
        args.final_eval_episodes = args.final_eval_episodes or 1
        seeds = args.seeds or [0]
        quick_over = {"hidden": "16", "num_critics": "2", "batch_size": "16",
                      "eval_candidates": "4", "ema_start": "0"}  # fmt: skip
    else:
        data_dir = args.data_dir or DEFAULT_DATA_DIR
        names = args.datasets or list(DATASETS)
        quick_over = {}
    args.overrides = dict(quick_over)
    for item in args.set:
        key, _, value = item.partition("=")
        args.overrides[key.strip()] = value.strip()
    args.work = args.work.resolve()  # Minari's store wants an absolute path
    out = args.out or args.work / "real_data.json"
    t_start = time.time()
    if args.report_only:
        cells, rows = _select(read_cells(args.work), args, names, seeds)
        if not cells:
            print(f"error: no finished runs under {args.work / 'runs'}.", file=sys.stderr)
            return 2
        names = [n for n in DATASETS if any(c["dataset"] == n for c in cells)]
    else:
        if not data_dir.is_dir():
            print(f"error: no data folder at {data_dir}; pass --data-dir.", file=sys.stderr)
            return 2
        args.work.mkdir(parents=True, exist_ok=True)
        os.environ["MINARI_DATASETS_PATH"] = str(args.work / "datasets")
        from sdepolicy.app import RunInterruptedError

        info = import_all(names, data_dir, args.quick, args.work)
        cells, rows = [], []
        for name in names:
            for algo in args.algos:
                cell = cell_record(name, info[name], algo, args)
                folder = cell_dir(args.work, cell)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "cell.json").write_text(json.dumps(cell, indent=2, default=str))
                cells.append(cell)
                for seed in seeds:
                    try:
                        row = run_one(cell, info[name], seed, args, args.work)
                    except RunInterruptedError as e:
                        print(f"error: {e}; run the same command to continue.", file=sys.stderr)
                        return 130
                    rows.append(row)
                    print(_progress_line(row), flush=True)
    payload = write_report(out, cells, rows, names, args, seeds, time.time() - t_start)
    print()
    print("\n".join(payload["table"]))
    print()
    print("\n".join(payload["report"]["tables"]))
    print(f"\n{payload['machine']}; {payload['wall_s'] / 60:.1f} min in all; seeds {seeds}; "
          f"overrides {payload['overrides'] or 'none'}; "
          f"rewards {args.reward_transform or 'as the defaults'}")  # fmt: skip
    print(f"wrote {out}, {out.with_suffix('.md')} and {payload['profiles_png']}")
    return 0


def _progress_line(row: dict) -> str:
    what = f"[{row['dataset']} / {row['algo']} / seed {row['seed']}]"
    if row.get("last") is None:
        return f"{what} {row['status']}: {row.get('message')}"
    how = "cached" if row["cached"] else ("resumed" if row.get("resumed") else "trained")
    share = ""
    if row.get("eval_s") is not None and row.get("train_s"):
        share = f", evaluation {100 * row['eval_s'] / (row['eval_s'] + row['train_s']):.0f} %"
    return (f"{what} {how}: last {row['last']:.1f}, last quarter {row['last_quarter']:.1f}, "
            f"best {row['best']:.1f} ({row['train_s']:.0f} s of training{share})")  # fmt: skip


def _select(found, args, names, seeds):
    """The cells and runs of `--report-only`: those the flags given select."""
    cells, rows = [], []
    for cell, cell_rows in found:
        if "datasets" in args.given or args.quick:
            if cell["dataset"] not in names:
                continue
        if "algos" in args.given and cell["algo"] not in args.algos:
            continue
        if "set" in args.given and cell["overrides"] != _fields_of(cell["algo"], args.overrides):
            continue
        if "seeds" in args.given:
            cell_rows = [r for r in cell_rows if r["seed"] in seeds]
        cells.append(cell)
        rows += cell_rows
    return cells, rows


def write_report(out: pathlib.Path, cells, rows, names, args, seeds, wall) -> dict[str, Any]:
    """`<out>` (JSON), `<out>.md` and `<out>_profiles.png`; returns the JSON's payload."""
    from sdepolicy.app import jsonable, plot_performance_profiles

    labels = _label_cells(cells)
    results = cell_results(cells, rows, labels)
    report = build_report(rows, cells, names, reps=args.reps)
    data = {c["dataset"]: c["data"] | c["data_info"] for c in cells}
    agents = report["agents"]
    table = overview(names, agents, data, results)
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
        "seeds": seeds,
        "overrides": args.overrides,
        "reward_transform": args.reward_transform,
        "steps": args.steps,
        "datasets": data,
        "cells": cells,
        "runs": rows,
        "results": results,
        "table": table,
        "report": jsonable(report),
        "profiles_png": str(png),
    }
    out.write_text(json.dumps(payload, indent=2, default=float))
    md = ["# Real data: the protocol's report", "", f"{payload['machine']}", "", *table, "",
          *report["tables"], "", f"![performance profiles]({png.name})", ""]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md))
    return payload


if __name__ == "__main__":
    sys.exit(main())
