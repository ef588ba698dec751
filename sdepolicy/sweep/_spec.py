"""The sweep description: a frozen dataclass and its TOML file.

```toml
out = "runs/my-sweep"                 # run folders and the report (shared on a cluster)
agents = ["bc", "diffusion-ql", "erdpqe"]
seeds = [0, 1, 2, 3, 4]
datasets = ["imported/pendulum-random-v0",                     # a Minari id, named after it
            {name = "mixed", ids = ["real/a-v0", "real/b-v0"]}]  # or several, concatenated
tasks = ["hopper-medium-v2"]          # task presets (their data and hyper-parameters)

[budget]                              # left out: the defaults of the run
steps = 6000
eval_every = 1000
eval_episodes = 10
final_eval_episodes = 20

[set]                                 # overrides of every run (`--set FIELD=VALUE`)
hidden = 256

[grid]                                # every combination is a setting of its own
eta = [0.2, 1.0]

[resources]                           # per run (Ray backend)
gpus = 0
cpus = 1
max_retries = 3
```

Expanded, it is every (dataset or task) × agent × grid point × seed: one run folder each.
An override an agent does not have is not applied to it (`eta` is ER-DP-QE's), so that agent's
grid points that differ only in it are one cell.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any

from ._cells import Settings

AGENTS = ("bc", "diffusion-ql", "erdpqe")
_TOP = {"out", "agents", "seeds", "datasets", "tasks", "minari_root", "reward_transform",
        "budget", "set", "grid", "resources"}  # fmt: skip
_BUDGET = ("steps", "eval_every", "eval_episodes", "final_eval_episodes", "steps_per_call")
_RESOURCES = ("gpus", "cpus", "max_retries")


class SweepFileError(ValueError):
    """A sweep file that cannot be read: the message is one line naming the file and the key."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What runs train on: Minari dataset ids (concatenated) or a task preset."""

    name: str
    ids: tuple[str, ...] = ()
    task: str | None = None


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Datasets or tasks × agents × seeds × settings (`[set]` with every point of `[grid]`)
    under one budget. `out` is absolute once loaded from a file."""

    out: str
    sources: tuple[Source, ...]
    agents: tuple[str, ...] = AGENTS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    final_eval_episodes: int | None = None
    steps_per_call: int | None = None
    reward_transform: str | None = None
    minari_root: str | None = None
    gpus: float = 0.0
    cpus: float = 1.0
    max_retries: int = 3

    def settings(self) -> list[Settings]:
        """One `Settings` per point of the grid (one when there is no grid), in file order."""
        names = list(self.grid)
        points = itertools.product(*(self.grid[n] for n in names)) if names else [()]
        return [
            Settings(
                steps=self.steps,
                eval_every=self.eval_every,
                eval_episodes=self.eval_episodes,
                final_eval_episodes=self.final_eval_episodes,
                steps_per_call=self.steps_per_call,
                overrides={**self.overrides, **dict(zip(names, point, strict=True))},
                reward_transform=self.reward_transform,
            )
            for point in points
        ]

    @property
    def report_path(self) -> pathlib.Path:
        return pathlib.Path(self.out) / "report.json"


def _value(v: Any) -> str:
    """A TOML value as `--set` would give it (`sdepolicy.app.apply_overrides` coerces it)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(_value(x) for x in v)
    return str(v)


def load_sweep(path: str | os.PathLike, *, out: str | None = None) -> Sweep:
    """Read a sweep file. Relative paths (`out`, `minari_root`) are relative to the current
    folder, as on the command line; `out` overrides the file's."""
    path = pathlib.Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise SweepFileError(f"cannot read the sweep file {where}: {e.strerror or e}.") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepFileError(f"{where} is not valid TOML: {e}.") from None
    return sweep_from_dict(raw, where=where, out=out)


def sweep_from_dict(raw: Mapping[str, Any], *, where: str = "the sweep", out=None) -> Sweep:
    def fail(msg: str):
        raise SweepFileError(f"{where}: {msg}")

    unknown = sorted(set(raw) - _TOP)
    if unknown:
        fail(f"unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(_TOP))}.")
    out = out or raw.get("out")
    if not isinstance(out, str) or not out:
        fail("`out` (the folder of the runs and the report) is missing; set it or pass --out.")
    sources: list[Source] = []
    for item in raw.get("datasets", []):
        if isinstance(item, str):
            sources.append(Source(name=item.replace("/", "-"), ids=(item,)))
        elif isinstance(item, Mapping) and isinstance(item.get("ids"), list) and item["ids"]:
            ids = tuple(str(i) for i in item["ids"])
            sources.append(Source(name=str(item.get("name") or "+".join(ids)), ids=ids))
        else:
            fail(f"a `datasets` entry must be a Minari id or {{name, ids}}, got {item!r}.")
    for task in raw.get("tasks", []):
        if not isinstance(task, str):
            fail(f"a `tasks` entry must be a task preset's name, got {task!r}.")
        sources.append(Source(name=task, task=task))
    if not sources:
        fail("nothing to train on: give `datasets` (Minari ids) or `tasks` (presets).")
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail(f"the dataset/task name(s) {', '.join(dup)} appear more than once.")
    agents = tuple(raw.get("agents", AGENTS))
    bad = [a for a in agents if a not in AGENTS]
    if bad or not agents:
        fail(f"unknown agent(s) {bad or agents}; choose among {', '.join(AGENTS)}.")
    seeds = raw.get("seeds", [0, 1, 2, 3, 4])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        fail(f"`seeds` must be a list of distinct non-negative integers, got {seeds!r}.")
    budget = raw.get("budget", {})
    if not isinstance(budget, Mapping) or set(budget) - set(_BUDGET):
        fail(f"[budget] takes {', '.join(_BUDGET)}; got {sorted(budget)}.")
    for k, v in budget.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            fail(f"[budget] {k} must be a positive integer, got {v!r}.")
    fixed = raw.get("set", {})
    grid = raw.get("grid", {})
    if not isinstance(fixed, Mapping) or not isinstance(grid, Mapping):
        fail("[set] and [grid] are tables of FIELD = value (a list of values in [grid]).")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            fail(f"[grid] {k} must be a non-empty list of values, got {v!r}.")
    both = sorted(set(fixed) & set(grid))
    if both:
        fail(f"{', '.join(both)} in both [set] and [grid]; keep one.")
    resources = raw.get("resources", {})
    if not isinstance(resources, Mapping) or set(resources) - set(_RESOURCES):
        fail(f"[resources] takes {', '.join(_RESOURCES)}; got {sorted(resources)}.")
    transform = raw.get("reward_transform")
    if transform is not None:
        from sdepolicy.app import REWARD_TRANSFORMS

        if transform not in REWARD_TRANSFORMS:
            fail(f"reward_transform {transform!r}; choose one of {', '.join(REWARD_TRANSFORMS)}.")
    root = raw.get("minari_root")
    return Sweep(
        out=str(pathlib.Path(out).resolve()),
        sources=tuple(sources),
        agents=agents,
        seeds=tuple(seeds),
        overrides={str(k): _value(v) for k, v in fixed.items()},
        grid={str(k): tuple(_value(x) for x in v) for k, v in grid.items()},
        reward_transform=transform,
        minari_root=None if root is None else str(pathlib.Path(root).resolve()),
        gpus=float(resources.get("gpus", 0)),
        cpus=float(resources.get("cpus", 1)),
        max_retries=int(resources.get("max_retries", 3)),
        **{k: budget.get(k) for k in _BUDGET},
    )
