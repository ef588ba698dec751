"""The offline-RL training run: dataset -> agents of all seeds -> fused updates -> evaluation,
with a CSV of metrics, a PNG learning curve, a JSON summary and atomic checkpoints.

The life of a run, the files it passes through in order:

1. `examples/d4rl_train.py`: `main` parses the command line, calls `run`, prints the summary.
2. `sdepolicy/app/_cli.py`: the flags, derived from `RunSpec`; `--set` items to a dict.
3. `sdepolicy/app/_runner.py` (here): `run` checks the settings, seeds and folder name.
4. `sdepolicy/app/_presets.py`: the task's preset and its agent config (`TaskPreset.config`).
5. `sdepolicy/app/_overrides.py`: the `--set` values coerced onto the config, old spellings.
6. `sdepolicy/rl/agents/_config.py`, `sdepolicy/rl/_options.py`: the config's range checks.
7. `sdepolicy/app/_run_folder.py`: the output folder's lock, its writes, clean-up on failure.
8. `sdepolicy/app/_checkpoint.py`: on `--resume`, the checkpoint's verified header.
9. `sdepolicy/app/_default_dataset.py`: the embedded Pendulum dataset, built on first use.
10. `sdepolicy/app/_data.py`: the Minari data as `Transitions`, rewards, the environment.
11. `sdepolicy/app/_wrappers.py`: the evaluation environment's wrappers (pen's drop).
12. `sdepolicy/app/_scores.py`: the reference scores that normalise returns.
13. `sdepolicy/rl/agents/` (`_base.py`, `_erdpqe.py`, ...): `make_agent`, `init` per seed.
14. `sdepolicy/rl/_training.py`, `_sharding.py`: fused, finiteness-checked updates of all seeds.
15. `sdepolicy/app/_diagnostics.py`: each chunk's non-finite and critic-divergence checks.
16. `sdepolicy/app/_evaluation.py`: every seed's episodes stepped together.
17. `sdepolicy/app/_run_outputs.py`: a row of `metrics.csv` per chunk and seed.
18. `sdepolicy/app/_checkpoint.py`: atomic checkpoints every `checkpoint_every` steps.
19. `sdepolicy/app/_diagnostics.py`: the summary's scores; `_model_selection.py` if asked.
20. `sdepolicy/app/_run_outputs.py`, `_plots.py`: `summary.json` and `learning_curve.png`.

A run is three steps: `_resolve` (settings, data, environment, agents of all seeds, the
checkpoint to resume from), `_train` (fused chunks of updates, evaluations, `metrics.csv`,
checkpoints) and `_write` (`summary.json` and the learning curve); `run` checks what it can
before touching the output folder and holds the folder's lock around the three.

Determinism is by construction: every random draw is keyed by (seed, step), never by how many
Python-side calls came before, so a run resumed from a checkpoint reproduces the uninterrupted
run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import pathlib
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..rl import (
    AbstractAgent,
    AgentName,
    SeedStrategy,
    Transitions,
    init_seeds,
    make_checked_seeds_train_fn,
    shard_seeds,
)
from ..rl.agents import AGENTS, make_agent
from . import _data as data_lib
from ._checkpoint import config_fingerprint, load_checkpoint, save_checkpoint, verified_header
from ._data import RewardTransform
from ._default_dataset import DEFAULT_DATASET_ID, ensure_default_dataset
from ._diagnostics import critic_bound, critic_divergence, non_finite, summarise
from ._errors import (
    CheckpointMismatchError,
    ConfigError,
    DataValidationError,
    RunInterruptedError,
    RunTerminatedError,
    TrainingDivergedError,
    check_literal_fields,
)
from ._evaluation import run_episodes_stats
from ._model_selection import offline_selection_summary
from ._overrides import config_record
from ._presets import TaskPreset, apply_overrides, get_preset
from ._run_folder import (
    CHECKPOINT,
    RunLock,
    check_out_path,
    checkpoint_note,
    clean_failed,
    folder_run_id,
    warn,
    write_run_id,
    writing,
)
from ._run_outputs import append_csv, finish, postfix, strict_json, truncate_csv
from ._scores import normalized_score, reference_scores, success_rate
from ._wrappers import wrapped


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What to run. `None` fields take the task preset's value. The command line of
    `examples/d4rl_train.py` is derived from these fields (`sdepolicy.app.add_run_arguments`):
    each bullet below is its flag's help, the field's type gives its choices.

    - `task`: a task preset's name (`sdepolicy.app.list_presets()`, `--list-tasks`).
    - `algo`: the agent.
    - `seeds`: the seeds, trained together in one process (the agent state is vmapped over
        seeds).
    - `seed_strategy`: how the seeds share one compiled call: `vmap` batches them into every
        matmul, `sequential` runs them one after the other in each call (faster on a CPU at
        hidden 256, see benchmarks/README.md); the same results either way.
    - `steps`: gradient steps (default: the preset's epochs).
    - `eval_every`: steps between evaluations (default: the preset's).
    - `eval_episodes`: episodes per evaluation and seed (default: the preset's).
    - `final_eval_episodes`: episodes per seed of the final evaluation, at the last step
        (default: 20, or `eval_episodes` where that is more; docs/protocol.md).
    - `steps_per_call`: updates fused in one compiled call (`lax.scan`; default 250).
    - `checkpoint_every`: steps between checkpoints (default: `eval_every`).
    - `out`: the output folder (default `runs/<task>-<algo>`).
    - `resume`: continue from the checkpoint in `out`.
    - `overrides`: agent hyper-parameters, field to value; a string is coerced to the config
        field's type (on the command line, `--set FIELD=VALUE`, repeated).
    - `download`: download a missing Minari dataset (needs `minari[hf]` and the network).
    - `progress`: show a progress bar (on the command line, `--no-progress` hides it).
    - `dataset`: Minari dataset id(s) to train on instead of the preset's (its
        hyper-parameters stay).
    - `env`: a Gymnasium id to evaluate in instead of the dataset's recovered environment.
    - `reward_transform`: the reward transform instead of the preset's.
    - `clip_actions`: clip dataset actions into the environment's action box (otherwise a
        warning).
    - `offline_selection`: also report Diffusion-QL's offline model selection (top-k by BC
        loss with early stopping, docs/method.md §7.2) beside the last and best evaluations.

    From Python, one `dataset` id may be given as a string (`dataset="imported/pend-v0"`).

    On `--resume`, `steps`, `eval_every`, `eval_episodes`, `final_eval_episodes`,
    `checkpoint_every` and `steps_per_call` left as `None` take the checkpointed run's values;
    given ones must match.
    """

    task: str = "pendulum-mixed"
    algo: AgentName = "erdpqe"
    seeds: tuple[int, ...] = (0,)
    seed_strategy: SeedStrategy = "vmap"
    steps: int | None = None
    eval_every: int | None = None
    eval_episodes: int | None = None
    final_eval_episodes: int | None = None
    steps_per_call: int | None = None
    checkpoint_every: int | None = None
    out: str | None = None
    resume: bool = False
    overrides: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"flag": "--set", "metavar": "FIELD=VALUE"}
    )
    download: bool = False
    progress: bool = True
    dataset: tuple[str, ...] | str | None = None
    env: str | None = None
    reward_transform: RewardTransform | None = None
    clip_actions: bool = False
    offline_selection: bool = dataclasses.field(default=False, metadata={"flag": "--ms-offline"})


DEFAULT_STEPS_PER_CALL = 250
DEFAULT_FINAL_EVAL_EPISODES = 20
_SEED_LIMIT = 2**32
_FLAGS = {
    "steps": "--steps",
    "eval_every": "--eval-every",
    "eval_episodes": "--eval-episodes",
    "final_eval_episodes": "--final-eval-episodes",
    "checkpoint_every": "--checkpoint-every",
    "steps_per_call": "--steps-per-call",
}


def _run_name(spec: RunSpec) -> str:
    """A `--dataset` run is named after its dataset(s), a preset run after its task."""
    return "+".join(spec.dataset) if spec.dataset else spec.task


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name)


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
        # The last evaluation is the one a run is judged on: at least 20 episodes per seed.
        "final_eval_episodes": given["final_eval_episodes"]
        or max(DEFAULT_FINAL_EVAL_EPISODES, given["eval_episodes"] or preset.eval_episodes),
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
        warn(f"{share} lie outside the action box {box} (by up to {excess:.3g}); clipped.")
        clipped = jnp.asarray(np.clip(acts, low, high), dtype=acts.dtype)
        return eqx.tree_at(lambda t: t.actions, transitions, clipped)
    warn(
        f"{share} lie outside the environment's action box {box} (by up to {excess:.3g}); "
        "training on them as they are. Pass --clip-actions to clip them into the box."
    )
    return transitions


def _episode_returns(dataset) -> np.ndarray:
    return np.array([float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()])


def _chunk_size(*periods: int) -> int:
    return functools.reduce(math.gcd, [int(p) for p in periods if p])


def _normalised(spec: RunSpec) -> RunSpec:
    """`spec` with the sequences the command line gives as tuples: a single dataset id given as
    a string (`RunSpec(dataset="imported/pend-v0")`) is that one id, not its characters."""
    changes: dict[str, Any] = {}
    if isinstance(spec.dataset, str):
        changes["dataset"] = (spec.dataset,)
    elif spec.dataset is not None and not isinstance(spec.dataset, tuple):
        changes["dataset"] = tuple(spec.dataset)
    if isinstance(spec.seeds, int | np.integer) and not isinstance(spec.seeds, bool):
        changes["seeds"] = (spec.seeds,)
    elif not isinstance(spec.seeds, tuple) and isinstance(spec.seeds, list | range):
        changes["seeds"] = tuple(spec.seeds)
    spec = dataclasses.replace(spec, **changes) if changes else spec
    if spec.dataset is not None and (
        not spec.dataset or not all(isinstance(d, str) for d in spec.dataset)
    ):
        raise ConfigError(
            f"dataset must be a Minari id or a sequence of ids, got {spec.dataset!r}."
        )
    return spec


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it stops like a Ctrl-C (the clean-up, one line
    naming the last checkpoint) rather than dying mid-write."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """While the run holds its folder, SIGTERM raises `_Terminated` (once; a second is
    ignored until the run has cleaned up). Only in the main thread and only where SIGTERM has
    its default action, so a handler of the caller's is left alone."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run(spec: RunSpec, on_checkpoint: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate; returns the summary that is also written to `summary.json`.

    `on_checkpoint(step)` is called after each checkpoint is written (tests use it to stop a run
    the way a kill would).

    **Raises:**

    An `SdepolicyError` subclass, one line, for every mistake a user can make, found before
    any work where it can be: bad settings or seeds (`ConfigError`), an output folder that
    holds another run, is locked by a running one, has nothing to `--resume` or cannot be written
    (`RunFolderError`), a failed write such as a full disk (`OutputWriteError`), a run
    whose losses, Q values or parameters became non-finite (`TrainingDivergedError`: it stops
    at that chunk and keeps the last good checkpoint) and Ctrl-C (`RunInterruptedError`,
    naming the last checkpoint).
    """
    # Settings that need no file are checked before the output folder is touched.
    spec = _normalised(spec)
    if spec.algo not in AGENTS:
        raise ConfigError(f"Unknown algorithm {spec.algo!r}; choose one of {sorted(AGENTS)}.")
    _check_seeds(spec.seeds)
    preset = get_preset(spec.task)
    check_literal_fields(spec)
    config = apply_overrides(preset.config(spec.algo), spec.overrides)
    _run_settings(spec, preset, None, None)  # the ranges; resume consistency comes later
    for dataset_id in spec.dataset or preset.minari_ids:
        data_lib.check_dataset_id(dataset_id)  # as the importer checks it: no `..`, no `/x`
    data_lib.check_backend()
    root = pathlib.Path(data_lib.datasets_root())
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(
            f"the Minari datasets folder {root} (MINARI_DATASETS_PATH) is a file, not a folder."
        )
    out = pathlib.Path(spec.out or f"runs/{_slug(_run_name(spec))}-{spec.algo}")
    check_out_path(out)  # a name too long, a dangling or looping link: one line, nothing made
    existed = out.exists()
    lock = RunLock(out, spec.resume)
    try:
        with _sigterm_interrupts(), lock:
            if spec.resume and not lock.resume:  # killed before its first checkpoint: restarted
                spec = dataclasses.replace(spec, resume=False)
            job = _resolve(spec, out, preset, make_agent(config))
            return _write(job, _train(job, on_checkpoint))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (`_Terminated`)
        clean_failed(out, existed, lock)
        if isinstance(e, _Terminated):
            raise RunTerminatedError(f"terminated (SIGTERM); {checkpoint_note(out)}.") from None
        raise RunInterruptedError(f"interrupted; {checkpoint_note(out)}.") from None
    except TrainingDivergedError:
        raise  # its summary.json and metrics.csv say what happened: kept
    except BaseException:
        clean_failed(out, existed, lock)
        raise


@dataclasses.dataclass
class _Job:
    """Everything a run resolved before training: what to train, on what, where to write, and
    where a resumed run stands."""

    spec: RunSpec
    preset: TaskPreset
    agent: AbstractAgent
    out: pathlib.Path
    settings: dict[str, int]
    chunk: int
    transitions: Transitions
    make_env: Callable[[], Any]
    refs: tuple[float, float, str]
    data_returns: np.ndarray
    q_bound: float | None
    seed_keys: jax.Array
    states: Any
    fingerprint: str
    description: dict[str, Any]
    # Where the run stands (a fresh run: step 0; a resumed one: its checkpoint's).
    step: int
    history: list[dict[str, Any]]
    elapsed: float
    diverged_at: dict[str, int]
    # Seconds spent in evaluations (their compilation included), and the step from which they
    # were timed (a checkpoint of an older version has no evaluation time: its step).
    eval_elapsed: float = 0.0
    eval_timed_from: int = 0
    # The run's id (in `.run_id`, every checkpoint's header and summary.json), and the update
    # rate last measured (kept when a resumed process times no chunk: a completed run).
    run_id: str | None = None
    rate: float | None = None


def _run_id(out: pathlib.Path, ckpt_path: pathlib.Path, header: dict | None) -> str:
    """The id of this run: a new one for a new run; on `--resume` the checkpoint's, which must
    be the id of the run whose other outputs the folder holds (`.run_id`): a checkpoint of
    another run copied into the folder (same configuration, another history) is refused
    before it can cut `metrics.csv` or replace `summary.json`."""
    if header is None:
        return uuid.uuid4().hex
    theirs, ours = header.get("run_id"), folder_run_id(out)
    if theirs is not None and ours is not None and theirs != ours:
        raise CheckpointMismatchError(
            f"{ckpt_path} was written by another run (run id {theirs}) than the one whose outputs "
            f"{out} holds (run id {ours}, in {out / '.run_id'}): it was copied in from another "
            "folder. Put that run's own checkpoint back, or resume the other run in its own "
            "folder; nothing was changed."
        )
    if theirs is None and ours is not None:
        raise CheckpointMismatchError(
            f"{ckpt_path} names no run, but {out} holds the outputs of run {ours}: it is a "
            "checkpoint of an earlier version copied in from another folder. Put that run's own "
            "checkpoint back, or resume the other run in its own folder; nothing was changed."
        )
    # A checkpoint of a version before run ids, in its own folder: it gets one now.
    return theirs if isinstance(theirs, str) else uuid.uuid4().hex


def _resolve(spec: RunSpec, out: pathlib.Path, preset: TaskPreset, agent) -> _Job:
    """Settings (against the checkpoint on `--resume`), dataset and environment, the agents of
    all seeds, and the state to continue from."""
    config = agent.config
    ckpt_path = out / CHECKPOINT
    # The header is used only once its digest is checked: an edited step or history is refused.
    header = verified_header(ckpt_path) if spec.resume else None
    run_id = _run_id(out, ckpt_path, header)
    extra = header.get("extra") if header is not None else None
    stored = extra.get("run") if isinstance(extra, dict) else None
    settings = _run_settings(spec, preset, stored, out)
    chunk = _chunk_size(
        settings["steps_per_call"],
        settings["eval_every"],
        settings["checkpoint_every"],
        settings["steps"],
    )

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
    make_env = wrapped(
        functools.partial(data_lib.recover_env, dataset, spec.env, **preset.eval_env_kwargs),
        preset.eval_wrappers,
    )
    env = make_env()
    try:
        data_lib.check_spaces(transitions, env, observation_keys=preset.observation_keys)
        low = np.asarray(env.action_space.low, np.float32)
        high = np.asarray(env.action_space.high, np.float32)
    finally:
        env.close()
    transitions = _check_action_box(transitions, low, high, spec.clip_actions)
    refs = reference_scores(dataset=dataset, task=spec.task, prefer=preset.ref_scores)

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
        "config": config_record(config),  # the stored layout: old checkpoints resume
        "chunk": chunk,
        "data": data_desc,
    }
    fingerprint = config_fingerprint(description)
    description = json.loads(json.dumps(description, default=str))
    step, history, elapsed, diverged_at = 0, [], 0.0, {}
    eval_elapsed, eval_timed_from, rate = 0.0, 0, None
    if spec.resume:
        states, header = load_checkpoint(
            ckpt_path, states, fingerprint=fingerprint, description=description
        )
        step = header["step"]
        history = header["extra"]["history"]
        elapsed = header["extra"]["elapsed"]
        diverged_at = header["extra"].get("critic_divergence", {})
        eval_elapsed = header["extra"].get("eval_elapsed")
        eval_timed_from = step if eval_elapsed is None else 0
        rate = header["extra"].get("update_steps_per_s")
    return _Job(
        spec=spec,
        preset=preset,
        agent=agent,
        out=out,
        settings=settings,
        chunk=chunk,
        transitions=jax.device_put(transitions),
        make_env=make_env,
        refs=refs,
        data_returns=_episode_returns(dataset),
        q_bound=critic_bound(transitions, config),
        seed_keys=seed_keys,
        states=shard_seeds(states),
        fingerprint=fingerprint,
        description=description,
        step=step,
        history=history,
        elapsed=elapsed,
        diverged_at=diverged_at,
        eval_elapsed=eval_elapsed or 0.0,
        eval_timed_from=eval_timed_from,
        run_id=run_id,
        rate=rate,
    )


def _evaluator(job: _Job) -> Callable[[Any, int, int], dict[str, Any]]:
    """`(states, step, episodes) -> record`: every seed's episodes stepped together, their
    mean return per seed and its D4RL-normalised score (AntMaze: the success rate)."""
    spec, preset = job.spec, job.preset
    act_all, num_seeds = _act_fn(job.agent), len(spec.seeds)
    ref_min, ref_max, _ = job.refs

    def evaluate(states, at_step, episodes):
        def act(obs_flat, key):
            obs = jnp.asarray(obs_flat).reshape(num_seeds, episodes, -1)
            keys = jax.random.split(key, num_seeds)
            return np.asarray(act_all(states, obs, keys)).reshape(num_seeds * episodes, -1)

        key = jax.random.fold_in(jax.random.key(12345), at_step)
        ep = run_episodes_stats(
            job.make_env, act, num_seeds * episodes, key, seed=1_000_000,
            observation_keys=preset.observation_keys,
        )  # fmt: skip
        per_seed = ep.returns.reshape(num_seeds, episodes).mean(axis=1)
        normalized = normalized_score(per_seed, ref_min, ref_max)
        if preset.score == "success":  # AntMaze: 0/1 per episode, x100 (docs/method.md §12.3)
            normalized = success_rate(ep.successes.reshape(num_seeds, episodes))
        return {
            "step": at_step,
            "returns": per_seed.tolist(),
            "normalized": np.atleast_1d(normalized).tolist(),
            "episodes": episodes,
        }

    return evaluate


def _train(job: _Job, on_checkpoint) -> float | None:
    """Fused chunks of updates from where the job stands to the end, with evaluations, a row of
    `metrics.csv` per chunk and seed, and checkpoints; the job's state, step and history advance
    in place. Returns the update rate for the summary (`_rate`). At the first non-finite chunk
    it writes what happened and raises `TrainingDivergedError`."""
    spec, out, settings, chunk = job.spec, job.out, job.settings, job.chunk
    steps, eval_every, ckpt_every = (
        settings["steps"],
        settings["eval_every"],
        settings["checkpoint_every"],
    )
    train = make_checked_seeds_train_fn(
        job.agent.update,
        job.transitions,
        job.agent.config.batch_size,
        chunk,
        strategy=spec.seed_strategy,
    )
    evaluate = _evaluator(job)
    ckpt_path, metrics_path = out / CHECKPOINT, out / "metrics.csv"
    with writing(metrics_path, out):
        truncate_csv(metrics_path, job.step)
    with writing(out / ".run_id", out):
        write_run_id(out, job.run_id)  # before any checkpoint names it
    bar = tqdm(
        total=steps, initial=job.step, unit="step", dynamic_ncols=True, disable=not spec.progress
    )
    steps_timed, time_timed, compiled = 0, 0.0, False
    try:
        while job.step < steps:
            step = job.step
            t0 = time.perf_counter()
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(job.seed_keys, step)
            new_states, metrics, report = train(job.states, keys)
            metrics = jax.tree.map(np.asarray, metrics)  # [seeds, chunk]
            dt = time.perf_counter() - t0
            if compiled:  # the first call of this process includes compilation
                steps_timed, time_timed = steps_timed + chunk, time_timed + dt
            compiled = True
            job.elapsed += dt
            bad = non_finite(jax.tree.map(np.asarray, report), spec.seeds, step, chunk)
            over = critic_divergence(metrics, job.q_bound, spec.seeds, step, job.diverged_at)
            means = {k: v.mean(axis=1) for k, v in metrics.items()}
            if bad is not None:
                # The bad state is neither evaluated nor saved: the last checkpoint stays the
                # last good one. The chunk's row shows which metrics went non-finite.
                with writing(metrics_path, out):
                    append_csv(metrics_path, step + chunk, spec.seeds, means, None, over)
                message = (
                    f"training diverged at update {bad['step']}: {bad['what']}. Stopped there; "
                    f"{checkpoint_note(out, resume_hint=False)}. Lower the learning rates, or "
                    "set grad_norm > 0 to clip the gradients."
                )
                _write(job, None, status="diverged", non_finite={**bad, "message": message})
                raise TrainingDivergedError(message)
            job.states = new_states
            job.step = step = step + chunk
            record = None
            if step % eval_every == 0 or step == steps:
                # The last evaluation, the one the run is judged on, has more episodes.
                final = step == steps
                episodes = settings["final_eval_episodes" if final else "eval_episodes"]
                t_eval = time.perf_counter()
                record = evaluate(job.states, step, episodes)
                job.eval_elapsed += time.perf_counter() - t_eval
                job.history.append(record)
            with writing(metrics_path, out):
                append_csv(metrics_path, step, spec.seeds, means, record, over)
            bar.set_postfix(postfix(means, record), refresh=False)
            bar.update(chunk)
            if step % ckpt_every == 0 or step == steps:
                extra = {
                    "history": job.history,
                    "elapsed": job.elapsed,
                    "run": settings,
                    "critic_divergence": job.diverged_at,
                    "eval_elapsed": job.eval_elapsed,
                    "update_steps_per_s": _rate(steps_timed, time_timed, len(spec.seeds), job),
                }
                with writing(ckpt_path, out):
                    save_checkpoint(
                        ckpt_path,
                        job.states,
                        step=step,
                        fingerprint=job.fingerprint,
                        extra=strict_json(extra)[0],
                        description=job.description,
                        run_id=job.run_id,
                    )
                if on_checkpoint is not None:
                    on_checkpoint(step)
    finally:
        bar.close()
    return _rate(steps_timed, time_timed, len(spec.seeds), job)


def _rate(steps_timed: int, time_timed: float, num_seeds: int, job: _Job) -> float | None:
    """Update steps per second (all seeds) timed in this process; where it timed none (a
    resumed run that was already complete, or resumed for one chunk) the rate measured before,
    from the checkpoint, rather than none."""
    if time_timed:
        return steps_timed * num_seeds / time_timed
    return job.rate


def _write(job: _Job, rate: float | None, status: str = "completed", **extra) -> dict[str, Any]:
    """`summary.json` (strict JSON) and the learning curve, with the update rate `rate` (None:
    not measured); returns the summary."""
    spec = job.spec
    info = dict(name=_run_name(spec), out=str(job.out), settings=job.settings, q_bound=job.q_bound)
    steps, history = job.settings["steps"], job.history
    summary = summarise(spec, job.agent.config, steps, history, job.data_returns, job.refs, **info)
    summary["status"] = status
    summary["run_id"] = job.run_id
    summary["timing"] = _timing(job)
    summary.update(extra)
    if status == "completed" and spec.offline_selection:
        summary["offline_selection"] = offline_selection_summary(
            job.out / "metrics.csv", history, spec.seeds, job.preset.top_k
        )
    return finish(job.out, summary, history, job.diverged_at, job.elapsed, rate, len(spec.seeds))


def _timing(job: _Job) -> dict[str, Any]:
    """Training and evaluation seconds of the run (all its processes; compilation included)
    and the evaluations' share of their sum."""
    train, evals = job.elapsed, job.eval_elapsed
    timing = {
        "train_s": train,
        "eval_s": evals,
        "eval_share": evals / (train + evals) if train + evals > 0 else None,
        "eval_episodes": sum(
            len(h["returns"]) * h.get("episodes", job.settings["eval_episodes"])
            for h in job.history
        ),
    }
    if job.eval_timed_from:
        timing["note"] = (
            f"evaluations before step {job.eval_timed_from} (an older checkpoint) were not timed"
        )
    return timing


@functools.cache
def _act_fn(agent):
    """Batched evaluation actions for all seeds at once, compiled once per agent (an agent is
    equal to, and hashes like, any other of the same algorithm and configuration)."""
    return eqx.filter_jit(eqx.filter_vmap(agent.act))
