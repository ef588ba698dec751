"""The offline-RL training run: dataset -> agents of all seeds -> fused updates -> evaluation,
with a CSV of metrics, a PNG learning curve, a JSON summary and atomic checkpoints.

Determinism is by construction: every random draw is keyed by (seed, step), never by how many
Python-side calls came before, so a run resumed from a checkpoint reproduces the uninterrupted
run exactly.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import functools
import io
import json
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..rl import init_seeds, make_checked_seeds_train_fn, shard_seeds
from ..rl.agents import AGENTS, CONFIGS
from . import _data as data_lib
from ._checkpoint import (
    atomic_write_bytes,
    config_fingerprint,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from ._default_dataset import DEFAULT_DATASET_ID, ensure_default_dataset
from ._errors import (
    ConfigError,
    DataValidationError,
    OutputWriteError,
    RunFolderError,
    RunInterruptedError,
    SdepolicyError,
    TrainingDivergedError,
)
from ._evaluation import run_episodes_stats
from ._model_selection import offline_selection_summary
from ._plots import plot_learning_curve
from ._presets import apply_overrides, get_preset
from ._scores import normalized_score, reference_scores, success_rate

CHECKPOINT = "checkpoint.eqx"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What to run. `None` fields take the task preset's value.

    - `task`, `algo`: a preset name (`sdepolicy.app.list_presets()`) and
        `"erdpqe" | "diffusion-ql" | "bc"`.
    - `seeds`: trained together in one process (the agent state is vmapped over seeds).
    - `seed_strategy`: `"vmap"` (default) or `"sequential"`: how the seeds share one compiled
        call (see `make_seeds_train_fn`; the same results either way).
    - `steps`, `eval_every`, `eval_episodes`: gradient steps, evaluation period and episodes.
    - `steps_per_call`: updates fused in one compiled call (`lax.scan`; default 250).
    - `checkpoint_every`: steps between checkpoints (default: `eval_every`).
    - `out`: output folder; `resume`: continue from `out/checkpoint.eqx`.
    - `overrides`: agent hyper-parameters, `{field: value}` (strings are coerced).
    - `dataset`: Minari dataset id(s) to use instead of the preset's (its hyper-parameters stay).
    - `env`: a Gymnasium id to evaluate in instead of the dataset's recovered environment.
    - `reward_transform`: instead of the preset's (`"none" | "antmaze" | "normalize"`).
    - `clip_actions`: clip dataset actions into the environment's box (they are only warned
        about otherwise).

    On `--resume`, `steps`, `eval_every`, `eval_episodes`, `checkpoint_every` and
    `steps_per_call` left as `None` take the checkpointed run's values; given ones must match.
    """

    task: str = "pendulum-mixed"
    algo: str = "erdpqe"
    seeds: tuple[int, ...] = (0,)
    seed_strategy: str = "vmap"
    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    steps_per_call: int | None = None
    checkpoint_every: int | None = None
    out: str | None = None
    resume: bool = False
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    download: bool = False
    progress: bool = True
    dataset: tuple[str, ...] | None = None
    env: str | None = None
    reward_transform: str | None = None
    clip_actions: bool = False
    # Also report Diffusion-QL's offline model selection (docs/method.md §7.2), beside last/best.
    offline_selection: bool = False


#: Every file a run writes; a folder holding any of them holds a run.
OUTPUTS = (CHECKPOINT, "metrics.csv", "summary.json", "learning_curve.png")
#: Critic divergence: |mean Q| or the critics' RMS TD error beyond this many times the largest
#: value any return can have, r_max / (1 - gamma) with r_max the largest |reward| of the data.
CRITIC_DIVERGENCE_MARGIN = 2.0
DEFAULT_STEPS_PER_CALL = 250
_SEED_LIMIT = 2**32
_FLAGS = {
    "steps": "--steps",
    "eval_every": "--eval-every",
    "eval_episodes": "--eval-episodes",
    "checkpoint_every": "--checkpoint-every",
    "steps_per_call": "--steps-per-call",
}


def _run_name(spec: RunSpec) -> str:
    """A `--dataset` run is named after its dataset(s), a preset run after its task."""
    return "+".join(spec.dataset) if spec.dataset else spec.task


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name)


def _warn(message: str) -> None:
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _outputs(out: pathlib.Path) -> list[str]:
    return [n for n in OUTPUTS if (out / n).exists()] if out.is_dir() else []


class _RunLock:
    """The run's hold on its output folder: refuses a folder that holds another run (any of its
    outputs, not only the checkpoint), a `--resume` with nothing to resume, a folder that cannot
    be written (found before any work), and takes an exclusive `flock` on `out/.lock` so that a
    second run on the same folder fails at once."""

    def __init__(self, out: pathlib.Path, resume: bool):
        self.out, self.resume = out, resume
        self.fd: int | None = None
        self.fresh = False  # set once this run owns the folder's outputs

    def __enter__(self) -> _RunLock:
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out.")
        if self.resume and not (out / CHECKPOINT).is_file():
            found = _outputs(out)
            if found:
                raise RunFolderError(
                    f"--resume: {out} holds {', '.join(found)} but no {CHECKPOINT} (that run "
                    "stopped before its first checkpoint), so there is nothing to resume; start "
                    "a new run in another --out."
                )
            what = "is an empty folder" if out.is_dir() else "does not exist"
            raise RunFolderError(
                f"--resume: there is no run to resume in {out} (it {what}); check the path, or "
                "leave out --resume to start a new run."
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
            # A real write, not os.access: permission bits say nothing for root or a read-only
            # file system.
            fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise RunFolderError(
                f"cannot write into --out {out}: {e.strerror or e}; choose another --out."
            ) from None
        self.fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise RunFolderError(
                f"another run is using {out} (it holds {out / '.lock'}); wait for it to finish "
                "or choose another --out."
            ) from None
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
            found = _outputs(out)
            if not self.resume and found:
                if CHECKPOINT in found:
                    hint = "pass --resume to continue it, or choose another --out"
                else:
                    hint = (
                        f"it has no {CHECKPOINT}, so it cannot be resumed; choose another --out "
                        "or delete the folder"
                    )
                raise RunFolderError(
                    f"{out} already holds a run ({', '.join(found)}); {hint}. Nothing was "
                    "overwritten."
                )
        except BaseException:
            self._release()
            raise
        self.fresh = not self.resume
        return self

    def _release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            self.released = True

    def __exit__(self, *exc) -> None:
        self._release()


def _clean_failed(out: pathlib.Path, existed: bool, lock: _RunLock) -> None:
    """After a failure: a new run that wrote no checkpoint leaves nothing behind (so the same
    command can be run again); a folder this run created is removed if it is left empty."""
    if lock.fresh and not (out / CHECKPOINT).exists():
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    if not existed and getattr(lock, "released", False):
        (out / ".lock").unlink(missing_ok=True)
        try:
            out.rmdir()
        except OSError:
            pass


def _checkpoint_note(out: pathlib.Path, resume_hint: bool = True) -> str:
    path = out / CHECKPOINT
    try:
        step = read_header(path)["step"]
    except (OSError, SdepolicyError, KeyError, TypeError):
        return "no checkpoint was written, so there is nothing to resume"
    note = f"the last checkpoint is {path} (step {step})"
    return note + (": continue with the same command and --resume" if resume_hint else "")


@contextlib.contextmanager
def _writing(path: pathlib.Path, out: pathlib.Path):
    """An `OSError` while writing an output (a full disk, a folder made read-only) becomes one
    line naming the file and the intact last checkpoint."""
    try:
        yield
    except OSError as e:
        raise OutputWriteError(
            f"could not write {path}: {e.strerror or e}. {_checkpoint_note(out)}."
        ) from None


def _check_seeds(seeds) -> None:
    if not seeds:
        raise ConfigError("At least one seed is needed.")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s < _SEED_LIMIT:
            hint = (
                f", so it would train exactly like seed {s % _SEED_LIMIT}"
                if isinstance(s, int)
                else ""
            )
            raise ConfigError(
                f"seed {s!r} is outside [0, 2**32): JAX's PRNG keys hold 32 bits here{hint}."
            )
    dup = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if dup:
        raise ConfigError(
            f"seed(s) {', '.join(map(str, dup))} given more than once: the std over seeds would "
            "be over identical agents."
        )


def _run_settings(spec: RunSpec, preset, stored: dict | None, out: pathlib.Path | None) -> dict:
    """The run's resolved lengths and periods. On `--resume` a setting left out takes the
    checkpointed run's value and one that differs is refused, so that one summary never mixes
    two runs' settings."""
    given = {k: getattr(spec, k) for k in _FLAGS}
    for k, v in given.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{_FLAGS[k]} must be a positive integer, got {v!r}.")
    for k, v in (stored or {}).items():
        if k not in given:
            continue
        if given[k] is None:
            given[k] = v
        elif given[k] != v:
            raise ConfigError(
                f"{_FLAGS[k]} is {given[k]} here, but the run in {out} was started with "
                f"{_FLAGS[k]} {v}: resume with the same value (or leave it out), or start a new "
                "run in another --out."
            )
    steps = given["steps"] or preset.epochs_for(spec.algo) * preset.steps_per_epoch
    eval_every = given["eval_every"] or preset.eval_every_epochs * preset.steps_per_epoch
    eval_every = min(eval_every, steps)
    return {
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": given["eval_episodes"] or preset.eval_episodes,
        "checkpoint_every": given["checkpoint_every"] or eval_every,
        "steps_per_call": given["steps_per_call"] or DEFAULT_STEPS_PER_CALL,
    }


def _check_action_box(transitions, low, high, clip: bool):
    """Dataset actions outside the environment's box: a warning with the count, and clipping
    into the box only when asked (`clip_actions`)."""
    acts = np.asarray(transitions.actions)
    tol = 1e-5 * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    outside = np.any((acts < low - tol) | (acts > high + tol), axis=1)
    n = int(outside.sum())
    if n == 0:
        return transitions
    excess = float(np.max(np.maximum(low - acts, acts - high)))
    share = f"{n} of {len(acts)} dataset actions ({100.0 * n / len(acts):.1f} %)"
    dims = [f"[{lo:g}, {hi:g}]" for lo, hi in zip(low.tolist(), high.tolist(), strict=True)]
    box = " x ".join(dims[:4]) + (" x ..." if len(dims) > 4 else "")
    if clip:
        _warn(f"{share} lie outside the action box {box} (by up to {excess:.3g}); clipped.")
        clipped = jnp.asarray(np.clip(acts, low, high), dtype=acts.dtype)
        return eqx.tree_at(lambda t: t.actions, transitions, clipped)
    _warn(
        f"{share} lie outside the environment's action box {box} (by up to {excess:.3g}); "
        "training on them as they are. Pass --clip-actions to clip them into the box."
    )
    return transitions


def _critic_bound(transitions, config) -> float | None:
    gamma = getattr(config, "gamma", None)
    if gamma is None:
        return None
    r_max = max(float(np.max(np.abs(np.asarray(transitions.rewards)))), 1e-6)
    return CRITIC_DIVERGENCE_MARGIN * r_max / (1.0 - gamma)


def _critic_divergence(metrics, bound, seeds, step, first_steps) -> np.ndarray | None:
    """Per seed, whether the chunk's critics went beyond `bound` (|mean Q| or RMS TD error);
    the first such update of each seed is recorded in `first_steps` (and warned about once)."""
    if bound is None or "q_mean" not in metrics:
        return None
    q = np.abs(metrics["q_mean"])
    rms = np.sqrt(np.abs(metrics.get("critic_loss", np.zeros_like(q))))
    with np.errstate(invalid="ignore"):
        exceed = (q > bound) | (rms > bound)
    for i, seed in enumerate(seeds):
        if exceed[i].any() and str(seed) not in first_steps:
            j = int(np.argmax(exceed[i]))
            first_steps[str(seed)] = step + j + 1
            _warn(
                f"critic divergence (seed {seed}, update {step + j + 1}): |mean Q| {q[i, j]:.3g} "
                f"or RMS TD error {rms[i, j]:.3g} exceeds {CRITIC_DIVERGENCE_MARGIN:g} x "
                f"r_max/(1-gamma) = {bound:.3g}; training continues (recorded in metrics.csv "
                "and summary.json)."
            )
    return exceed.any(axis=1)


def _non_finite(report, seeds, step, chunk) -> dict | None:
    """What the compiled chunk's finite report says went NaN or infinite, if anything."""
    first = report["first_bad"]
    params = report["params"]
    bad = [i for i in range(len(seeds)) if first[i] >= 0 or not all(v[i] for v in params.values())]
    if not bad:
        return None
    at = min(step + int(first[i]) + 1 if first[i] >= 0 else step + chunk for i in bad)
    names = sorted(k for k, v in report["metrics"].items() if np.any(v))
    parts = sorted(k for k, v in params.items() if not np.all(v))
    what = []
    if names:
        what.append("non-finite " + ", ".join(names))
    if parts:
        what.append("non-finite parameters in " + ", ".join(parts))
    which = [seeds[i] for i in bad]
    text = " and ".join(what) + f" (seed{'s' if len(which) > 1 else ''} "
    text += ", ".join(map(str, which)) + ")"
    return {"step": int(at), "what": text, "metrics": names, "parameters": parts, "seeds": which}


def _strict_json(obj, path: str = "") -> tuple[Any, list[str]]:
    """`obj` with every NaN or infinity replaced by None, and the paths where that happened."""
    if isinstance(obj, dict):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = _strict_json(v, f"{path}.{k}" if path else str(k))
            bad += b
        return out, bad
    if isinstance(obj, list | tuple):
        out, bad = [], []
        for i, v in enumerate(obj):
            x, b = _strict_json(v, f"{path}[{i}]")
            out.append(x)
            bad += b
        return out, bad
    if isinstance(obj, float | np.floating) and not math.isfinite(obj):
        return None, [path]
    if isinstance(obj, np.floating):
        return float(obj), []
    if isinstance(obj, np.integer):
        return int(obj), []
    return obj, []


def _episode_returns(dataset) -> np.ndarray:
    return np.array([float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()])


def _chunk_size(*periods: int) -> int:
    return functools.reduce(math.gcd, [int(p) for p in periods if p])


def run(spec: RunSpec, on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate; returns the summary that is also written to `summary.json`.

    `on_checkpoint(step)` is called after each checkpoint is written (tests use it to stop a run
    the way a kill would).

    **Raises:**

    An [`SdepolicyError`][] subclass, one line, for every mistake a user can make, found before
    any work where it can be: bad settings or seeds ([`ConfigError`][]), an output folder that
    holds another run, is locked by a running one, has nothing to `--resume` or cannot be written
    ([`RunFolderError`][]), a failed write such as a full disk ([`OutputWriteError`][]), a run
    whose losses, Q values or parameters became non-finite ([`TrainingDivergedError`][]: it stops
    at that chunk and keeps the last good checkpoint) and Ctrl-C ([`RunInterruptedError`][],
    naming the last checkpoint).
    """
    # Settings that need no file are checked before the output folder is touched.
    if spec.algo not in AGENTS:
        raise ConfigError(f"Unknown algorithm {spec.algo!r}; choose one of {sorted(AGENTS)}.")
    _check_seeds(spec.seeds)
    preset = get_preset(spec.task)
    config = apply_overrides(
        CONFIGS[spec.algo](), {**preset.overrides_for(spec.algo), **spec.overrides}
    )
    _run_settings(spec, preset, None, None)  # the ranges; resume consistency comes later
    root = pathlib.Path(data_lib.datasets_root())
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"the Minari datasets folder {root} (MINARI_DATASETS_PATH) is a file, not a folder."
        )
    out = pathlib.Path(spec.out or f"runs/{_slug(_run_name(spec))}-{spec.algo}")
    existed = out.exists()
    lock = _RunLock(out, spec.resume)
    try:
        with lock:
            return _run(spec, out, on_checkpoint, preset, config)
    except KeyboardInterrupt:
        _clean_failed(out, existed, lock)
        raise RunInterruptedError(f"interrupted; {_checkpoint_note(out)}.") from None
    except TrainingDivergedError:
        raise  # its summary.json and metrics.csv say what happened: kept
    except BaseException:
        _clean_failed(out, existed, lock)
        raise


def _run(spec: RunSpec, out: pathlib.Path, on_checkpoint, preset, config) -> dict[str, Any]:
    agent = AGENTS[spec.algo](config)
    ckpt_path = out / CHECKPOINT
    stored = read_header(ckpt_path).get("extra", {}).get("run") if spec.resume else None
    settings = _run_settings(spec, preset, stored, out)
    steps, eval_every = settings["steps"], settings["eval_every"]
    eval_episodes, ckpt_every = settings["eval_episodes"], settings["checkpoint_every"]
    chunk = _chunk_size(settings["steps_per_call"], eval_every, ckpt_every, steps)
    name = _run_name(spec)

    # --- data and environment ---------------------------------------------------------------
    dataset_ids = list(spec.dataset or preset.minari_ids)
    if dataset_ids == [DEFAULT_DATASET_ID]:
        ensure_default_dataset()
    try:
        transitions, dataset = data_lib.load_transitions(
            dataset_ids,
            download=spec.download,
            observation_keys=preset.observation_keys,
            terminal_rule=preset.terminal_rule,
        )
    except OSError as e:  # h5py's error for a truncated or damaged file
        raise DataValidationError(
            f"Could not read dataset {', '.join(dataset_ids)} under {data_lib.datasets_root()}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. The file is damaged or "
            "truncated: delete that dataset's folder and build or download it again."
        ) from None
    reward_transform = spec.reward_transform or preset.reward_transform
    transitions = data_lib.transform_rewards(transitions, reward_transform)
    # The preset's evaluation settings (D4RL's episodic AntMaze/Kitchen, pen's 100 steps).
    make_env = functools.partial(data_lib.recover_env, dataset, spec.env, **preset.eval_env_kwargs)
    env = make_env()
    try:
        data_lib.check_spaces(transitions, env, observation_keys=preset.observation_keys)
        low = np.asarray(env.action_space.low, np.float32)
        high = np.asarray(env.action_space.high, np.float32)
    finally:
        env.close()
    transitions = _check_action_box(transitions, low, high, spec.clip_actions)
    ref_min, ref_max, provenance = reference_scores(
        dataset=dataset, task=spec.task, prefer=preset.ref_scores
    )
    data_returns = _episode_returns(dataset)
    q_bound = _critic_bound(transitions, config)

    # --- agents of all seeds ------------------------------------------------------------------
    obs_dim, act_dim = transitions.obs_dim, transitions.action_dim
    init = lambda k: agent.init(obs_dim, act_dim, low, high, k)
    seed_keys = jnp.stack([jax.random.key(s) for s in spec.seeds])
    # Deserialised leaves are never weakly typed: strong types from the start let a resumed run
    # reuse the compilation of a fresh one in the same process (same values either way).
    states = jax.tree.map(
        lambda x: jnp.array(x, dtype=x.dtype) if getattr(x, "weak_type", False) else x,
        init_seeds(init, seed_keys),
    )
    data_desc = [dataset_ids, len(transitions), spec.env, reward_transform]
    if spec.clip_actions:  # only when set, so that earlier checkpoints keep their fingerprint
        data_desc.append("clip_actions")
    description = {
        "task": spec.task,
        "algo": spec.algo,
        "seeds": list(spec.seeds),
        "config": dataclasses.asdict(config),
        "chunk": chunk,
        "data": data_desc,
    }
    fingerprint = config_fingerprint(description)
    description = json.loads(json.dumps(description, default=str))
    step, history, elapsed, diverged_at = 0, [], 0.0, {}
    if spec.resume:
        states, header = load_checkpoint(
            ckpt_path, states, fingerprint=fingerprint, description=description
        )
        step = header["step"]
        history = header["extra"]["history"]
        elapsed = header["extra"]["elapsed"]
        diverged_at = header["extra"].get("critic_divergence", {})
    states = shard_seeds(states)
    transitions = jax.device_put(transitions)

    update = agent.update
    train = make_checked_seeds_train_fn(
        update, transitions, config.batch_size, chunk, strategy=spec.seed_strategy
    )
    act_all = _act_fn(agent)
    num_seeds = len(spec.seeds)

    def act(obs_flat, key):
        obs = jnp.asarray(obs_flat).reshape(num_seeds, eval_episodes, -1)
        keys = jax.random.split(key, num_seeds)
        return np.asarray(act_all(states, obs, keys)).reshape(num_seeds * eval_episodes, -1)

    def evaluate(at_step):
        key = jax.random.fold_in(jax.random.key(12345), at_step)
        ep = run_episodes_stats(
            make_env, act, num_seeds * eval_episodes, key, seed=1_000_000,
            observation_keys=preset.observation_keys,
        )  # fmt: skip
        per_seed = ep.returns.reshape(num_seeds, eval_episodes).mean(axis=1)
        normalized = normalized_score(per_seed, ref_min, ref_max)
        if preset.score == "success":  # AntMaze: 0/1 per episode, x100 (docs/method.md §12.3)
            normalized = success_rate(ep.successes.reshape(num_seeds, eval_episodes))
        return {
            "step": at_step,
            "returns": per_seed.tolist(),
            "normalized": np.atleast_1d(normalized).tolist(),
        }

    metrics_path = out / "metrics.csv"
    with _writing(metrics_path, out):
        _truncate_csv(metrics_path, step)
    refs = (ref_min, ref_max, provenance)
    info = dict(name=name, out=str(out), settings=settings, q_bound=q_bound)
    bar = tqdm(
        total=steps, initial=step, unit="step", dynamic_ncols=True, disable=not spec.progress
    )
    steps_timed, time_timed, compiled = 0, 0.0, False
    try:
        while step < steps:
            t0 = time.perf_counter()
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(seed_keys, step)
            new_states, metrics, report = train(states, keys)
            metrics = jax.tree.map(np.asarray, metrics)  # [seeds, chunk]
            dt = time.perf_counter() - t0
            if compiled:  # the first call of this process includes compilation
                steps_timed, time_timed = steps_timed + chunk, time_timed + dt
            compiled = True
            elapsed += dt
            bad = _non_finite(jax.tree.map(np.asarray, report), spec.seeds, step, chunk)
            over = _critic_divergence(metrics, q_bound, spec.seeds, step, diverged_at)
            means = {k: v.mean(axis=1) for k, v in metrics.items()}
            if bad is not None:
                # The bad state is neither evaluated nor saved: the last checkpoint stays the
                # last good one. The chunk's row shows which metrics went non-finite.
                with _writing(metrics_path, out):
                    _append_csv(metrics_path, step + chunk, spec.seeds, means, None, over)
                message = (
                    f"training diverged at update {bad['step']}: {bad['what']}. Stopped there; "
                    f"{_checkpoint_note(out, resume_hint=False)}. Lower the learning rates, or "
                    "set grad_norm > 0 to clip the gradients."
                )
                summary = _summary(spec, config, steps, history, data_returns, refs, **info)
                summary["status"] = "diverged"
                summary["non_finite"] = {**bad, "message": message}
                _finish(out, summary, history, diverged_at, elapsed, None, num_seeds)
                raise TrainingDivergedError(message)
            states = new_states
            step += chunk
            record = None
            if step % eval_every == 0 or step == steps:
                record = evaluate(step)
                history.append(record)
            with _writing(metrics_path, out):
                _append_csv(metrics_path, step, spec.seeds, means, record, over)
            bar.set_postfix(_postfix(means, record), refresh=False)
            bar.update(chunk)
            if step % ckpt_every == 0 or step == steps:
                extra = {
                    "history": history,
                    "elapsed": elapsed,
                    "run": settings,
                    "critic_divergence": diverged_at,
                }
                with _writing(ckpt_path, out):
                    save_checkpoint(
                        ckpt_path,
                        states,
                        step=step,
                        fingerprint=fingerprint,
                        extra=_strict_json(extra)[0],
                        description=description,
                    )
                if on_checkpoint is not None:
                    on_checkpoint(step)
    finally:
        bar.close()

    summary = _summary(spec, config, steps, history, data_returns, refs, **info)
    summary["status"] = "completed"
    if spec.offline_selection:
        summary["offline_selection"] = offline_selection_summary(
            metrics_path, history, spec.seeds, preset.top_k
        )
    rate = steps_timed * num_seeds / time_timed if time_timed else None
    return _finish(out, summary, history, diverged_at, elapsed, rate, num_seeds)


def _finish(out, summary, history, diverged_at, elapsed, rate, num_seeds) -> dict[str, Any]:
    """Write `summary.json` (strict JSON) and the learning curve; returns the summary."""
    summary["critic_divergence"] = {**summary["critic_divergence"], "first_step": diverged_at}
    summary["critic_divergence"]["diverged"] = bool(diverged_at)
    summary["wall_time_s"] = elapsed
    summary["update_steps_per_s"] = rate
    summary["devices"] = [str(d) for d in jax.devices()]
    summary, bad_paths = _strict_json(summary)
    if bad_paths:
        summary["non_finite_values"] = bad_paths
    path = out / "summary.json"
    with _writing(path, out):
        atomic_write_bytes(path, json.dumps(summary, indent=2, allow_nan=False).encode())
        if history:
            plot_learning_curve(out / "learning_curve.png", history, summary)
    return summary


@functools.cache
def _act_fn(agent):
    """Batched evaluation actions for all seeds at once, compiled once per agent (an agent is
    equal to, and hashes like, any other of the same algorithm and configuration)."""
    return eqx.filter_jit(eqx.filter_vmap(agent.act))


def _mean_std(x) -> dict[str, float]:
    x = np.asarray(x, dtype=float)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def _summary(
    spec, config, steps, history, data_returns, refs, *, name, out, settings, q_bound
) -> dict[str, Any]:
    ref_min, ref_max, provenance = refs
    summary = {
        "name": name,
        "task": spec.task,
        "algo": spec.algo,
        "seeds": list(spec.seeds),
        "steps": steps,
        "run": settings,
        "out": out,
        "config": dataclasses.asdict(config),
        "reference_scores": {"min": ref_min, "max": ref_max, "provenance": provenance},
        "dataset": {
            "ids": list(spec.dataset) if spec.dataset else None,
            "episodes": int(data_returns.size),
            "mean_return": float(data_returns.mean()),
            "normalized": float(normalized_score(data_returns.mean(), ref_min, ref_max)),
        },
        "last_evaluation": None,
        "best_evaluation": None,
        "critic_divergence": {
            "rule": f"|mean Q| or the critics' RMS TD error above {CRITIC_DIVERGENCE_MARGIN:g} x "
            "r_max/(1-gamma), r_max the largest |reward| of the training data; first_step: the "
            "first update where a seed's critics did so",
            "bound": q_bound,
        },
        "evaluations": history,
    }
    if history:
        returns = np.array([h["returns"] for h in history])  # [evals, seeds]
        normalized = np.array([h["normalized"] for h in history])
        summary["last_evaluation"] = {
            "step": history[-1]["step"],
            "return": _mean_std(returns[-1]),
            "normalized": _mean_std(normalized[-1]),
        }
        summary["best_evaluation"] = {
            "note": "per seed the max over evaluations, then mean ± std over seeds "
            "(optimistic: the reference code's online model selection)",
            "return": _mean_std(returns.max(axis=0)),
            "normalized": _mean_std(normalized.max(axis=0)),
        }
    return summary


def _postfix(metrics, record) -> dict[str, str]:
    post = {k: f"{float(np.mean(v)):.3g}" for k, v in metrics.items() if "loss" in k}
    if record is not None:
        post["return"] = f"{np.mean(record['returns']):.1f}"
    return post




def _truncate_csv(path: pathlib.Path, step: int) -> None:
    """Drop rows written after the checkpoint we resume from (a killed run may have logged
    steps whose state was never saved), and a partial last row; rewritten atomically."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    width = len(rows[0])
    kept = [rows[0]] + [
        r for r in rows[1:] if len(r) == width and r[0].isdigit() and int(r[0]) <= step
    ]
    buf = io.StringIO()
    csv.writer(buf).writerows(kept)
    atomic_write_bytes(path, buf.getvalue().encode())


def _append_csv(path, step, seeds, metrics, record, over=None) -> None:
    """One row per seed; `over` (per seed, or None for agents without critics) is the critic
    divergence flag of the chunk."""
    names = sorted(metrics)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            flag = [] if over is None else ["critic_over_bound"]
            w.writerow(["step", "seed", *names, *flag, "eval_return", "eval_normalized"])
        for i, seed in enumerate(seeds):
            ev = ["", ""] if record is None else [record["returns"][i], record["normalized"][i]]
            flag = [] if over is None else [int(over[i])]
            w.writerow([step, seed, *[f"{float(metrics[n][i]):.6g}" for n in names], *flag, *ev])
