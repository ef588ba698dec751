"""Real data recorded by others: diffusion BC, Diffusion-QL and ER-DP-QE with the project's
defaults, on every dataset of a folder of real offline-RL files, several seeds each.

    python benchmarks/real_data.py                      # all datasets, 3 seeds, defaults
    python benchmarks/real_data.py --datasets pendulum-random pendulum-expert --seeds 0 1 2
    python benchmarks/real_data.py --set alpha=0        # an ablation (same for every run)
    python benchmarks/real_data.py --quick              # smoke test on the slices in tests/data

Each file is imported into a private Minari store (`<out>/datasets`) with
`sdepolicy.app.importers.import_dataset` (its known-file defaults give the environment and the
reference scores), then every algorithm is trained with `sdepolicy.app.run` exactly as
`python examples/d4rl_train.py --dataset <id> --algo <algo> --seeds ...` would: the defaults of
a `--dataset` run (the embedded task's hyper-parameters and step budget) unless `--set` or
`--steps` say otherwise. The table gives the last and the best evaluation (normalised, mean ± std
over seeds) beside the data's own mean return; the JSON has every number, the machine and the
wall times.

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


def import_all(names, data_dir: pathlib.Path, quick: bool, work: pathlib.Path) -> dict:
    """Imports the files behind `names` into the Minari store; returns name -> info."""
    from sdepolicy.app.importers import KNOWN_FILES, import_dataset

    info: dict[str, dict[str, Any]] = {}

    def one(name: str, path: pathlib.Path, known: str) -> None:
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
            "file": path.name,
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
            one(name, cut, "d3rlpy_pendulum_random.h5")
            continue
        file = QUICK_FILES[name] if quick else DATASETS[name]["file"]
        known = DATASETS[name]["file"]
        one(name, data_dir / file, known)
    for name in names:
        parts = DATASETS[name].get("mixture")
        if parts:
            a, b = (info[p] for p in parts)
            info[name] = {
                "ids": a["ids"] + b["ids"],
                "file": f"{a['file']} (first {a['episodes']} episodes) + {b['file']}",
                "env_id": a["env_id"],
                "ref": a["ref"],
                "episodes": a["episodes"] + b["episodes"],
                "transitions": a["transitions"] + b["transitions"],
                "returns": np.concatenate([a["returns"], b["returns"]]),
            }
    return info


def _row(s: dict, wall: float | None) -> dict[str, Any]:
    """The numbers of one run's summary that the table and the JSON keep."""
    return dict(
        wall_s=s.get("wall_time_s") if wall is None else wall,
        steps=s["steps"],
        last=s["last_evaluation"]["normalized"],
        best=s["best_evaluation"]["normalized"],
        last_return=s["last_evaluation"]["return"],
        per_seed_last=list(s["evaluations"][-1]["normalized"]),
        evaluations=s["evaluations"],
        divergence=s.get("critic_divergence"),
    )


def _fields_of(algo: str, overrides: dict[str, str]) -> dict[str, str]:
    """The overrides that `algo`'s config has (`--set alpha=0` concerns ER-DP-QE only), its
    experimental options included (`--set critic_conservatism=1`)."""
    from sdepolicy.app import option_names

    names = option_names(algo)
    return {k: v for k, v in overrides.items() if k in names}


def _norm(x, ref) -> float:
    return float(100.0 * (np.mean(x) - ref[0]) / (ref[1] - ref[0]))


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
    return f"{os.cpu_count()} CPU cores ({cpu}); jax {jax.__version__} on {devices}"


def main(argv=None) -> int:
    from sdepolicy.app import REWARD_TRANSFORMS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=pathlib.Path, help="folder of the real files")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="default: all")
    p.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, help="gradient steps (default: the defaults' budget)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: defaults')")
    p.add_argument("--eval-episodes", type=int, help="episodes per evaluation and seed")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="agent override for every run (an ablation)")  # fmt: skip
    p.add_argument("--work", type=pathlib.Path, default=REPO / "runs" / "real_data",
                   help="folder for the Minari store and the runs")  # fmt: skip
    p.add_argument("--reward-transform", choices=REWARD_TRANSFORMS,
                   help="instead of the defaults' (standardised rewards)")  # fmt: skip
    p.add_argument("--out", type=pathlib.Path, help="JSON output (default <work>/real_data.json)")
    p.add_argument("--quick", action="store_true", help="smoke test on tests/data slices")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: tabulate the runs already in --work")  # fmt: skip
    args = p.parse_args(argv)

    seeds = args.seeds
    if args.quick:
        data_dir = args.data_dir or REPO / "tests" / "data"
        names = args.datasets or ["pendulum-expert"]
        steps, eval_every, episodes = args.steps or 10, args.eval_every or 10, 1
        seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
        quick_over = {"hidden": "16", "num_critics": "2", "batch_size": "16",
                      "eval_candidates": "4", "ema_start": "0"}  # fmt: skip
    else:
        data_dir = args.data_dir or DEFAULT_DATA_DIR
        names = args.datasets or list(DATASETS)
        steps, eval_every, episodes = args.steps, args.eval_every, args.eval_episodes
        quick_over = {}
    if not data_dir.is_dir():
        print(f"error: no data folder at {data_dir}; pass --data-dir.", file=sys.stderr)
        return 2
    overrides = dict(quick_over)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = value.strip()

    args.work = args.work.resolve()  # Minari's store wants an absolute path
    args.work.mkdir(parents=True, exist_ok=True)
    # --collect imports into a store of its own, leaving the one runs may be reading alone.
    store = "collect_datasets" if args.collect else "datasets"
    os.environ["MINARI_DATASETS_PATH"] = str(args.work / store)
    from sdepolicy.app import MissingExtraError, RunSpec, SdepolicyError, run

    t_start = time.time()
    info = import_all(names, data_dir, args.quick, args.work)
    results: list[dict[str, Any]] = []
    tag = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()) if k not in quick_over)
    if args.reward_transform:
        tag = "-".join(filter(None, (tag, f"rewards{args.reward_transform}")))
    for name in names:
        d = info[name]
        for algo in args.algos:
            run_dir = args.work / "runs" / f"{name}-{algo}{'-' + tag if tag else ''}"
            if args.collect:
                row = {"dataset": name, "algo": algo, "seeds": list(seeds)}
                done = run_dir / "summary.json"
                if done.exists() and json.loads(done.read_text()).get("status") != "diverged":
                    results.append(row | _row(json.loads(done.read_text()), None))
                else:
                    results.append(row | {"error": "not run"})
                continue
            if run_dir.exists():  # this script's own earlier output: start afresh
                shutil.rmtree(run_dir)
            spec = RunSpec(
                algo=algo,
                seeds=tuple(seeds),
                steps=steps,
                eval_every=eval_every,
                eval_episodes=episodes,
                steps_per_call=min(250, steps) if steps else 250,
                out=str(run_dir),
                overrides=_fields_of(algo, overrides),
                progress=False,
                dataset=d["ids"],
                reward_transform=args.reward_transform,
            )
            t0 = time.time()
            row: dict[str, Any] = {"dataset": name, "algo": algo, "seeds": list(seeds)}
            try:
                s = run(spec)
            except MissingExtraError as e:
                row["skipped"] = str(e)
                print(f"[{name} / {algo}] skipped: {e}", flush=True)
                results.append(row)
                continue
            except SdepolicyError as e:
                row["error"] = str(e)
                print(f"[{name} / {algo}] error: {e}", flush=True)
                results.append(row)
                continue
            row.update(_row(s, time.time() - t0))
            results.append(row)
            print(
                f"[{name} / {algo}] last {_fmt(row['last'])}  best {_fmt(row['best'])}  "
                f"({row['wall_s']:.0f} s)",
                flush=True,
            )

    lines = _table(names, args.algos, info, results)
    wall = time.time() - t_start
    print()
    print("\n".join(lines))
    print(f"\n{machine_line()}; {wall / 60:.1f} min in all; seeds {seeds}; "
          f"overrides {overrides or 'none'}; "
          f"rewards {args.reward_transform or 'as the defaults'}")  # fmt: skip
    payload = {
        "machine": machine_line(),
        "wall_s": wall,
        "seeds": seeds,
        "overrides": overrides,
        "reward_transform": args.reward_transform,
        "steps": steps,
        "datasets": {
            n: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in info[n].items()}
            | {
                "mean_return": float(np.mean(info[n]["returns"])),
                "normalized": _norm(info[n]["returns"], info[n]["ref"]),
            }  # fmt: skip
            for n in names
        },
        "results": results,
        "table": lines,
    }
    path = args.out or args.work / "real_data.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {path}")
    return 0


def _table(names, algos, info, results) -> list[str]:
    by = {(r["dataset"], r["algo"]): r for r in results}
    head = ["dataset", "transitions", "data (norm.)"]
    for a in algos:
        head += [f"{a} last", f"{a} best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        d = info[n]
        data = f"{np.mean(d['returns']):.1f} ({_norm(d['returns'], d['ref']):.1f})"
        cells = [n, f"{d['transitions']:,}", data]
        for a in algos:
            r = by.get((n, a), {})
            if "last" in r:
                cells += [_fmt(r["last"]), _fmt(r["best"])]
            else:
                what = "skipped" if "skipped" in r else r.get("error", "error")
                cells += ["not run" if what == "not run" else what.split(":")[0][:20], ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
