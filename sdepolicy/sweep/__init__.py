"""Sweeps: datasets or tasks × agents × seeds × settings, one ordinary run folder per run, run
here one after another or on a Ray cluster, resumable, with one report.

    python -m sdepolicy.sweep sweep.toml                     # here, one run after another
    python -m sdepolicy.sweep sweep.toml --backend ray --ray auto   # the same file on Ray
    python -m sdepolicy.sweep sweep.toml --report-only       # the report of the finished runs

The file format is in `_spec.py` and docs/sweeps.md; the run folders and their cache key are
those of `benchmarks/real_data.py` (docs/protocol.md §3)."""

from __future__ import annotations

import pathlib
import time
from typing import Any

from ._backends import RayMissingError as RayMissingError
from ._backends import run_local as run_local
from ._backends import run_ray as run_ray
from ._cells import Run as Run
from ._cells import Settings as Settings
from ._cells import cell_dir as cell_dir
from ._cells import cell_record as cell_record
from ._cells import execute as execute
from ._cells import read_cells as read_cells
from ._plan import Plan as Plan
from ._plan import plan as plan
from ._plan import source_data as source_data
from ._report import build_report as build_report
from ._report import label_cells as label_cells
from ._report import write_report as write_report
from ._spec import Source as Source
from ._spec import Sweep as Sweep
from ._spec import SweepFileError as SweepFileError
from ._spec import load_sweep as load_sweep
from ._spec import sweep_from_dict as sweep_from_dict

BACKENDS = ("local", "ray")


def run_sweep(
    sweep: Sweep,
    *,
    backend: str = "local",
    address: str | None = "auto",
    progress=None,
    on_checkpoint=None,
    jobs: int = 1,
) -> tuple[Plan, list[dict[str, Any]]]:
    """Expand `sweep` and run what is not finished; returns the plan and every run's row (the
    sources that could not be read among them, `failed`). `on_checkpoint(run, step)` is called
    after each checkpoint, in the process that runs it (a Ray worker, a local worker process
    when `jobs > 1`). `jobs`: how many runs the local backend trains at once."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if jobs != 1 and backend != "local":
        raise ValueError("jobs is the local backend's; a Ray cluster runs as many as it has room for")
    if backend == "ray":
        from ._backends import import_ray

        import_ray()  # before any work: a missing extra is one line
    p = plan(sweep)
    if backend == "local":
        rows = run_local(p.runs, jobs=jobs, progress=progress, on_checkpoint=on_checkpoint)
    else:
        rows = run_ray(p.runs, address=address, max_retries=sweep.max_retries, cpus=sweep.cpus,
                       progress=progress, on_checkpoint=on_checkpoint)  # fmt: skip
    return p, p.problems + rows


def report(
    sweep: Sweep | str | pathlib.Path,
    rows: list[dict] | None = None,
    cells: list[dict] | None = None,
    *,
    reps: int = 50_000,
    wall: float = 0.0,
    out: pathlib.Path | None = None,
) -> dict[str, Any]:
    """The report (`<out>/report.json`, `.md`, `_profiles.png`) of a sweep's runs, or, given a
    folder (or without rows), of every finished run under it (`<folder>/runs/*/*/cell.json`)."""
    t0 = time.time()
    if isinstance(sweep, Sweep):
        folder, names, seeds = pathlib.Path(sweep.out), [s.name for s in sweep.sources], sweep.seeds
    else:
        folder, names, seeds = pathlib.Path(sweep), None, ()
    if rows is None or cells is None:
        found = read_cells(folder)
        cells = [c for c, _ in found]
        rows = [r for _, rs in found for r in rs]
        seeds = sorted({r["seed"] for r in rows})
    if names is None:
        names = list(dict.fromkeys(c["dataset"] for c in cells))
    extra = {}
    if isinstance(sweep, Sweep):
        extra = {"overrides": dict(sweep.overrides), "grid": {k: list(v) for k, v in
                 sweep.grid.items()}, "reward_transform": sweep.reward_transform,
                 "steps": sweep.steps}  # fmt: skip
    return write_report(out or folder / "report.json", cells, rows, names, reps=reps,
                        seeds=seeds, wall=wall or time.time() - t0, title="Sweep report",
                        extra=extra)  # fmt: skip
