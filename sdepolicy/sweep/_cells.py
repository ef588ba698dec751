"""Cells and runs: the cache of a sweep.

A *cell* is what decides a run's result besides its seed: the data, the agent, its resolved
config, the reward transform and the resolved budget. Its key (12 hex digits of the SHA-256 of
those) names the folder `<out>/runs/<dataset>/<algo>-<key>/`, with `cell.json` beside the
seeds; a *run* is one seed of one cell, an ordinary run folder `seed-<s>/` of
`sdepolicy.app.run` (its lock, checkpoint and summary). The layout and the key are those of
`benchmarks/real_data.py` since its first campaign: `tests/sweep/test_keys.py` pins them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: The default task whose hyper-parameters a `--dataset` run takes (`RunSpec.task`'s default).
DATASET_TASK = "pendulum-mixed"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the runs of a cell share besides the data and the agent. `None` takes the defaults
    of a `--dataset` run (the task preset's). `benchmarks/real_data.py` passes its parsed
    arguments, which have these attributes (`steps_per_call` and `task` left out)."""

    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    final_eval_episodes: int | None = None
    steps_per_call: int | None = None
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    reward_transform: str | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    """One seed of one cell: what a backend runs, in a worker or in this process. Everything in
    it is plain data (it travels to Ray workers); `folder` and `minari_root` are absolute."""

    dataset: str
    algo: str
    key: str
    seed: int
    folder: str
    spec: Any  # a `sdepolicy.app.RunSpec` with `out=folder`, `resume=False`
    minari_root: str | None = None
    gpus: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.algo} / seed {self.seed}"


def fields_of(algo: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """The overrides that `algo`'s config has (`--set alpha=0` concerns ER-DP-QE only), its
    experimental options included (`--set critic_conservatism=1`)."""
    from sdepolicy.app import option_names

    names = option_names(algo)
    return {k: v for k, v in overrides.items() if k in names}


def run_spec(algo: str, data: dict, seed: int, settings, out=None, **kw):
    """The `RunSpec` of one seed: a `--dataset` run on `data["ids"]`, or a preset run when
    `data` names a `task`."""
    from sdepolicy.app import RunSpec

    steps = settings.steps
    per_call = getattr(settings, "steps_per_call", None) or (min(250, steps) if steps else None)
    task = data.get("task")
    return RunSpec(
        task=task or DATASET_TASK,
        algo=algo,
        seeds=(seed,),
        steps=steps,
        eval_every=settings.eval_every,
        eval_episodes=settings.eval_episodes,
        final_eval_episodes=settings.final_eval_episodes,
        steps_per_call=per_call,
        out=None if out is None else str(out),
        overrides=fields_of(algo, settings.overrides),
        progress=False,
        dataset=None if task else tuple(data["ids"]),
        reward_transform=settings.reward_transform,
        **kw,
    )


def normalized(x, ref) -> float:
    return float(100.0 * (np.mean(x) - ref[0]) / (ref[1] - ref[0]))


def cell_record(name: str, data: dict, algo: str, settings) -> dict[str, Any]:
    """What decides a run's result besides its seed, and its hash (the cache key): the data, the
    algorithm, its resolved config, the reward transform and the resolved budget."""
    from sdepolicy.app import apply_overrides, config_record, get_preset
    from sdepolicy.app._runner import _run_settings  # the budget a run resolves

    spec = run_spec(algo, data, 0, settings)
    preset = get_preset(spec.task)
    config = apply_overrides(preset.config(algo), spec.overrides)
    resolved = _run_settings(spec, preset, None, None)
    budget = {k: resolved[k] for k in ("steps", "eval_every", "eval_episodes",
                                       "final_eval_episodes", "steps_per_call")}  # fmt: skip
    decides = {
        "dataset": name,
        "data": {k: data[k] for k in ("sources", "env_id", "ref", "episodes", "transitions")},
        "algo": algo,
        "task_settings": spec.task,
        "config": config_record(config),
        "reward_transform": settings.reward_transform or preset.reward_transform,
        "budget": budget,
    }
    blob = json.dumps(decides, sort_keys=True, default=str).encode()
    key = hashlib.sha256(blob).hexdigest()[:12]
    returns = np.asarray(data["returns"])
    return decides | {
        "key": key,
        "overrides": fields_of(algo, settings.overrides),
        "data_info": {
            "file": data["file"],
            "mean_return": float(returns.mean()),
            "normalized": normalized(returns, data["ref"]),
        },
    }


def cell_dir(out: str | os.PathLike, cell: dict) -> pathlib.Path:
    return pathlib.Path(out) / "runs" / cell["dataset"] / f"{cell['algo']}-{cell['key']}"


def write_cell(out: str | os.PathLike, cell: dict) -> pathlib.Path:
    folder = cell_dir(out, cell)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cell.json").write_text(json.dumps(cell, indent=2, default=str))
    return folder


def make_runs(out, cell: dict, data: dict, seeds, settings, *, gpus: float = 0.0) -> list[Run]:
    folder = cell_dir(pathlib.Path(out).resolve(), cell)
    root = os.environ.get("MINARI_DATASETS_PATH")
    return [
        Run(
            dataset=cell["dataset"],
            algo=cell["algo"],
            key=cell["key"],
            seed=int(s),
            folder=str(folder / f"seed-{s}"),
            spec=run_spec(cell["algo"], data, int(s), settings, folder / f"seed-{s}"),
            minari_root=None if root is None else str(pathlib.Path(root).resolve()),
            gpus=float(gpus),
        )
        for s in seeds
    ]


# --- one run ------------------------------------------------------------------------------------


def busy(out: str | os.PathLike) -> bool:
    """Whether a run (of another process) holds the folder's lock."""
    lock = pathlib.Path(out) / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def finished(out: str | os.PathLike) -> dict | None:
    """The summary of a finished run (completed or diverged), else None."""
    path = pathlib.Path(out) / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("status") in ("completed", "diverged") else None


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def execute(
    run: Run,
    on_checkpoint: Callable[[Run, int], None] | None = None,
    *,
    catch_all: bool = True,
) -> dict[str, Any]:
    """One run: read when finished, resumed from its checkpoint when killed, trained otherwise.
    Returns its row of the report. A `SdepolicyError` is the run's `failed` row (its message's
    first line); Ctrl-C (`RunInterruptedError`) is raised, the run left resumable; any other
    exception is a `failed` row too, or raised when `catch_all` is false (the Ray backend lets
    Ray retry it)."""
    import sdepolicy.app as app

    cell = {"dataset": run.dataset, "algo": run.algo, "key": run.key}
    out = pathlib.Path(run.folder)
    done = finished(out)
    if done is not None:
        return record(cell, run.seed, done, cached=True)
    if busy(out):
        return record(cell, run.seed, None, status="busy", message="another process is running it")
    resume = (out / "checkpoint.eqx").is_file()
    if out.exists() and not resume:
        shutil.rmtree(out)  # stopped before its first checkpoint: nothing to keep
    out.parent.mkdir(parents=True, exist_ok=True)
    if run.minari_root is not None:
        os.environ["MINARI_DATASETS_PATH"] = run.minari_root
    spec = dataclasses.replace(run.spec, out=str(out), resume=resume)
    t0 = time.time()
    try:
        if on_checkpoint is None:
            summary = app.run(spec)
        else:
            summary = app.run(spec, on_checkpoint=lambda step: on_checkpoint(run, step))
    except app.TrainingDivergedError:
        summary = finished(out)
    except app.RunInterruptedError:
        raise  # Ctrl-C stops the sweep; the same command continues it
    except app.MissingExtraError as e:
        return _failed(run, cell, "skipped", first_line(e))
    except app.SdepolicyError as e:
        return _failed(run, cell, "failed", first_line(e))
    except Exception as e:
        if not catch_all:
            raise
        return _failed(run, cell, "failed", f"{type(e).__name__}: {first_line(e)}")
    row = record(cell, run.seed, summary, cached=False)
    row["process_s"] = time.time() - t0
    if resume:
        row["resumed"] = True
    return row


#: Beside a run that did not finish, its status and error line, for `--report-only` (the app
#: removes a failed run's outputs when it wrote no checkpoint; the next launch runs it again).
STATUS_FILE = "sweep_status.json"


def write_status(folder, status: str, message: str | None) -> None:
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATUS_FILE).write_text(json.dumps({"status": status, "message": message}))
    except OSError:
        pass  # the row still carries it; only a later --report-only misses it


def _failed(run: Run, cell: dict, status: str, message: str) -> dict[str, Any]:
    write_status(run.folder, status, message)
    return record(cell, run.seed, None, status=status, message=message)


def record(cell, seed, summary, *, cached=False, status=None, message=None) -> dict[str, Any]:
    """One run's line of the report: its scores (normalised) and times, or its status and
    message when it did not finish."""
    from sdepolicy.app._diagnostics import last_quarter

    row = {"dataset": cell["dataset"], "algo": cell["algo"], "key": cell["key"], "seed": seed}
    if summary is None:
        return row | {"status": status, "message": message}
    history = summary["evaluations"]
    quarter = summary.get("last_quarter") or last_quarter(history, summary["steps"])
    timing = summary.get("timing") or {}
    value = lambda d: None if d is None else d["normalized"]["mean"]
    row |= {
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
    if summary["status"] == "diverged":
        where = (summary.get("non_finite") or {}).get("step")
        row["message"] = f"training diverged at update {where}" if where else "training diverged"
    return row


def read_cells(out: str | os.PathLike) -> list[tuple[dict, list[dict]]]:
    """Every cell under `<out>/runs` with the rows of its runs (`--report-only`): finished ones
    with their scores, the others `unfinished`."""
    found = []
    for path in sorted((pathlib.Path(out) / "runs").glob("*/*/cell.json")):
        cell = json.loads(path.read_text())
        rows = []
        for seed_dir in sorted(path.parent.glob("seed-*")):
            done = finished(seed_dir)
            seed = int(seed_dir.name.split("-", 1)[1])
            status_file = seed_dir / STATUS_FILE
            if done is not None:
                rows.append(record(cell, seed, done, cached=True))
            elif status_file.is_file() and not (seed_dir / "checkpoint.eqx").exists():
                st = json.loads(status_file.read_text())
                rows.append(record(cell, seed, None, status=st["status"], message=st["message"]))
            else:
                rows.append(record(cell, seed, None, status="unfinished", message=str(seed_dir)))
        found.append((cell, rows))
    return found
