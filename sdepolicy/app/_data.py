"""Minari datasets to `Transitions`: loading (offline first), validation, spaces, rewards.

The one convention to know: observations that are dictionaries (Kitchen's goal-conditioned
observations) are flattened by `flatten_observation` in a fixed order, keys sorted
recursively, each leaf raveled, and the same function must be used for environment observations
at evaluation, so that the policy sees the same layout in both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Shaped

from ..rl import Transitions
from ._errors import (
    BackendError,
    ConfigError,
    DatasetNotFoundError,
    DataValidationError,
    MissingExtraError,
    SdepolicyError,
    SpaceMismatchError,
)

#: The reward transforms by name (`transform_rewards`).
RewardTransform = Literal["none", "antmaze", "normalize", "scale"]
REWARD_TRANSFORMS = get_args(RewardTransform)
_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


def flatten_observation(
    obs: Any, batch_ndim: int = 0, keys: Sequence[str] | None = None
) -> Float[np.ndarray, "*batch obs"]:
    r"""Flattens an observation (an array or a nested dict/tuple of arrays) to one float32 vector.

    Dictionaries are visited in sorted key order, recursively; tuples in their order; each leaf
    is raveled over its non-batch axes; the pieces are concatenated. Kitchen's
    `{"achieved_goal": {...}, "desired_goal": {...}, "observation": ...}` thus becomes
    `[achieved_goal (sorted tasks), desired_goal (sorted tasks), observation]`.

    **Arguments:**

    - `obs`: one observation, or a batch of them (Minari stores an episode's observations as a
      dict of arrays with the time axis first).
    - `batch_ndim`: how many leading axes are batch axes and are kept (0 for an environment
      observation, 1 for an episode).
    - `keys`: for a dictionary observation, the top-level keys to keep, in this order, instead
      of all of them sorted (AntMaze's D4RL layout is `("achieved_goal", "observation")`:
      `docs/method.md §12.3`). Ignored for array observations.

    **Returns:**

    A float32 array of shape `(*batch, obs_dim)`.
    """
    leaves: list[np.ndarray] = []

    def visit(x: Any) -> None:
        if isinstance(x, Mapping):
            for key in sorted(x):
                visit(x[key])
        elif isinstance(x, tuple):
            for item in x:
                visit(item)
        else:
            a = np.asarray(x, dtype=np.float32)
            # An explicit size, not -1, so that empty batches (0 steps) reshape too.
            size = int(np.prod(a.shape[batch_ndim:]))
            leaves.append(a.reshape(a.shape[:batch_ndim] + (size,)))

    if keys is not None and isinstance(obs, Mapping):
        missing = [k for k in keys if k not in obs]
        if missing:
            raise DataValidationError(
                f"Observation keys {missing} not in the observation (it has {sorted(obs)})."
            )
        for key in keys:
            visit(obs[key])
    else:
        visit(obs)
    if not leaves:
        raise DataValidationError("An observation with no array in it cannot be flattened.")
    return np.concatenate(leaves, axis=-1)


def space_dim(space: Any, keys: Sequence[str] | None = None) -> int:
    """The length of `flatten_observation` (with the same `keys`) of an element of a
    Gymnasium `space`."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        chosen = sorted(space.keys()) if keys is None else list(keys)
        return sum(space_dim(space[key]) for key in chosen)
    if isinstance(space, gym.spaces.Tuple):
        return sum(space_dim(s) for s in space.spaces)
    if space.shape is None:
        raise SpaceMismatchError(f"Unsupported space {space!r}: it has no fixed shape.")
    return int(np.prod(space.shape))


def _field(episode: Any, name: str) -> Any:
    return episode[name] if isinstance(episode, Mapping) else getattr(episode, name)


#: The terminal rules by name (`relabel_terminals`).
TerminalRule = Literal["dataset", "episode_end", "reward"]
TERMINAL_RULES = get_args(TerminalRule)


def relabel_terminals(
    rewards: Shaped[np.ndarray, " steps"], terminations: Shaped[np.ndarray, " steps"], rule: str
) -> Float[np.ndarray, " steps"]:
    r"""The terminal flags of an episode's transitions under a rule.

    - `"dataset"`: the stored terminations.
    - `"episode_end"`: the stored terminations, and the episode's last step terminal: D4RL's
      Kitchen data mark each demonstration's last step terminal (its generation script,
      `generate_kitchen_datasets.py`), Minari's do not (`docs/method.md §12.4`).
    - `"reward"`: terminal wherever the raw reward is $\ge 1$ (or the data terminated): D4RL's
      AntMaze data mark every goal step (reward 1) as terminal, while Minari's AntMaze data
      were collected as a continuing task and never terminate (`docs/method.md §12.3`).

    **Returns:**

    A float32 array of 0/1 flags.

    **Raises:**

    `ConfigError` for an unknown rule.
    """
    term = np.asarray(terminations).astype(np.float32)
    if rule == "dataset":
        return term
    if rule == "episode_end":
        term = term.copy()
        if term.size:
            term[-1] = 1.0
        return term
    if rule == "reward":
        return np.maximum(term, (np.asarray(rewards) >= 1.0).astype(np.float32))
    raise ConfigError(f"Unknown terminal rule '{rule}'; choose one of {', '.join(TERMINAL_RULES)}.")


def episodes_to_transitions(
    episodes: Iterable[Any],
    name: str = "dataset",
    *,
    observation_keys: Sequence[str] | None = None,
    terminal_rule: str = "dataset",
) -> Transitions:
    r"""Builds $(s, a, r, s', \text{terminal})$ from whole episodes, validating them on the way.

    An episode of $T$ steps has $T + 1$ observations (the last is the state after the last
    action) and $T$ actions, rewards, terminations and truncations. Step $i$ gives
    $s = o_i$, $s' = o_{i+1}$, terminal $=$ `terminations[i]`: a truncation (time limit) is not
    a terminal, so its last transition bootstraps from $o_T$. Episodes are concatenated in order.

    **Arguments:**

    - `episodes`: Minari `EpisodeData` (or mappings with the same fields).
    - `name`: the dataset's name in error messages.
    - `observation_keys`: see `flatten_observation`.
    - `terminal_rule`: see `relabel_terminals` (applied to the raw rewards, before any
      reward transform).

    **Returns:**

    A `Transitions` of float32 JAX arrays (on the default device).

    **Raises:**

    `DataValidationError` on inconsistent lengths or dimensions, non-finite values (named with
    their counts per field) or no transitions at all.
    """
    parts: dict[str, list[np.ndarray]] = {f: [] for f in _FIELDS}
    bad = {"observations": 0, "actions": 0, "rewards": 0}
    for i, ep in enumerate(episodes):
        ep_id = getattr(ep, "id", i)
        obs = flatten_observation(_field(ep, "observations"), batch_ndim=1, keys=observation_keys)
        act = flatten_observation(_field(ep, "actions"), batch_ndim=1)
        rew = np.asarray(_field(ep, "rewards"), dtype=np.float32).reshape(-1)
        term = np.asarray(_field(ep, "terminations")).reshape(-1)
        trunc = np.asarray(_field(ep, "truncations")).reshape(-1)
        steps = rew.shape[0]
        for what, arr, n in (
            ("observations", obs, steps + 1),
            ("actions", act, steps),
            ("terminations", term, steps),
            ("truncations", trunc, steps),
        ):
            if arr.shape[0] != n:
                raise DataValidationError(
                    f"{name}: episode {ep_id} has {arr.shape[0]} {what} for {steps} rewards "
                    f"(expected {n}: T + 1 observations and T of everything else)."
                )
            if what in parts and parts[what] and arr.shape[1] != parts[what][0].shape[1]:
                raise DataValidationError(
                    f"{name}: episode {ep_id} has {what[:-1]} dimension {arr.shape[1]}, "
                    f"earlier episodes have {parts[what][0].shape[1]}."
                )
        for what, arr in (("observations", obs), ("actions", act), ("rewards", rew)):
            bad[what] += int(np.sum(~np.isfinite(arr)))
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(act)
        parts["rewards"].append(rew)
        parts["terminals"].append(relabel_terminals(rew, term, terminal_rule))
    if any(bad.values()):
        counts = ", ".join(f"{n} in `{k}`" for k, n in bad.items() if n)
        raise DataValidationError(f"{name} has non-finite values (NaN or inf): {counts}.")
    if sum(len(r) for r in parts["rewards"]) == 0:
        raise DataValidationError(f"{name} has no transitions (no episode with a step).")
    return Transitions(**{f: jnp.asarray(np.concatenate(v, axis=0)) for f, v in parts.items()})


def datasets_root() -> str:
    """Where Minari looks for datasets: `MINARI_DATASETS_PATH`, else `~/.minari/datasets`."""
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(
        os.path.expanduser("~"), ".minari", "datasets"
    )


def check_backend() -> None:
    """Start JAX's backend now, so that a platform that cannot start (`JAX_PLATFORMS=gpu`
    without a GPU build of jaxlib) is one line saying what to do, before any work.

    **Raises:**

    `BackendError` naming the platform asked for, what to install and what to unset.
    """
    try:
        import jax

        jax.devices()
    except RuntimeError as e:
        asked = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME")
        what = f"JAX_PLATFORMS={asked}" if asked else "the default platform"
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(
            f"JAX cannot start {what} ({detail}). For an NVIDIA GPU install JAX's CUDA build "
            '(pip install -U "jax[cuda12]") and check that the GPU is visible (nvidia-smi); to '
            "use the CPU, unset JAX_PLATFORMS (or set JAX_PLATFORMS=cpu)."
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_dataset_id(dataset_id: Any) -> tuple[str | None, str, int]:
    """`(namespace, name, version)` of a Minari dataset id `(namespace/)name-vN`; the version is
    required and no component may leave the datasets root (`..`, an absolute path).

    **Raises:**

    `ConfigError` naming the id and the form it must have.
    """
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise ConfigError(
            f"Malformed dataset id {dataset_id!r}: use (namespace/)name-vN with letters, digits, "
            "'-' and '_', e.g. 'imported/pendulum-random-v0'."
        )
    namespace, name, version = match.group("namespace", "dataset", "version")
    return namespace or None, name, int(version)


def _check_reference_scores(dataset_id: str, metadata: Mapping) -> None:
    """Reference scores stored in a dataset must be finite numbers, both or neither."""
    lo, hi = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if lo is None and hi is None:
        return
    try:
        ok = math.isfinite(float(lo)) and math.isfinite(float(hi)) and float(lo) != float(hi)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataValidationError(
            f"Minari dataset '{dataset_id}' has unusable reference scores (ref_min_score {lo!r}, "
            f"ref_max_score {hi!r}): they must be two different finite numbers. Import it again "
            "with finite --ref-min and --ref-max (or without them)."
        )


def load_dataset(dataset_id: str, *, download: bool = False) -> Any:
    """Opens a Minari dataset, offline first; see `load_transitions`."""
    import minari

    check_dataset_id(dataset_id)
    root = datasets_root()
    how = (
        f'Get it with `pip install "minari[hf]"` then `minari download {dataset_id}` '
        f"(needs the network), or copy the dataset folder to {os.path.join(root, dataset_id)}."
    )
    try:
        dataset = _open(dataset_id, root)
    except FileNotFoundError:
        if not download:
            source = (
                "from MINARI_DATASETS_PATH"
                if os.environ.get("MINARI_DATASETS_PATH")
                else "the default; set MINARI_DATASETS_PATH to use another folder"
            )
            raise DatasetNotFoundError(
                f"Minari dataset '{dataset_id}' is not on this machine (looked in {root}, "
                f"{source}). {how}"
            ) from None
    else:
        _check_reference_scores(dataset_id, dataset.storage.metadata)
        return dataset
    try:
        minari.download_dataset(dataset_id)
        dataset = _open(dataset_id, root)
    except Exception as e:  # no `minari[hf]`, no network, no such remote dataset: all one story
        raise DatasetNotFoundError(
            f"Minari dataset '{dataset_id}' is not in {root} and downloading it failed "
            f"({type(e).__name__}: {_first_line(e)}). {how}"
        ) from e
    _check_reference_scores(dataset_id, dataset.storage.metadata)
    return dataset


def _open(dataset_id: str, root: str) -> Any:
    """`minari.load_dataset`, with a damaged folder (metadata that is not a Minari dataset's, a
    truncated file) as one `DataValidationError`; a missing one stays `FileNotFoundError`."""
    import minari

    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        if os.path.isdir(os.path.join(root, dataset_id, "data")):
            raise DataValidationError(
                f"Minari dataset '{dataset_id}' in {root} is incomplete (a file of its data "
                "folder is missing): delete that dataset's folder and import or download it again."
            ) from None
        raise
    except (ValueError, KeyError, AssertionError, TypeError, AttributeError, OSError) as e:
        # Minari asserts on the metadata's keys ({} gives an AssertionError); json, h5py and the
        # gymnasium spec parser raise the others on a damaged file.
        text = str(e).strip()
        why = f"{type(e).__name__}: {_first_line(e)}" if text else type(e).__name__
        meta = os.path.join(root, dataset_id, "data", "metadata.json")
        if isinstance(e, AssertionError | KeyError):
            why = f"its {meta} lacks the keys Minari needs ({why})"
        raise DataValidationError(
            f"Minari dataset '{dataset_id}' in {root} is damaged or truncated ({why}): delete "
            "that dataset's folder and import or download it again."
        ) from None


def load_transitions(
    dataset_id: str | Sequence[str],
    *,
    download: bool = False,
    observation_keys: Sequence[str] | None = None,
    terminal_rule: str = "dataset",
) -> tuple[Transitions, Any]:
    """Loads a Minari dataset (or several, concatenated) as `Transitions`.

    Offline first: `minari.load_dataset` reads `MINARI_DATASETS_PATH` (or `~/.minari/datasets`)
    and nothing touches the network unless `download=True`.

    **Arguments:**

    - `dataset_id`: a Minari id such as `"mujoco/hopper/medium-v0"`, or a sequence of ids whose
      transitions are concatenated (D4RL's medium-expert is medium followed by expert).
    - `download`: try `minari.download_dataset` when a dataset is not local.
    - `observation_keys`, `terminal_rule`: see `episodes_to_transitions` (a task preset's
      fields of the same names).

    **Returns:**

    `(transitions, dataset)`: the validated transitions (float32 JAX arrays) and the first
    `minari.MinariDataset` (for its environment and reference scores).

    **Raises:**

    `DatasetNotFoundError` with a one-line message saying where Minari looked and how to get
    the dataset; `DataValidationError` for malformed data.
    """
    ids = [dataset_id] if isinstance(dataset_id, str) else list(dataset_id)
    if not ids:
        raise DataValidationError("No dataset id given.")
    datasets = [load_dataset(i, download=download) for i in ids]
    parts = [
        episodes_to_transitions(
            d.iterate_episodes(),
            name=i,
            observation_keys=observation_keys,
            terminal_rule=terminal_rule,
        )
        for d, i in zip(datasets, ids, strict=True)
    ]
    for i, part in zip(ids[1:], parts[1:], strict=True):
        if (part.obs_dim, part.action_dim) != (parts[0].obs_dim, parts[0].action_dim):
            raise SpaceMismatchError(
                f"Datasets '{ids[0]}' and '{i}' cannot be concatenated: observation/action dims "
                f"({parts[0].obs_dim}, {parts[0].action_dim}) vs ({part.obs_dim}, "
                f"{part.action_dim})."
            )
    if len(parts) == 1:
        return parts[0], datasets[0]
    merged = {f: jnp.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS}
    return Transitions(**merged), datasets[0]


def check_spaces(data: Any, env: Any, observation_keys: Sequence[str] | None = None) -> None:
    """Checks that the data's observation/action dimensions match the environment's.

    **Arguments:**

    - `data`: `Transitions`, or anything with `observation_space` and `action_space` (a
      `minari.MinariDataset`).
    - `env`: a Gymnasium environment; dictionary observations count after flattening.
    - `observation_keys`: the keys the flattening keeps (see `flatten_observation`).

    **Raises:**

    `SpaceMismatchError` naming both shapes.
    """
    if isinstance(data, Transitions):
        got = (data.obs_dim, data.action_dim)
    else:
        got = (space_dim(data.observation_space, observation_keys), space_dim(data.action_space))
    want = (space_dim(env.observation_space, observation_keys), space_dim(env.action_space))
    if got != want:
        env_id = getattr(getattr(env, "spec", None), "id", type(env).__name__)
        raise SpaceMismatchError(
            f"Data and environment '{env_id}' disagree (flattened): data observations "
            f"({got[0]},), actions ({got[1]},); environment observations ({want[0]},), "
            f"actions ({want[1]},)."
        )


_ROBOTICS_NAMES = ("gymnasium_robotics", "antmaze", "pointmaze", "adroit", "kitchen")


def _robotics_installed() -> bool:
    try:
        import gymnasium_robotics  # noqa: F401  (importing registers its environments)
    except ImportError:
        return False
    return True


def recover_env(dataset: Any, task_env_id: str | None = None, **kwargs: Any) -> Any:
    """The evaluation environment of a dataset, with a clear error when an extra is missing.

    **Arguments:**

    - `dataset`: a `minari.MinariDataset`; its evaluation environment
      (`dataset.recover_environment(eval_env=True)`) is used unless `task_env_id` is given.
    - `task_env_id`: a Gymnasium id to make instead.
    - `**kwargs`: passed to `gym.make`.

    **Returns:**

    A Gymnasium environment.

    **Raises:**

    `MissingExtraError` when the environment comes from gymnasium-robotics (AntMaze, Adroit,
    Kitchen) and it is not installed; `SdepolicyError` for other failures to make it.
    """
    import gymnasium as gym

    if task_env_id is not None:
        what = task_env_id
    else:
        spec = getattr(dataset, "env_spec", None)
        what = getattr(spec, "id", None) or str(getattr(dataset, "id", "the dataset's"))
    try:
        if task_env_id is not None:
            _robotics_installed()
            return gym.make(task_env_id, **kwargs)
        return dataset.recover_environment(eval_env=True, **kwargs)
    except (ImportError, gym.error.Error) as e:
        text = f"{what} {e} {getattr(dataset, 'env_spec', '')}".lower()
        if any(n in text for n in _ROBOTICS_NAMES) and not _robotics_installed():
            raise MissingExtraError(
                f"Environment '{what}' needs gymnasium-robotics, which is not installed: "
                f'run `pip install -e ".[robotics]"`.'
            ) from e
        raise SdepolicyError(
            f"Could not make environment '{what}': {type(e).__name__}: {_first_line(e)}"
        ) from e
    except Exception as e:
        if "kitchen" not in what.lower():
            raise
        # docs/method.md §11: FrankaKitchen-v1 fails under mujoco 4 and works with mujoco 3.3.0.
        raise SdepolicyError(
            f"Could not make '{what}' ({type(e).__name__}: {_first_line(e)}); FrankaKitchen-v1 "
            f'is known to need mujoco 3.3: try `pip install "mujoco==3.3.0"`.'
        ) from e


def transform_rewards(transitions: Transitions, name: str) -> Transitions:
    r"""Applies a reward transform of `docs/method.md §8` by name.

    - `"none"`: $r$.
    - `"antmaze"`: $4(r - 0.5)$ (the reference codes' `cql_antmaze`).
    - `"normalize"`: $(r - \bar r) / \operatorname{std}(r)$ over the dataset's rewards, with the
      unbiased standard deviation (`ddof=1`, as `torch.Tensor.std` in the reference code).
    - `"scale"`: $r / \operatorname{std}(r)$, the same scale without the shift, so that Q keeps
      the sign and size of the returns that the actor's $Q / \operatorname{mean}|Q|$ term
      assumes (docs/method.md §8.6).

    **Returns:**

    The same transitions with new rewards.

    **Raises:**

    `ConfigError` for an unknown name; `DataValidationError` when `"normalize"` meets
    constant rewards.
    """
    r = transitions.rewards
    if name == "none":
        return transitions
    if name == "antmaze":
        new = 4.0 * (r - 0.5)
    elif name in ("normalize", "scale"):
        std = jnp.std(r, ddof=1) if r.shape[0] > 1 else jnp.zeros(())
        if not float(std) > 0.0:
            raise DataValidationError(f"Reward transform '{name}': the rewards are constant.")
        new = (r - jnp.mean(r)) / std if name == "normalize" else r / std
    else:
        raise ConfigError(
            f"Unknown reward transform '{name}'; choose one of {', '.join(REWARD_TRANSFORMS)}."
        )
    return eqx.tree_at(lambda t: t.rewards, transitions, new.astype(r.dtype))
