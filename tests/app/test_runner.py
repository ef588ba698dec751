"""End-to-end checks of the training run and its CLI, on small datasets built here with Minari's
DataCollector from a real Gymnasium environment (no network)."""

import json
import os
import pathlib
import subprocess
import sys

import gymnasium as gym
import jax
import minari
import numpy as np
import pytest

from sdepolicy.app import RunSpec, ensure_default_dataset, read_header, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = "test/pendulum-tiny-v0"
SMALL = {
    "hidden": 16,
    "num_critics": 3,
    "batch_size": 32,
    "eval_candidates": 4,
    "ema_start": 10,
    "diffusion_steps": 3,
}


@pytest.fixture(scope="module")
def datasets(minari_store):
    ensure_default_dataset(TINY, num_episodes=6, num_ref_episodes=3)
    _nan_dataset()
    return minari_store


class _NaNReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, float("nan"), term, trunc, info


def _nan_dataset():
    env = minari.DataCollector(_NaNReward(gym.make("Pendulum-v1", max_episode_steps=20)))
    env.reset(seed=0)
    for _ in range(20):
        env.step(env.action_space.sample())
    env.create_dataset(dataset_id="test/pendulum-nan-v0", ref_min_score=-1000.0, ref_max_score=0.0)
    env.close()


def _spec(out, **kw):
    base = dict(
        task="pendulum-mixed",
        dataset=(TINY,),
        steps=100,
        eval_every=50,
        eval_episodes=2,
        final_eval_episodes=2,  # the protocol's 20 costs a compilation more (tests/app/)
        steps_per_call=50,
        out=str(out),
        overrides=SMALL,
        progress=False,
    )
    base.update(kw)
    return RunSpec(**base)


def _arrays(path):
    with open(path, "rb") as f:
        f.readline()
        return f.read()


def test_end_to_end_run_writes_everything(datasets, tmp_path):
    summary = run(_spec(tmp_path / "a", seeds=(0, 1)))
    out = tmp_path / "a"
    for name in ("metrics.csv", "learning_curve.png", "summary.json", "checkpoint.eqx"):
        assert (out / name).stat().st_size > 0, name
    assert summary["last_evaluation"]["step"] == 100
    assert len(summary["evaluations"]) == 2 and len(summary["evaluations"][0]["returns"]) == 2
    assert np.isfinite(summary["last_evaluation"]["return"]["mean"])
    assert summary["reference_scores"]["provenance"] == "minari dataset metadata"
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (2 chunks x 2 seeds)
    assert json.loads((out / "summary.json").read_text())["steps"] == 100


@pytest.mark.parametrize("algo", ["diffusion-ql", "bc"])
def test_other_algorithms_run(datasets, tmp_path, algo):
    small = {k: v for k, v in SMALL.items() if k not in ("num_critics",)}
    if algo == "bc":
        small = {k: v for k, v in small.items() if k not in ("eval_candidates",)}
    summary = run(_spec(tmp_path / algo, algo=algo, steps=50, overrides=small))
    assert np.isfinite(summary["last_evaluation"]["return"]["mean"])


def test_killed_run_resumes_to_the_same_result(datasets, tmp_path):
    full = run(_spec(tmp_path / "full"))

    class Killed(Exception):
        pass

    def kill(step):
        raise Killed

    with pytest.raises(Killed):
        run(_spec(tmp_path / "killed"), on_checkpoint=kill)
    assert read_header(tmp_path / "killed" / "checkpoint.eqx")["step"] == 50
    resumed = run(_spec(tmp_path / "killed", resume=True))
    assert _arrays(tmp_path / "full" / "checkpoint.eqx") == _arrays(
        tmp_path / "killed" / "checkpoint.eqx"
    )
    assert resumed["evaluations"] == full["evaluations"]
    full_csv = (tmp_path / "full" / "metrics.csv").read_text()
    assert (tmp_path / "killed" / "metrics.csv").read_text() == full_csv


def _cli(*args, env=None):
    cmd = [sys.executable, str(ROOT / "examples" / "d4rl_train.py"), "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _one_clear_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_inputs_give_one_clear_line(datasets, tmp_path):
    env = dict(os.environ, MINARI_DATASETS_PATH=str(datasets))
    small = [f"--set={k}={v}" for k, v in SMALL.items()]
    common = ["--steps", "50", "--eval-every", "50", "--eval-episodes", "1", *small]
    _one_clear_line(_cli("--task", "hoper-medium-v2", env=env), "hopper-medium-v2")
    _one_clear_line(
        _cli("--task", "hopper-medium-v2", "--out", str(tmp_path / "m"), env=env),
        "mujoco/hopper/medium-v0",
        "minari download",
    )
    _one_clear_line(
        _cli("--dataset", "test/pendulum-nan-v0", "--out", str(tmp_path / "n"), *common, env=env),
        "NaN",
    )
    _one_clear_line(
        _cli(
            "--dataset",
            TINY,
            "--env",
            "MountainCarContinuous-v0",
            *common,
            "--out",
            str(tmp_path / "s"),
            env=env,
        ),
        "(2,)",
    )
    _one_clear_line(_cli("--set", "no_such_field=1", "--dataset", TINY, env=env), "no_such_field")


def test_existing_run_and_other_configuration_are_refused(datasets, tmp_path):
    from sdepolicy.app import CheckpointMismatchError, SdepolicyError

    run(_spec(tmp_path / "r", steps=50))
    before = (tmp_path / "r" / "checkpoint.eqx").read_bytes()
    with pytest.raises(SdepolicyError, match="--resume"):
        run(_spec(tmp_path / "r", steps=50))
    with pytest.raises(CheckpointMismatchError, match="different configuration"):
        run(_spec(tmp_path / "r", steps=50, resume=True, overrides={**SMALL, "eta": 3.0}))
    assert (tmp_path / "r" / "checkpoint.eqx").read_bytes() == before


_SHARDED = """
import jax, sys
from sdepolicy.app import RunSpec, run
from tests.app.test_runner import _spec
import pathlib
s = run(_spec(pathlib.Path(sys.argv[1]), seeds=(0, 1), steps=50))
print("DEVICES", len(jax.devices()), s["last_evaluation"]["return"]["mean"])
"""


def test_two_device_sharded_run_matches_one_device(datasets, tmp_path):
    one = run(_spec(tmp_path / "one", seeds=(0, 1), steps=50))
    env = dict(
        os.environ,
        MINARI_DATASETS_PATH=str(datasets),
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED, str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("DEVICES")][0].split()
    assert line[1] == "2"
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert len(two["devices"]) == 2
    # Same seeds, data and keys: the sharded run is the same computation up to floating-point
    # reassociation, so its losses and evaluation returns agree closely with the 1-device run.
    loss_cols = lambda p: np.genfromtxt(p, delimiter=",", names=True)["critic_loss"]
    np.testing.assert_allclose(
        loss_cols(tmp_path / "one" / "metrics.csv"),
        loss_cols(tmp_path / "two" / "metrics.csv"),
        rtol=1e-3,
    )
    np.testing.assert_allclose(
        one["evaluations"][0]["returns"], two["evaluations"][0]["returns"], rtol=0.05, atol=5.0
    )
    assert jax.device_count() == 1
