"""Helpers shared by the toy-task scripts (`toy_bandit.py`, `toy_two_step.py`).

Not part of the library: training here is the library's fused training
(`sdepolicy.rl.make_train_fn`, `make_seeds_train_fn`), wrapped with a progress line and a timer,
so the scripts stay about their tasks.
"""

from __future__ import annotations

import json
import pathlib
import resource
import time
from typing import Any

import jax
import numpy as np

from sdepolicy.rl import Transitions, init_seeds, make_seeds_train_fn, make_train_fn


class Timer:
    """Wall-clock and process CPU seconds (user + system, all threads) since creation.

    CPU seconds are reported beside wall seconds because the machine may be shared: on a busy
    machine the wall time grows while the CPU time stays close to the work done.
    """

    def __init__(self):
        self.wall0 = time.perf_counter()
        self.cpu0 = _cpu_seconds()

    def wall(self) -> float:
        return time.perf_counter() - self.wall0

    def cpu(self) -> float:
        return _cpu_seconds() - self.cpu0

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall(), 1), "cpu_s": round(self.cpu(), 1)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(
    agent,
    dataset: Transitions,
    state,
    key,
    *,
    steps: int,
    steps_per_call: int,
    label: str = "",
    seeds: int | None = None,
    quiet: bool = False,
):
    """Train `state` for `steps` updates of `agent.update` (fused, `steps_per_call` per call).

    With `seeds=n`, `state` is stacked over `n` seeds (`init_seeds`) and every seed draws its own
    batches. Returns `(state, metrics)` with each metric a NumPy array over the steps (seeds
    first when `seeds` is given).
    """
    if steps % steps_per_call:
        raise ValueError(f"steps ({steps}) must be a multiple of steps_per_call {steps_per_call}.")
    make = make_train_fn if seeds is None else make_seeds_train_fn
    train_fn = make(agent.update, dataset, agent.config.batch_size, steps_per_call)
    calls = steps // steps_per_call
    history: list[dict[str, np.ndarray]] = []
    timer = Timer()
    for i, k in enumerate(jax.random.split(key, calls)):
        if seeds is not None:
            k = jax.random.split(k, seeds)
        state, metrics = train_fn(state, k)
        history.append(jax.tree.map(np.asarray, metrics))
        if not quiet:
            loss = float(np.mean(history[-1]["actor_loss"][..., -1]))
            print(
                f"  {label:<22s} step {(i + 1) * steps_per_call:>6d}/{steps}  "
                f"actor_loss {loss:+.3f}  {timer.wall():6.1f} s",
                flush=True,
            )
    axis = 0 if seeds is None else 1
    stacked = {k: np.concatenate([h[k] for h in history], axis=axis) for k in history[0]}
    return state, stacked


def init_agents(agent, obs_dim, action_dim, low, high, key, num_seeds: int | None = None):
    """One agent's state (`num_seeds=None`) or `num_seeds` states stacked with `init_seeds`."""
    init_fn = lambda k: agent.init(obs_dim, action_dim, low, high, k)
    if num_seeds is None:
        return init_fn(key)
    return init_seeds(init_fn, jax.random.split(key, num_seeds))


def write_json(path: pathlib.Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def save_figure(fig, path: pathlib.Path) -> None:
    """Lay out, write (creating the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def total_line(timer: Timer, out: pathlib.Path, *names: str) -> str:
    """The scripts' last line: the time taken and what was written."""
    t = timer.as_dict()
    return f"\ntotal {t['wall_s']} s wall, {t['cpu_s']} s CPU; wrote " + ", ".join(
        f"{out}/{n}" for n in names
    )


def _jsonable(x):
    if isinstance(x, np.ndarray | jax.Array):
        return np.asarray(x).tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def config_dict(config) -> dict[str, Any]:
    """A frozen dataclass config as a plain dict (schedule objects shown by their repr)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = v if isinstance(v, int | float | str | bool) else repr(v)
    return out
