"""Task presets (docs/method.md §8 and Diffusion-QL's table), overrides, and D4RL normalised scores."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pytest

from sdepolicy.app import (
    ConfigError,
    TaskPreset,
    UnknownTaskError,
    apply_overrides,
    get_preset,
    list_presets,
)
from sdepolicy.app._checkpoint import config_fingerprint
from sdepolicy.app._scores import (
    PROVENANCE_D4RL,
    PROVENANCE_DATASET,
    env_family,
    normalized_score,
    reference_scores,
)
from sdepolicy.rl.agents import CONFIGS
from sdepolicy.rl.experimental import EXTENSIONS

# The agent configs' options, read off the configs themselves (nothing here lists them).
CONFIG_FIELDS = {algo: {f.name for f in dataclasses.fields(cls)} for algo, cls in CONFIGS.items()}
#: Every config class an override can reach: the agents' and their experimental extensions.
ALL_CONFIGS = (*CONFIGS.values(), *EXTENSIONS.values())

D4RL_TASKS = (
    [f"{e}-{q}-v2" for e in ("halfcheetah", "hopper", "walker2d")
     for q in ("medium", "medium-replay", "medium-expert")]
    + [f"antmaze-{m}-v0" for m in ("umaze", "umaze-diverse", "medium-play", "medium-diverse",
                                   "large-play", "large-diverse")]
    + ["pen-human-v1", "pen-cloned-v1"]
    + [f"kitchen-{k}-v0" for k in ("complete", "partial", "mixed")]
)  # fmt: skip


def test_every_task_is_there_with_valid_overrides():
    assert set(list_presets()) == set(D4RL_TASKS) | {"pendulum-mixed"}
    for name in list_presets():
        p = get_preset(name)
        assert p.name == name and p.eval_every_epochs in (1, 50)
        assert p.reward_transform in ("none", "antmaze", "normalize")
        assert set(p.agent_overrides) == set(CONFIG_FIELDS)
        for algo, fields in CONFIG_FIELDS.items():
            unknown = set(p.overrides_for(algo)) - fields
            assert not unknown, (name, algo, unknown)


def test_locomotion_presets():
    p = get_preset("hopper-medium-v2")
    assert p.minari_id == "mujoco/hopper/medium-v0" and p.minari_ids == (p.minari_id,)
    assert (p.epochs, p.eval_episodes, p.reward_transform) == (2000, 10, "none")
    assert p.overrides_for("erdpqe") == dict(
        actor_lr=3e-4, eta=1.0, max_q_backup=False, grad_norm=4.0, loss="mll", x0_clip=False,
        lr_decay=(50_000, 2000),
    )  # fmt: skip
    assert "v5" in p.note
    # Diffusion-QL's own grad-norm: 9 / 9 / 1 on the medium tasks (docs/method.md §8).
    gns = [get_preset(f"{e}-medium-v2").overrides_for("diffusion-ql")["grad_norm"]
           for e in ("halfcheetah", "hopper", "walker2d")]  # fmt: skip
    assert gns == [9.0, 9.0, 1.0]
    me = get_preset("walker2d-medium-expert-v2")
    assert me.minari_ids == ("mujoco/walker2d/medium-v0", "mujoco/walker2d/expert-v0")
    assert "medium-replay" in get_preset("hopper-medium-replay-v2").note


def test_antmaze_presets():
    p = get_preset("antmaze-medium-play-v0")
    assert p.minari_id == "D4RL/antmaze/medium-play-v1"
    assert (p.reward_transform, p.epochs, p.eval_episodes) == ("antmaze", 1000, 100)
    e = p.overrides_for("erdpqe")
    assert (e["eta"], e["max_q_backup"], e["loss"], e["x0_clip"]) == (2.0, True, "nml", True)
    assert get_preset("antmaze-umaze-v0").overrides_for("erdpqe")["max_q_backup"] is False
    dql = get_preset("antmaze-large-play-v0").overrides_for("diffusion-ql")
    assert (dql["eta"], dql["max_q_backup"]) == (4.5, True)
    assert get_preset("antmaze-medium-play-v0").overrides_for("diffusion-ql")["actor_lr"] == 1e-3


def test_pen_and_kitchen_presets():
    pen = get_preset("pen-human-v1")
    assert pen.minari_id == "D4RL/pen/human-v2" and pen.reward_transform == "normalize"
    e = pen.overrides_for("erdpqe")
    assert (e["actor_lr"], e["grad_norm"], e["eta"], e["loss"]) == (3e-5, 8.0, 0.1, "nml")
    assert pen.overrides_for("bc") == dict(lr=3e-5, loss="nml", x0_clip=True)
    assert pen.overrides_for("diffusion-ql")["eta"] == 0.15
    k = get_preset("kitchen-complete-v0")
    assert k.minari_id == "D4RL/kitchen/complete-v2"
    assert (k.epochs_for("erdpqe"), k.epochs_for("diffusion-ql")) == (1000, 250)
    assert get_preset("kitchen-mixed-v0").epochs_for("diffusion-ql") == 1000
    assert k.overrides_for("erdpqe")["eta"] == 0.005
    assert k.overrides_for("erdpqe")["grad_norm"] == 10.0


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("pen-human-v1").epochs = 3  # type: ignore[misc]
    assert isinstance(get_preset("pendulum-mixed"), TaskPreset)


def test_unknown_task_suggests_close_names():
    with pytest.raises(UnknownTaskError, match="hopper-medium-v2") as info:
        get_preset("hoper-medium-v2")
    assert "\n" not in str(info.value)
    with pytest.raises(UnknownTaskError, match="list_presets"):
        get_preset("zzzz")


@dataclasses.dataclass(frozen=True)
class _Config:
    actor_lr: float = 3e-4
    diffusion_steps: int = 5
    max_q_backup: bool = False
    loss: Literal["mll", "nml"] = "mll"
    seed: int | None = None
    hidden: tuple[int, ...] = (256, 256, 256)
    schedule: str = "cosine"


def test_apply_overrides_coerces_strings():
    c = apply_overrides(
        _Config(),
        {"actor_lr": "1e-3", "diffusion_steps": "10", "max_q_backup": "true", "loss": "nml",
         "seed": "none", "hidden": "64,64", "schedule": "vp"},
    )  # fmt: skip
    assert c == _Config(1e-3, 10, True, "nml", None, (64, 64), "vp")
    assert type(c.actor_lr) is float and type(c.diffusion_steps) is int
    c = apply_overrides(_Config(), {"actor_lr": 1, "seed": "7", "max_q_backup": "no"})
    assert (c.actor_lr, type(c.actor_lr), c.seed, c.max_q_backup) == (1.0, float, 7, False)
    # Preset values are typed already and pass through unchanged.
    c = apply_overrides(_Config(), {"actor_lr": 3e-5, "loss": "nml", "max_q_backup": True})
    assert (c.actor_lr, c.loss, c.max_q_backup) == (3e-5, "nml", True)
    assert apply_overrides(_Config(), {}) == _Config()


def test_apply_overrides_rejects_bad_input():
    with pytest.raises(ConfigError, match=r"no field `actor_l`.*did you mean `actor_lr`") as info:
        apply_overrides(_Config(), {"actor_l": 1e-3})
    assert "valid: actor_lr, diffusion_steps" in str(info.value)
    with pytest.raises(ConfigError, match="`actor_lr` expects float"):
        apply_overrides(_Config(), {"actor_lr": "fast"})
    with pytest.raises(ConfigError, match="`diffusion_steps` expects int"):
        apply_overrides(_Config(), {"diffusion_steps": "2.5"})
    with pytest.raises(ConfigError, match="`max_q_backup` expects bool"):
        apply_overrides(_Config(), {"max_q_backup": "maybe"})
    with pytest.raises(ConfigError, match="one of mll, nml"):
        apply_overrides(_Config(), {"loss": "mse"})
    with pytest.raises(ConfigError, match="expects int"):
        apply_overrides(_Config(), {"diffusion_steps": True})


def test_normalized_score():
    assert normalized_score(3234.3, -20.272305, 3234.3) == pytest.approx(100.0)
    assert normalized_score(-20.272305, -20.272305, 3234.3) == pytest.approx(0.0)
    s = normalized_score(np.array([0.0, 0.5, 1.0]), 0.0, 1.0)
    np.testing.assert_allclose(s, [0.0, 50.0, 100.0])
    assert normalized_score(2, 0, 4) == pytest.approx(50.0)
    np.testing.assert_allclose(normalized_score([1.0, 3.0], 0.0, 4.0), [25.0, 75.0])
    with pytest.raises(ValueError):
        normalized_score(1.0, 2.0, 2.0)


class _FakeStorage:
    def __init__(self, metadata):
        self.metadata = metadata


class _FakeDataset:
    def __init__(self, dataset_id, metadata):
        self.id = dataset_id
        self.storage = _FakeStorage(metadata)


def test_reference_scores_provenance():
    with_refs = _FakeDataset("mujoco/hopper/medium-v0", {"ref_min_score": -5, "ref_max_score": 7})
    assert reference_scores(with_refs) == (-5.0, 7.0, PROVENANCE_DATASET)
    without = _FakeDataset("mujoco/hopper/medium-v0", {})
    assert reference_scores(without) == (-20.272305, 3234.3, PROVENANCE_D4RL)
    assert reference_scores(task="antmaze-large-play-v0") == (0.0, 1.0, PROVENANCE_D4RL)
    assert reference_scores(task="D4RL/pen/human-v2")[:2] == (96.262799, 3076.8331)
    assert reference_scores(task="kitchen-mixed-v0")[:2] == (0.0, 4.0)
    assert env_family("mujoco/halfcheetah/expert-v0") == "halfcheetah"
    assert env_family("open-sesame") is None
    with pytest.raises(UnknownTaskError, match="no ref_min_score"):
        reference_scores(_FakeDataset("sdepolicy/cartpole-v0", {}), task="cartpole")


def test_every_preset_applies_to_the_agent_configs():
    for name in list_presets():
        preset = get_preset(name)
        for algo, config_cls in CONFIGS.items():
            overrides = preset.overrides_for(algo)
            config = apply_overrides(config_cls(), overrides)
            # No preset uses an experimental option (measured, not adopted: issue 28 §4).
            assert type(config) is config_cls, (name, algo)
            for key, value in overrides.items():
                assert getattr(config, key) == value, (name, algo, key)
    c = apply_overrides(CONFIGS["erdpqe"](), {"num_critics": "8", "actor_lr": "3e-5"})
    assert (c.num_critics, c.actor_lr) == (8, 3e-5)


def _documented(cls, name):
    """Whether the docstring of the class that declares `name` (or of one it inherits it from)
    defines it: "`name`: ..." or "`name`, `other`: ..." (the docstrings' bullets)."""
    import re

    pattern = re.compile(rf"`{name}`(?:, `\w+`)*:")
    return any(pattern.search(klass.__doc__ or "") for klass in cls.__mro__)


def test_every_option_is_documented_beside_it_and_in_method_md():
    """An option is its field and its docstring bullet in the config class, and its row in
    docs/method.md §8.7; this test finds a missing one, whatever the option."""
    import pathlib
    import re

    method = (pathlib.Path(__file__).parents[2] / "docs" / "method.md").read_text()
    table = method[method.index("### 8.7") :]
    table = table[: table.index("\n## ")]
    rows = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    fields = {f.name for cls in ALL_CONFIGS for f in dataclasses.fields(cls)}
    assert rows == fields, (fields - rows, rows - fields)
    for cls in ALL_CONFIGS:
        for f in dataclasses.fields(cls):
            assert _documented(cls, f.name), (cls.__name__, f.name)


def test_every_number_has_a_range_and_every_integer_an_upper_bound():
    """Every int and float option declares its range beside it (`option(default, range)`),
    checked before any work: an integer that a float string became (`--set hidden=1e20`) or a
    step count past the int32 counter (`--set ema_start=1e30`) is one ConfigError, not a crash
    at model init or inside jit."""
    import typing

    from sdepolicy.rl._options import Ints

    for cls in ALL_CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = str(hints[f.name])
            if tp.startswith("typing.Literal") or hints[f.name] is bool:
                continue
            values = f.metadata.get("values")
            assert values is not None, (cls.__name__, f.name)
            for r in values if isinstance(values, tuple) else (values,):
                if "int" in tp:
                    assert isinstance(r, Ints) and r.high < 2**31, (cls.__name__, f.name)
        cls()  # every default is in its range
    cases = [
        ("erdpqe", {"hidden": "1e20"}),
        ("erdpqe", {"ema_start": "1e30"}),
        ("diffusion-ql", {"batch_size": "1e9"}),
        ("bc", {"diffusion_steps": "1e6"}),
        ("erdpqe", {"lr_decay": "1e12,2"}),
        ("erdpqe", {"num_critics": "1e5"}),
        ("erdpqe", {"eval_candidates": "10000000"}),
        ("erdpqe", {"hidden": "1e400"}),
    ]
    for algo, bad in cases:
        with pytest.raises(ConfigError) as info:
            apply_overrides(CONFIGS[algo](), bad)
        assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)


def test_retired_and_renamed_options_are_refused_with_their_replacement():
    erdpqe = CONFIGS["erdpqe"]()
    for key, needle in [("lr_decay_every", "lr_decay=EVERY,T_MAX"),
                        ("lr_decay_t_max", "lr_decay=EVERY,T_MAX"),
                        ("critic_backward", "critic_backward='autodiff'")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"no option `{key}` any more.*{needle}"):
            apply_overrides(erdpqe, {key: "5"})
    with pytest.raises(ConfigError, match="`lr_decay` expects 2 values .* got 'true'"):
        apply_overrides(erdpqe, {"lr_decay": "true"})
    assert apply_overrides(erdpqe, {"lr_decay": "1000,6"}).lr_decay == (1000, 6)
    assert apply_overrides(erdpqe, {"lr_decay": "none"}).lr_decay is None


def test_project_defaults_are_named_and_unchanged():
    """The command line's default run: the papers' configs plus `PROJECT_DEFAULTS`, the same
    values as before they had that name (`DEFAULT_AGENT_OVERRIDES`, still readable with a
    DeprecationWarning)."""
    import sdepolicy.app as app

    pendulum = get_preset("pendulum-mixed")
    assert pendulum.agent_overrides == app.PROJECT_DEFAULTS
    expected = {
        "erdpqe": dict(loss="nml", x0_clip=True, hidden=256, critic_hidden=64, num_critics=10,
                       q_weighting="x0_gain_inverse", eta=0.1, eval_temperature=1.0,
                       eval_temperature_scale="disagreement", eval_actor="ema", actor_lr=3e-4,
                       max_q_backup=False, grad_norm=4.0, ema_start=1000, lr_decay=None),
        "diffusion-ql": dict(hidden=256, critic_hidden=64, grad_norm=4.0, eta=1.0,
                             actor_lr=3e-4, max_q_backup=False, eval_temperature=1.0,
                             eval_temperature_scale="disagreement", eval_actor="ema",
                             ema_start=1000, lr_decay=None),
        "bc": dict(hidden=256, lr=3e-4, loss="nml", x0_clip=True, grad_norm=0.0),
    }  # fmt: skip
    for algo, values in expected.items():
        config = pendulum.config(algo)
        assert {k: getattr(config, k) for k in values} == values, algo
    with pytest.warns(DeprecationWarning, match="PROJECT_DEFAULTS"):
        assert app.DEFAULT_AGENT_OVERRIDES is app.PROJECT_DEFAULTS


# Fingerprints of config records written before the options were regrouped (issue 29),
# computed with the code of commit 5d29362: a checkpoint of such a run must still resume.
_OLD_FINGERPRINTS = {
    ("pendulum-mixed", "erdpqe", ()): "aea9aa4d28548371",
    ("pendulum-mixed", "diffusion-ql", ()): "29eaa01b1b2d25a2",
    ("pendulum-mixed", "bc", ()): "003c1c25c8f481d6",
    ("hopper-medium-v2", "erdpqe", ()): "099c1507edf4b1b1",
    ("kitchen-complete-v0", "diffusion-ql", ()): "04df9b9b325bd40e",
    ("pendulum-mixed", "erdpqe", (("critic_conservatism", "1"),)): "c4dda3df4282a31e",
}


def test_config_records_keep_old_checkpoints_resumable():
    from sdepolicy.app import config_from_record, config_record

    for (task, algo, overrides), fingerprint in _OLD_FINGERPRINTS.items():
        config = apply_overrides(get_preset(task).config(algo), dict(overrides))
        record = config_record(config)
        assert config_fingerprint(record) == fingerprint, (task, algo, overrides)
        # Read back through JSON, as a checkpoint's header gives it.
        import json

        assert config_from_record(algo, json.loads(json.dumps(record))) == config
    old = config_record(get_preset("pendulum-mixed").config("erdpqe"))
    assert (old["q_scale"], old["lr_decay"], old["critic_backward"]) == ("abs", False, "fused")


def test_an_option_added_later_leaves_old_records_alone():
    """An option that did not exist when a checkpoint was written is recorded only where it
    differs from its default (the behaviour before it), so adding one keeps old checkpoints
    resumable; set away from its default, it is recorded and read back."""
    from sdepolicy.app import config_record
    from sdepolicy.rl._options import Reals, option

    base = CONFIGS["erdpqe"]

    @dataclasses.dataclass(frozen=True)
    class Later(base):
        later: float = option(1.0, Reals(0.0))

    assert config_record(Later(eta=0.1)) == config_record(base(eta=0.1))
    assert config_record(Later(later=2.0))["later"] == 2.0


def test_reference_lr_decay_is_on_in_the_d4rl_presets_only():
    """Both official codes run with --lr_decay: CosineAnnealingLR(T_max = the task's epochs),
    stepped once per 50-epoch evaluation period (docs/method.md §6.7). BC has none."""
    for name in D4RL_TASKS:
        p = get_preset(name)
        for algo in ("erdpqe", "diffusion-ql"):
            o = p.overrides_for(algo)
            every = p.eval_every_epochs * p.steps_per_epoch
            assert o["lr_decay"] == (every, p.epochs_for(algo)) and every == 50_000, (name, algo)
        assert "lr_decay" not in p.overrides_for("bc")
    assert get_preset("kitchen-complete-v0").overrides_for("diffusion-ql")["lr_decay"][1] == 250
    pendulum = get_preset("pendulum-mixed")
    for algo in ("erdpqe", "diffusion-ql", "bc"):
        assert pendulum.overrides_for(algo).get("lr_decay") is None


def test_dql_top_k_and_minari_task_options():
    """Diffusion-QL's per-task top_k, and the options that make D4RL's AntMaze, Kitchen and pen
    tasks out of Minari's data (docs/method.md §12)."""
    top_k = {"halfcheetah-medium-v2": 1, "hopper-medium-v2": 2, "halfcheetah-medium-replay-v2": 0,
             "walker2d-medium-expert-v2": 1, "antmaze-umaze-v0": 2, "antmaze-medium-play-v0": 1,
             "antmaze-large-play-v0": 2, "pen-human-v1": 2, "kitchen-mixed-v0": 0}  # fmt: skip
    for name, k in top_k.items():
        assert get_preset(name).top_k == k, name
    assert all(get_preset(n).top_k is not None for n in D4RL_TASKS)
    for name in [n for n in D4RL_TASKS if n.startswith("antmaze")]:
        p = get_preset(name)
        assert p.observation_keys == ("achieved_goal", "observation")
        assert (p.terminal_rule, p.score, p.ref_scores) == ("reward", "success", "d4rl")
        assert p.eval_env_kwargs == {"continuing_task": False}
    pen = get_preset("pen-cloned-v1")
    assert pen.eval_env_kwargs == {"max_episode_steps": 100} and pen.ref_scores == "d4rl"
    kitchen = get_preset("kitchen-partial-v0")
    assert kitchen.eval_env_kwargs["terminate_on_tasks_completed"] is True
    assert kitchen.eval_env_kwargs["remove_task_when_completed"] is True
    assert kitchen.eval_env_kwargs["max_episode_steps"] == 280
    hopper = get_preset("hopper-medium-v2")
    assert hopper.observation_keys is None
    assert (hopper.terminal_rule, hopper.score) == ("dataset", "return")
    # A ConfigError, or a TypeError from the tests' runtime type checker, which sees the
    # `Literal` annotation first.
    with pytest.raises((ConfigError, TypeError)):
        dataclasses.replace(hopper, terminal_rule="goal")


def test_named_choices_are_declared_once():
    """Every registry of names and the `Literal` type that declares those names agree, so a
    config field's annotation is the one list of its choices."""
    from typing import get_args

    from sdepolicy.app._data import REWARD_TRANSFORMS, TERMINAL_RULES, RewardTransform
    from sdepolicy.policy import (
        ENTROPY_ESTIMATORS,
        LOSS_KINDS,
        POLICY_ENTROPY_ESTIMATORS,
        SCHEDULES,
        EntropyName,
        LossKind,
        ScheduleName,
    )
    from sdepolicy.rl import AGENTS, AgentName, SeedStrategy
    from sdepolicy.rl._training import SEED_STRATEGIES
    from sdepolicy.rl.agents._base import CRITIC_BACKWARDS, CriticBackwardName

    assert tuple(SCHEDULES) == get_args(ScheduleName)
    assert LOSS_KINDS == get_args(LossKind)
    assert set(get_args(EntropyName)) == set(ENTROPY_ESTIMATORS) | set(POLICY_ENTROPY_ESTIMATORS)
    assert tuple(AGENTS) == get_args(AgentName)
    assert tuple(SEED_STRATEGIES) == get_args(SeedStrategy)
    assert tuple(CRITIC_BACKWARDS) == get_args(CriticBackwardName)
    assert (
        REWARD_TRANSFORMS == get_args(RewardTransform) == ("none", "antmaze", "normalize", "scale")
    )
    assert TERMINAL_RULES == ("dataset", "episode_end", "reward")


@dataclasses.dataclass(frozen=True)
class _Choices:
    kind: Literal["x", "y"] = "x"
    maybe: Literal["p", "q"] | None = None
    free: str = "anything"


def test_literal_fields_refuse_other_values():
    """The one check of every `Literal` field (configs, presets, run specs), on a dataclass of
    the tests' own; and the agent configs' Literal fields through `apply_overrides`, the path
    of every preset and `--set` value (DiffusionQLConfig validated none of its names before)."""
    from sdepolicy.rl import BCConfig, DiffusionQLConfig, ERDPQEConfig
    from sdepolicy.rl._errors import check_literal_fields
    from sdepolicy.rl._options import check_options

    check_literal_fields(_Choices(maybe="q", free="z"))
    check_literal_fields(_Choices(maybe=None))
    cases = [(_Choices(kind="z"), "kind must be one of 'x', 'y', got 'z'"),
             (_Choices(maybe="r"), "maybe must be one of 'p', 'q', got 'r'")]  # fmt: skip
    for bad, needle in cases:
        for check in (check_literal_fields, check_options):
            with pytest.raises(ConfigError, match=needle) as info:
                check(bad)
            assert "\n" not in str(info.value)
    agent_cases = [(DiffusionQLConfig, "eval_actor", "target"), (BCConfig, "schedule", "vpp"),
                   (ERDPQEConfig, "q_weighting", "snr")]  # fmt: skip
    for cls, field, bad in agent_cases:
        with pytest.raises(ConfigError, match=f"`{field}` must be one of .*not '{bad}'"):
            apply_overrides(cls(), {field: bad})


def test_presets_return_typed_configs():
    from sdepolicy.rl import BCConfig, DiffusionQLConfig, ERDPQEConfig

    hopper = get_preset("hopper-medium-v2")
    for algo, cls in (("erdpqe", ERDPQEConfig), ("diffusion-ql", DiffusionQLConfig),
                      ("bc", BCConfig)):  # fmt: skip
        config = hopper.config(algo)
        assert type(config) is cls
        assert config == apply_overrides(cls(), hopper.overrides_for(algo))
    assert hopper.config("erdpqe").loss == "mll"
    assert hopper.config("erdpqe").lr_decay == (50_000, 2000)
    with pytest.raises((ConfigError, TypeError)):  # TypeError: the tests' runtime type checker
        hopper.config("td3")


def test_the_command_line_is_derived_from_the_run_spec():
    """One flag per `RunSpec` field, with the field's help, default and (for a `Literal`) its
    choices; a parsed command line gives the spec it names."""
    import argparse

    from sdepolicy.app import RunSpec, add_run_arguments, run_spec_from_args

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(actions) == {f.name for f in dataclasses.fields(RunSpec)}
    assert all(a.help for a in actions.values())
    assert actions["algo"].choices == ["erdpqe", "diffusion-ql", "bc"]
    assert actions["reward_transform"].choices == ["none", "antmaze", "normalize", "scale"]
    assert actions["offline_selection"].option_strings == ["--ms-offline"]
    assert actions["progress"].option_strings == ["--no-progress"]
    assert run_spec_from_args(parser.parse_args([])) == RunSpec()
    argv = ["--task", "hopper-medium-v2", "--algo", "bc", "--seeds", "0", "3", "--steps", "9",
            "--set", "lr=1e-3", "--set=hidden=64", "--no-progress", "--dataset", "a/b-v0",
            "--reward-transform", "none", "--ms-offline"]  # fmt: skip
    assert run_spec_from_args(parser.parse_args(argv)) == RunSpec(
        task="hopper-medium-v2", algo="bc", seeds=(0, 3), steps=9,
        overrides={"lr": "1e-3", "hidden": "64"}, progress=False, dataset=("a/b-v0",),
        reward_transform="none", offline_selection=True,
    )  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["--algo", "td3"])
    with pytest.raises(ConfigError.__mro__[1], match="FIELD=VALUE"):
        run_spec_from_args(parser.parse_args(["--set", "eta"]))
    # A repeated key would silently take its last value: refused, naming both.
    with pytest.raises(
        ConfigError.__mro__[1], match=r"--set eta is given twice \(eta=-1, eta=0.2\)"
    ):
        run_spec_from_args(parser.parse_args(["--set", "eta=-1", "--set", "eta=0.2"]))
