"""Real data recorded by others: diffusion BC, Diffusion-QL and ER-DP-QE with the project's
defaults, on every dataset of a folder of real offline-RL files, under the protocol of
`docs/protocol.md`: 5 seeds, one run per (dataset, agent, config, seed, budget), cached, and a
report with stratified-bootstrap confidence intervals.

    python benchmarks/real_data.py                      # all datasets, seeds 0-4, defaults
    python benchmarks/real_data.py --datasets pendulum-random pendulum-expert
    python benchmarks/real_data.py --seeds 5 6 7        # three more seeds: only those train
    python benchmarks/real_data.py --set alpha=0        # an ablation (runs of its own)
    python benchmarks/real_data.py --report-only        # the report of the finished runs
    python benchmarks/real_data.py --jobs 2             # two runs at once (2 cores: 1.5x in all)
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
import hashlib
import os
import pathlib
import sys
import time
from typing import Any

import h5py
import numpy as np

from sdepolicy.sweep import _cells, _report
from sdepolicy.sweep import build_report as build_report
from sdepolicy.sweep import cell_dir as cell_dir
from sdepolicy.sweep import cell_record as cell_record
from sdepolicy.sweep import read_cells as read_cells

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


# --- the cache and the report: the sweep's (sdepolicy/sweep), one implementation -----------------
# One run folder per (dataset, agent, config, seed, budget), `<work>/runs/<dataset>/<algo>-<key>/
# seed-<s>`, keyed by `sdepolicy.sweep.cell_record`; the names below are kept for the tests.

_fields_of, _label_cells = _cells.fields_of, _report.label_cells
overview, cell_results, machine_line = _report.overview, _report.cell_results, _report.machine_line
_progress_line = _report.progress_line


def run_one(cell: dict, data: dict, seed: int, args, work: pathlib.Path) -> dict[str, Any]:
    """One seed of one cell: read when finished, resumed when killed, trained otherwise."""
    (run,) = _cells.make_runs(work, cell, data, [seed], args)
    return _cells.execute(run)


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
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in a worker process (docs/sweeps.md)")  # fmt: skip
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
        from sdepolicy.sweep import Source, Sweep, plan, run_local

        info = import_all(names, data_dir, args.quick, args.work)
        # The campaign as a sweep: the imported datasets x the agents x the seeds, one setting.
        sweep = Sweep(
            out=str(args.work),
            sources=tuple(Source(name=n, ids=tuple(info[n]["ids"])) for n in names),
            agents=tuple(args.algos),
            seeds=tuple(seeds),
            overrides=args.overrides,
            steps=args.steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            final_eval_episodes=args.final_eval_episodes,
            reward_transform=args.reward_transform,
        )
        p = plan(sweep, data=info)
        cells, rows = p.cells, list(p.problems)
        for row in rows:
            print(_progress_line(row), flush=True)
        try:
            rows += run_local(p.runs, jobs=args.jobs,
                              progress=lambda row: print(_progress_line(row), flush=True))
        except RunInterruptedError as e:
            print(f"error: {e}; run the same command to continue.", file=sys.stderr)
            return 130
    payload = write_report(out, cells, rows, names, args, seeds, time.time() - t_start)
    print()
    print("\n".join(payload["table"]))
    print()
    print("\n".join(payload["report"]["tables"]))
    print("\n".join(payload["statuses"]))
    print(f"{payload['machine']}; {payload['wall_s'] / 60:.1f} min in all; seeds {seeds}; "
          f"overrides {payload['overrides'] or 'none'}; "
          f"rewards {args.reward_transform or 'as the defaults'}")  # fmt: skip
    print(f"wrote {out}, {out.with_suffix('.md')} and {payload['profiles_png']}")
    return 0


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
    extra = {"overrides": args.overrides, "reward_transform": args.reward_transform,
             "steps": args.steps}  # fmt: skip
    return _report.write_report(out, cells, rows, names, reps=args.reps, seeds=seeds, wall=wall,
                                title="Real data: the protocol's report", extra=extra)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
