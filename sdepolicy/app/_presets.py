"""Per-task presets: which Minari dataset, which reward transform, how long, which hyper-parameters.

Provenance of the numbers (comments mark each group):

- `"erdpqe"` and `"bc"`: docs/method.md §8, which is the `hyperparameters` table of the ER-DP-QE
  reference code (`ruoqizzz/entropy-offlineRL`, `main.py`; re-read there and identical).
  Everything not listed (T = 5, M = 64, β = 4, α = 0.01, batch 256, critic lr 3e-4, ...) is the
  config's default (the paper's).
  The paper says T = 10 for Kitchen and Pen; the code, and these presets, keep T = 5.
- `"diffusion-ql"`: the `hyperparameters` table of Diffusion-QL's official code
  (`Zhendong-Wang/Diffusion-Policies-for-Offline-RL`, `main.py`), re-read from its source, not
  from memory; docs/method.md §8 quotes parts of it (gn 9/9/1 on the medium tasks, η 4.5 on
  antmaze-large-play, kitchen-complete 250 epochs). Its critic lr is fixed at 3e-4 in its agent.

Datasets: the locomotion ids (`mujoco/<env>/medium-v0`, ...) are Minari's re-collections on the
Gymnasium v5 MuJoCo environments, not D4RL's exact data, and their reference scores are their own.
Minari has `medium` and `expert` (and `simple`) but no `medium-replay`: D4RL's medium-expert is
built as medium + expert (`extra_minari_ids`), and the medium-replay presets name an id that the
user must create (their `note` says so). AntMaze, Pen and Kitchen use Minari's ports of the D4RL
data (`D4RL/...`), whose environments need the `robotics` extra.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..rl import AgentName
from ..rl.agents import CONFIGS
from ._data import RewardTransform, TerminalRule
from ._errors import ConfigError, UnknownTaskError, check_literal_fields
from ._overrides import apply_overrides as apply_overrides


@dataclass(frozen=True)
class TaskPreset:
    """One task: its dataset, evaluation and per-algorithm overrides.

    **Fields:**

    - `name`: the D4RL task name (`"hopper-medium-v2"`) or our own (`"pendulum-mixed"`).
    - `minari_id`: the Minari dataset id; `extra_minari_ids` are concatenated after it.
    - `env_family`: `"hopper"`, `"antmaze"`, ...: selects D4RL reference scores.
    - `reward_transform`: a name of `sdepolicy.app.transform_rewards`.
    - `epochs`: training length in epochs of `steps_per_epoch` gradient steps (ER-DP-QE's);
      `algo_epochs` overrides it per algorithm (see `TaskPreset.epochs_for`).
    - `eval_episodes`, `eval_every_epochs`: evaluation protocol.
    - `agent_overrides`: per algorithm (`"erdpqe"`, `"diffusion-ql"`, `"bc"`), config field →
      value, applied with `apply_overrides`.
    - `note`: caveats about the dataset, shown to users.
    - `top_k`: Diffusion-QL's per-task `top_k` for its offline model selection
      (`sdepolicy.app.offline_selection_summary`), None where it has none.
    - `observation_keys`: for dictionary observations, the keys kept, in this order (None: all,
      sorted); AntMaze keeps D4RL's 29-d `("achieved_goal", "observation")`.
    - `terminal_rule`: `"dataset"` (Minari's terminations), `"episode_end"` (also terminal at
      each episode's last step, as D4RL's Kitchen data) or `"reward"` (terminal where the raw
      reward is >= 1, as D4RL's AntMaze data); see `relabel_terminals` in `sdepolicy/app/_data.py`.
    - `eval_env_kwargs`: passed to the evaluation environment's `gym.make` (D4RL's episodic
      AntMaze and Kitchen, pen's 100-step episodes).
    - `score`: `"return"` (D4RL-normalised mean return) or `"success"` (AntMaze: the percentage
      of episodes that reached the goal).
    - `ref_scores`: `"dataset"` (the dataset's metadata, else D4RL's by family) or `"d4rl"`
      (always D4RL's: where Minari's stored references are not D4RL's).

    Where these come from and why: `docs/method.md §12`.
    """

    name: str
    minari_id: str
    env_family: str
    reward_transform: RewardTransform
    epochs: int
    eval_episodes: int
    eval_every_epochs: int = 50
    steps_per_epoch: int = 1000
    agent_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    algo_epochs: dict[str, int] = field(default_factory=dict)
    extra_minari_ids: tuple[str, ...] = ()
    note: str = ""
    top_k: int | None = None
    observation_keys: tuple[str, ...] | None = None
    terminal_rule: TerminalRule = "dataset"
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_wrappers: tuple[str, ...] = ()
    score: Literal["return", "success"] = "return"
    ref_scores: Literal["dataset", "d4rl"] = "dataset"

    def __post_init__(self):
        check_literal_fields(self)

    @property
    def minari_ids(self) -> tuple[str, ...]:
        """All dataset ids, in concatenation order (pass to `load_transitions`)."""
        return (self.minari_id, *self.extra_minari_ids)

    def epochs_for(self, algo: str) -> int:
        """Training epochs for an algorithm (Diffusion-QL trains kitchen-complete for 250)."""
        return self.algo_epochs.get(algo, self.epochs)

    def overrides_for(self, algo: str) -> dict[str, Any]:
        """The config overrides for an algorithm (empty when it has none)."""
        return dict(self.agent_overrides.get(algo, {}))

    def config(self, algo: AgentName) -> Any:
        """The typed agent config of this task for `algo`: the config class's defaults with the
        preset's overrides (an `ERDPQEConfig`, `DiffusionQLConfig` or `BCConfig`)."""
        if algo not in CONFIGS:
            raise ConfigError(f"Unknown algorithm {algo!r}; choose one of {sorted(CONFIGS)}.")
        return apply_overrides(CONFIGS[algo](), self.overrides_for(algo))


def _erdpqe(actor_lr, eta, max_q_backup, grad_norm, loss, x0_clip) -> dict[str, Any]:
    """A row of docs/method.md §8's ER-DP-QE table, in its column order."""
    return dict(actor_lr=actor_lr, eta=eta, max_q_backup=max_q_backup, grad_norm=grad_norm,
                loss=loss, x0_clip=x0_clip)  # fmt: skip


def _dql(actor_lr, eta, max_q_backup, grad_norm) -> dict[str, Any]:
    """A row of Diffusion-QL's table (its `lr` is the actor's; its critic lr is fixed 3e-4)."""
    return dict(actor_lr=actor_lr, eta=eta, max_q_backup=max_q_backup, grad_norm=grad_norm)


def _agents(
    erdpqe: dict[str, Any], dql: dict[str, Any], epochs: int, dql_epochs: int | None = None
) -> dict[str, dict[str, Any]]:
    # The reference code's BC agent takes the task's lr, loss type and x̂0 clipping (and has no
    # clipping, EMA or lr decay: BCConfig's defaults, docs/method.md §8.3).
    bc = {"lr": erdpqe["actor_lr"], "loss": erdpqe["loss"], "x0_clip": erdpqe["x0_clip"]}
    # Both codes run with --lr_decay: CosineAnnealingLR(T_max=epochs) stepped once per
    # evaluation period of 50 epochs x 1000 steps (docs/method.md §6.7).
    decay = lambda n: {"lr_decay": (50 * 1000, n)}
    return {
        "erdpqe": erdpqe | decay(epochs),
        "diffusion-ql": dql | decay(dql_epochs or epochs),
        "bc": bc,
    }


# Locomotion. ER-DP-QE: docs/method.md §8 row 1. Diffusion-QL: its table, grad-norm per task.
_DQL_LOCO_GN = {
    ("halfcheetah", "medium"): 9.0, ("hopper", "medium"): 9.0, ("walker2d", "medium"): 1.0,
    ("halfcheetah", "medium-replay"): 2.0, ("hopper", "medium-replay"): 4.0,
    ("walker2d", "medium-replay"): 4.0, ("halfcheetah", "medium-expert"): 7.0,
    ("hopper", "medium-expert"): 5.0, ("walker2d", "medium-expert"): 5.0,
}  # fmt: skip
# Diffusion-QL's per-task top_k (its offline model selection, docs/method.md §7.2).
_DQL_LOCO_TOP_K = {
    ("halfcheetah", "medium"): 1, ("hopper", "medium"): 2, ("walker2d", "medium"): 1,
    ("halfcheetah", "medium-replay"): 0, ("hopper", "medium-replay"): 2,
    ("walker2d", "medium-replay"): 1, ("halfcheetah", "medium-expert"): 0,
    ("hopper", "medium-expert"): 2, ("walker2d", "medium-expert"): 1,
}  # fmt: skip


def _locomotion() -> list[TaskPreset]:
    """The nine MuJoCo locomotion tasks on Minari's re-collections."""
    presets = []
    for (env, quality), gn in _DQL_LOCO_GN.items():
        dataset_id, extra = f"mujoco/{env}/{quality}-v0", ()
        note = "Minari's re-collection on the v5 environment, not D4RL's data."
        if quality == "medium-expert":
            dataset_id, extra = f"mujoco/{env}/medium-v0", (f"mujoco/{env}/expert-v0",)
            note += " Built as medium + expert, as D4RL built medium-expert."
        elif quality == "medium-replay":
            note += f" Minari publishes no medium-replay dataset: create '{dataset_id}' yourself."
        presets.append(
            TaskPreset(
                name=f"{env}-{quality}-v2",
                minari_id=dataset_id,
                extra_minari_ids=extra,
                env_family=env,
                reward_transform="none",
                epochs=2000,
                eval_episodes=10,
                agent_overrides=_agents(
                    _erdpqe(3e-4, 1.0, False, 4.0, "mll", False), _dql(3e-4, 1.0, False, gn), 2000
                ),
                note=note,
                top_k=_DQL_LOCO_TOP_K[(env, quality)],
            )
        )
    return presets


# AntMaze, Adroit pen and Kitchen on Minari's ports of the D4RL data: one family a row, with
# what its tasks share and, per dataset, (ER-DP-QE's row, Diffusion-QL's row, Diffusion-QL's
# top_k, Diffusion-QL's epochs where they differ). ER-DP-QE: docs/method.md §8.1 rows 2-5 (AntMaze
# umaze without max-Q backup); Diffusion-QL: its table, §8.2 (pen-human η 0.15 and gn 7,
# kitchen-complete gn 9 and 250 epochs).
#
# AntMaze is made D4RL's task (docs/method.md §12.3): D4RL's 29-d observation (torso x, y then
# the rest of qpos/qvel; no goal), goal steps relabelled as terminals (Minari's data never
# terminate), evaluation that ends at the goal, scored as a success rate against D4RL's 0/1
# references (Minari's metadata hold the waypoint controller's returns).
_ANTMAZE_ERDPQE = lambda max_q: _erdpqe(3e-4, 2.0, max_q, 4.0, "nml", True)  # noqa: E731
_PEN_ERDPQE = _erdpqe(3e-5, 0.1, False, 8.0, "nml", True)
_KITCHEN_ERDPQE = _erdpqe(3e-4, 0.005, False, 10.0, "mll", False)
_D4RL_FAMILIES: dict[str, dict[str, Any]] = {
    "antmaze": dict(
        name="antmaze-{}-v0",
        minari_id="D4RL/antmaze/{}-v1",
        rows={
            "umaze": (_ANTMAZE_ERDPQE(False), _dql(3e-4, 0.5, False, 2.0), 2, None),
            "umaze-diverse": (_ANTMAZE_ERDPQE(True), _dql(3e-4, 2.0, True, 3.0), 2, None),
            "medium-play": (_ANTMAZE_ERDPQE(True), _dql(1e-3, 2.0, True, 2.0), 1, None),
            "medium-diverse": (_ANTMAZE_ERDPQE(True), _dql(3e-4, 3.0, True, 1.0), 1, None),
            "large-play": (_ANTMAZE_ERDPQE(True), _dql(3e-4, 4.5, True, 10.0), 2, None),
            "large-diverse": (_ANTMAZE_ERDPQE(True), _dql(3e-4, 3.5, True, 7.0), 1, None),
        },
        shared=dict(
            reward_transform="antmaze",
            note=(
                "Minari's port of D4RL AntMaze (v1 data); needs the `robotics` extra. Made "
                "D4RL's task: 29-d observation without the goal, terminals where reward = 1, "
                "episodes end at the goal, score = success rate (docs/method.md §12.3)."
            ),
            observation_keys=("achieved_goal", "observation"),
            terminal_rule="reward",
            eval_env_kwargs={"continuing_task": False},
            score="success",
        ),
    ),
    "pen": dict(
        name="pen-{}-v1",
        minari_id="D4RL/pen/{}-v2",
        rows={
            "human": (_PEN_ERDPQE, _dql(3e-5, 0.15, False, 7.0), 2, None),
            "cloned": (_PEN_ERDPQE, _dql(3e-5, 0.1, False, 8.0), 2, None),
        },
        shared=dict(
            reward_transform="normalize",
            note=(
                "Minari's port of D4RL Adroit pen; needs the `robotics` extra. Evaluated on "
                "D4RL's 100-step episodes that end when the pen drops (Minari's data and "
                "environment have 200 steps and never end early; docs/method.md §12.5)."
            ),
            eval_env_kwargs={"max_episode_steps": 100},
            eval_wrappers=("pen_drop",),
        ),
    ),
    "kitchen": dict(
        name="kitchen-{}-v0",
        minari_id="D4RL/kitchen/{}-v2",
        rows={
            "complete": (_KITCHEN_ERDPQE, _dql(3e-4, 0.005, False, 9.0), 2, 250),
            "partial": (_KITCHEN_ERDPQE, _dql(3e-4, 0.005, False, 10.0), 2, None),
            "mixed": (_KITCHEN_ERDPQE, _dql(3e-4, 0.005, False, 10.0), 0, None),
        },
        shared=dict(
            reward_transform="none",
            note=(
                "Minari's port of D4RL Kitchen; needs the `robotics` extra, and "
                "FrankaKitchen-v1 needs mujoco 3.3 (docs/method.md §11). Dict observations are "
                "flattened with sorted keys. Evaluated as D4RL's task (each task rewarded once, "
                "the episode ends when all four are done, 280 steps); the training data keep "
                "Minari's per-step task counts, and each demonstration's last step is terminal "
                "as in D4RL's kitchen data (docs/method.md §12.4)."
            ),
            terminal_rule="episode_end",
            eval_env_kwargs={
                "remove_task_when_completed": True,
                "terminate_on_tasks_completed": True,
                "max_episode_steps": 280,
            },
        ),
    ),
}


def _d4rl_families() -> list[TaskPreset]:
    """The AntMaze, pen and Kitchen tasks (`_D4RL_FAMILIES`): 1000 epochs, 100 evaluation
    episodes, D4RL's reference scores."""
    presets = []
    for family, spec in _D4RL_FAMILIES.items():
        for data, (erdpqe, dql, top_k, dql_epochs) in spec["rows"].items():
            presets.append(
                TaskPreset(
                    name=spec["name"].format(data),
                    minari_id=spec["minari_id"].format(data),
                    env_family=family,
                    epochs=1000,
                    eval_episodes=100,
                    algo_epochs={"diffusion-ql": dql_epochs} if dql_epochs else {},
                    agent_overrides=_agents(erdpqe, dql, 1000, dql_epochs),
                    top_k=top_k,
                    ref_scores="d4rl",
                    **spec["shared"],
                )
            )
    return presets


# The project's own defaults, what the command line runs without `--task`: the embedded task
# (sdepolicy/app/_default_dataset.py) and every `--dataset` run. Our values, not a paper's, on
# top of the configs' defaults (which are the papers'), chosen once for all the real datasets of
# benchmarks/real_data.py and the embedded one (docs/method.md §8.6 has the measurements behind
# each): NML with x̂0 clipping (MLL at T = 5 makes bang-bang policies that only suit Pendulum),
# a 256-wide actor (a 64-wide one cannot reproduce expert data) with 64-wide critics (speed),
# at evaluation the EMA actor's candidates drawn by a softmax whose temperature is the critics'
# disagreement about them (near the best candidate on broad data, near one sample on narrow
# data); for ER-DP-QE M = 10, the Q term weighted per diffusion step by the inverse of dx̂0/dε̂
# and a tenth of the reference's Q weight (η = 0.1: the smallest worst-case shortfall against
# BC and Diffusion-QL over all the real datasets); for Diffusion-QL grad_norm 4 (ER-DP-QE's).
_PROJECT_EVALUATION = {
    "eval_temperature": 1.0,
    "eval_temperature_scale": "disagreement",
    "eval_actor": "ema",
}
PROJECT_DEFAULTS: dict[str, dict[str, Any]] = {
    "erdpqe": {"loss": "nml", "x0_clip": True, "hidden": 256, "critic_hidden": 64}
    | _PROJECT_EVALUATION
    | {"num_critics": 10, "q_weighting": "x0_gain_inverse", "eta": 0.1},
    "diffusion-ql": {"hidden": 256, "critic_hidden": 64, "grad_norm": 4.0} | _PROJECT_EVALUATION,
    "bc": {"loss": "nml", "x0_clip": True, "hidden": 256},
}


def _pendulum() -> TaskPreset:
    """The embedded task (the project's own defaults)."""
    return TaskPreset(
        name="pendulum-mixed",
        minari_id="sdepolicy/pendulum-mixed-v0",
        env_family="pendulum",
        reward_transform="normalize",
        epochs=6,
        eval_episodes=10,
        eval_every_epochs=1,
        steps_per_epoch=1000,
        agent_overrides={k: dict(v) for k, v in PROJECT_DEFAULTS.items()},
        note="Embedded dataset built locally on first use (Pendulum-v1, scripted + random); "
        "its hyper-parameters are also the defaults of a --dataset run without --task.",
    )


_PRESETS: dict[str, TaskPreset] = {
    p.name: p for p in (*_locomotion(), *_d4rl_families(), _pendulum())
}


def list_presets() -> list[str]:
    """The names of all presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> TaskPreset:
    """The preset called `name`.

    **Raises:**

    `UnknownTaskError` naming the closest known names.
    """
    try:
        return _PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        hint += "All tasks: `python examples/d4rl_train.py --list-tasks` (or list_presets())."
        raise UnknownTaskError(f"Unknown task '{name}': {hint}") from None
