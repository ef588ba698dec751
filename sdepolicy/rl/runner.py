"""The offline-RL training run: dataset -> agents of all seeds -> fused updates -> evaluation,
with a CSV of metrics, a PNG learning curve, a JSON summary and atomic checkpoints.

Determinism is by construction: every random draw is keyed by (seed, step), never by how many
Python-side calls came before, so a run resumed from a checkpoint reproduces the uninterrupted
run exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import data as data_lib
from .agents import AGENTS, CONFIGS
from .checkpoint import config_fingerprint, load_checkpoint, save_checkpoint
from .default_dataset import DEFAULT_DATASET_ID, ensure_default_dataset
from .errors import ConfigError, SdepolicyError
from .evaluation import run_episodes
from .plots import plot_learning_curve
from .presets import apply_overrides, get_preset
from .scores import normalized_score, reference_scores
from .sharding import shard_seeds
from .training import init_seeds, make_seeds_train_fn

CHECKPOINT = "checkpoint.eqx"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What to run. `None` fields take the task preset's value.

    - `task`, `algo`: a preset name (`sdepolicy.rl.presets.list_presets()`) and
        `"erdpqe" | "diffusion-ql" | "bc"`.
    - `seeds`: trained together in one process (the agent state is vmapped over seeds).
    - `seed_strategy`: `"vmap"` (default) or `"sequential"`: how the seeds share one compiled
        call (see `make_seeds_train_fn`; the same results either way).
    - `steps`, `eval_every`, `eval_episodes`: gradient steps, evaluation period and episodes.
    - `steps_per_call`: updates fused in one compiled call (`lax.scan`).
    - `checkpoint_every`: steps between checkpoints (default: `eval_every`).
    - `out`: output folder; `resume`: continue from `out/checkpoint.eqx`.
    - `overrides`: agent hyper-parameters, `{field: value}` (strings are coerced).
    - `dataset`: Minari dataset id(s) to use instead of the preset's (its hyper-parameters stay).
    - `env`: a Gymnasium id to evaluate in instead of the dataset's recovered environment.
    - `reward_transform`: instead of the preset's (`"none" | "antmaze" | "normalize"`).
    """

    task: str = "pendulum-mixed"
    algo: str = "erdpqe"
    seeds: tuple[int, ...] = (0,)
    seed_strategy: str = "vmap"
    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    steps_per_call: int = 250
    checkpoint_every: int | None = None
    out: str | None = None
    resume: bool = False
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    download: bool = False
    progress: bool = True
    dataset: tuple[str, ...] | None = None
    env: str | None = None
    reward_transform: str | None = None


def _episode_returns(dataset) -> np.ndarray:
    return np.array([float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()])


def _chunk_size(*periods: int) -> int:
    return functools.reduce(math.gcd, [int(p) for p in periods if p])


def run(spec: RunSpec, on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate; returns the summary that is also written to `summary.json`.

    `on_checkpoint(step)` is called after each checkpoint is written (tests use it to stop a run
    the way a kill would).
    """
    if spec.algo not in AGENTS:
        raise ConfigError(f"Unknown algorithm {spec.algo!r}; choose one of {sorted(AGENTS)}.")
    if not spec.seeds:
        raise ConfigError("At least one seed is needed.")
    preset = get_preset(spec.task)
    agent = AGENTS[spec.algo]
    config = apply_overrides(
        CONFIGS[spec.algo](), {**preset.overrides_for(spec.algo), **spec.overrides}
    )
    steps = spec.steps or preset.epochs_for(spec.algo) * preset.steps_per_epoch
    eval_every = spec.eval_every or preset.eval_every_epochs * preset.steps_per_epoch
    eval_every = min(eval_every, steps)
    eval_episodes = spec.eval_episodes or preset.eval_episodes
    ckpt_every = spec.checkpoint_every or eval_every
    chunk = _chunk_size(spec.steps_per_call, eval_every, ckpt_every, steps)
    out = pathlib.Path(spec.out or f"runs/{spec.task}-{spec.algo}")

    # --- data and environment ---------------------------------------------------------------
    dataset_ids = list(spec.dataset or preset.minari_ids)
    if dataset_ids == [DEFAULT_DATASET_ID]:
        ensure_default_dataset()
    transitions, dataset = data_lib.load_transitions(dataset_ids, download=spec.download)
    reward_transform = spec.reward_transform or preset.reward_transform
    transitions = data_lib.transform_rewards(transitions, reward_transform)
    make_env = functools.partial(data_lib.recover_env, dataset, spec.env)
    env = make_env()
    try:
        data_lib.check_spaces(transitions, env)
        low = np.asarray(env.action_space.low, np.float32)
        high = np.asarray(env.action_space.high, np.float32)
    finally:
        env.close()
    ref_min, ref_max, provenance = reference_scores(dataset=dataset, task=spec.task)
    data_returns = _episode_returns(dataset)

    # --- agents of all seeds ------------------------------------------------------------------
    obs_dim, act_dim = transitions.obs_dim, transitions.action_dim
    init = lambda k: agent.init(config, obs_dim, act_dim, low, high, k)
    seed_keys = jnp.stack([jax.random.key(s) for s in spec.seeds])
    states = init_seeds(init, seed_keys)
    fingerprint = config_fingerprint(
        {
            "task": spec.task,
            "algo": spec.algo,
            "seeds": list(spec.seeds),
            "config": dataclasses.asdict(config),
            "chunk": chunk,
            "data": [dataset_ids, len(transitions), spec.env, reward_transform],
        }
    )
    ckpt_path = out / CHECKPOINT
    step, history, elapsed = 0, [], 0.0
    if ckpt_path.exists() and not spec.resume:
        raise SdepolicyError(
            f"{out} already holds a run (checkpoint.eqx); pass --resume to continue it or choose "
            "another --out. Nothing was overwritten."
        )
    if spec.resume and ckpt_path.exists():
        states, header = load_checkpoint(ckpt_path, states, fingerprint=fingerprint)
        step = header["step"]
        history = header["extra"]["history"]
        elapsed = header["extra"]["elapsed"]
    out.mkdir(parents=True, exist_ok=True)
    states = shard_seeds(states)
    transitions = jax.device_put(transitions)

    update = _update_fn(spec.algo, config)
    train = make_seeds_train_fn(
        update, transitions, config.batch_size, chunk, strategy=spec.seed_strategy
    )
    act_all = _act_fn(spec.algo, config)
    num_seeds = len(spec.seeds)

    def act(obs_flat, key):
        obs = jnp.asarray(obs_flat).reshape(num_seeds, eval_episodes, -1)
        keys = jax.random.split(key, num_seeds)
        return np.asarray(act_all(states, obs, keys)).reshape(num_seeds * eval_episodes, -1)

    def evaluate(at_step):
        key = jax.random.fold_in(jax.random.key(12345), at_step)
        returns = run_episodes(make_env, act, num_seeds * eval_episodes, key, seed=1_000_000)
        per_seed = returns.reshape(num_seeds, eval_episodes).mean(axis=1)
        return {
            "step": at_step,
            "returns": per_seed.tolist(),
            "normalized": np.atleast_1d(normalized_score(per_seed, ref_min, ref_max)).tolist(),
        }

    metrics_path = out / "metrics.csv"
    _truncate_csv(metrics_path, step)
    bar = _progress(spec.progress, steps, step)
    steps_timed, time_timed, compiled = 0, 0.0, False
    try:
        while step < steps:
            t0 = time.perf_counter()
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(seed_keys, step)
            states, metrics = train(states, keys)
            metrics = jax.tree.map(lambda m: np.asarray(m).mean(axis=1), metrics)
            dt = time.perf_counter() - t0
            if compiled:  # the first call of this process includes compilation
                steps_timed, time_timed = steps_timed + chunk, time_timed + dt
            compiled = True
            elapsed += dt
            step += chunk
            record = None
            if step % eval_every == 0 or step == steps:
                record = evaluate(step)
                history.append(record)
            _append_csv(metrics_path, step, spec.seeds, metrics, record)
            bar.set_postfix(_postfix(metrics, record), refresh=False)
            bar.update(chunk)
            if step % ckpt_every == 0 or step == steps:
                extra = {"history": history, "elapsed": elapsed}
                save_checkpoint(ckpt_path, states, step=step, fingerprint=fingerprint, extra=extra)
                if on_checkpoint is not None:
                    on_checkpoint(step)
    finally:
        bar.close()

    summary = _summary(spec, config, steps, history, data_returns, (ref_min, ref_max, provenance))
    summary["wall_time_s"] = elapsed
    summary["update_steps_per_s"] = steps_timed * num_seeds / time_timed if time_timed else None
    summary["devices"] = [str(d) for d in jax.devices()]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_learning_curve(out / "learning_curve.png", history, summary)
    return summary


@functools.cache
def _update_fn(algo: str, config):
    """One update function object per (algorithm, config): the compiled training code is keyed
    on it, so runs in one process with the same configuration compile once."""
    return functools.partial(AGENTS[algo].update, config)


@functools.cache
def _act_fn(algo: str, config):
    """Batched evaluation actions for all seeds at once, compiled once per configuration."""
    agent = AGENTS[algo]
    return eqx.filter_jit(eqx.filter_vmap(lambda st, obs, k: agent.act(config, st, obs, k)))


def _mean_std(x) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def _summary(spec, config, steps, history, data_returns, refs) -> dict[str, Any]:
    ref_min, ref_max, provenance = refs
    returns = np.array([h["returns"] for h in history])  # [evals, seeds]
    normalized = np.array([h["normalized"] for h in history])
    return {
        "task": spec.task,
        "algo": spec.algo,
        "seeds": list(spec.seeds),
        "steps": steps,
        "config": dataclasses.asdict(config),
        "reference_scores": {"min": ref_min, "max": ref_max, "provenance": provenance},
        "dataset": {
            "episodes": int(data_returns.size),
            "mean_return": float(data_returns.mean()),
            "normalized": float(normalized_score(data_returns.mean(), ref_min, ref_max)),
        },
        "last_evaluation": {
            "step": history[-1]["step"],
            "return": _mean_std(returns[-1]),
            "normalized": _mean_std(normalized[-1]),
        },
        "best_evaluation": {
            "note": "per seed the max over evaluations, then mean ± std over seeds "
            "(optimistic: the reference code's online model selection)",
            "return": _mean_std(returns.max(axis=0)),
            "normalized": _mean_std(normalized.max(axis=0)),
        },
        "evaluations": history,
    }


def _postfix(metrics, record) -> dict[str, str]:
    post = {k: f"{float(np.mean(v)):.3g}" for k, v in metrics.items() if "loss" in k}
    if record is not None:
        post["return"] = f"{np.mean(record['returns']):.1f}"
    return post


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _truncate_csv(path: pathlib.Path, step: int) -> None:
    """Drop rows written after the checkpoint we resume from (a killed run may have logged
    steps whose state was never saved)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def _append_csv(path, step, seeds, metrics, record) -> None:
    names = sorted(metrics)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "seed", *names, "eval_return", "eval_normalized"])
        for i, seed in enumerate(seeds):
            ev = ["", ""] if record is None else [record["returns"][i], record["normalized"][i]]
            w.writerow([step, seed, *[f"{float(metrics[n][i]):.6g}" for n in names], *ev])
