"""From a sweep to its cells and runs: what each dataset or task is (read in this process, for
the cache key and the report), the cells of every agent and setting, one run per seed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Any

import numpy as np

from ._cells import Run, cell_record, first_line, make_runs, write_cell
from ._spec import Source, Sweep


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_data(src: Source) -> dict[str, Any]:
    """The record of a dataset (or a task's datasets) that goes into the cache key and the
    report, in the shape `benchmarks/real_data.py` builds for its imported files: the ids, the
    SHA-256 of each dataset's data files, the environment, the reference scores, the episodes,
    the transitions and the returns. Raises the app's one-line errors (a dataset not found)."""
    from sdepolicy.app import (
        DEFAULT_DATASET_ID,
        ensure_default_dataset,
        get_preset,
        load_dataset,
        reference_scores,
    )

    ids = src.ids or get_preset(src.task).minari_ids
    if DEFAULT_DATASET_ID in ids:
        ensure_default_dataset()  # the embedded task's dataset is built on first use
    sources, returns, episodes, transitions = {}, [], 0, 0
    for i in ids:
        ds = load_dataset(i)
        files = sorted(p for p in pathlib.Path(ds.spec.data_path).iterdir()
                       if p.is_file() and p.name != "metadata.json")  # fmt: skip
        sources[i] = hashlib.sha256("".join(sha256(p) for p in files).encode()).hexdigest()
        returns += [float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()]
        episodes += int(ds.total_episodes)
        transitions += int(ds.total_steps)
        if i == ids[0]:
            env = getattr(ds.spec, "eval_env_spec", None) or ds.env_spec
            lo, hi, _ = reference_scores(ds, task=src.task or i)
    return {
        "ids": tuple(ids),
        "task": src.task,
        "file": " + ".join(ids),
        "sources": sources,
        "env_id": getattr(env, "id", None),
        "ref": (lo, hi),
        "episodes": episodes,
        "transitions": transitions,
        "returns": np.asarray(returns),
    }


@dataclasses.dataclass
class Plan:
    """The cells (records, `cell.json`), their runs, and the rows of the sources that could not
    be read (reported `failed`, with their error line)."""

    cells: list[dict]
    runs: list[Run]
    problems: list[dict]
    names: list[str]


def plan(sweep: Sweep, data: dict[str, dict] | None = None, *, write: bool = True) -> Plan:
    """Expand `sweep` into cells and runs. `data` (name -> record) skips reading the datasets
    (as `benchmarks/real_data.py`, which imported them); `write` writes each cell's
    `cell.json`."""
    from sdepolicy.app import SdepolicyError

    if sweep.minari_root is not None:
        os.environ["MINARI_DATASETS_PATH"] = sweep.minari_root
    cells: dict[str, dict] = {}
    runs: list[Run] = []
    problems: list[dict] = []
    for src in sweep.sources:
        try:
            info = data[src.name] if data is not None else source_data(src)
        except SdepolicyError as e:
            for algo in sweep.agents:
                problems.append({"dataset": src.name, "algo": algo, "key": None, "seed": None,
                                 "status": "failed", "message": first_line(e)})  # fmt: skip
            continue
        for algo in sweep.agents:
            for settings in sweep.settings():
                try:
                    cell = cell_record(src.name, info, algo, settings)
                except SdepolicyError as e:  # an override the agent's config refuses
                    problems.append({"dataset": src.name, "algo": algo, "key": None,
                                     "seed": None, "status": "failed",
                                     "message": first_line(e)})  # fmt: skip
                    continue
                if cell["key"] in cells:
                    continue  # a grid point that does not concern this agent
                cells[cell["key"]] = cell
                if write:
                    write_cell(pathlib.Path(sweep.out), cell)
                runs += make_runs(sweep.out, cell, info, sweep.seeds, settings, gpus=sweep.gpus)
    return Plan(list(cells.values()), runs, problems, [s.name for s in sweep.sources])
