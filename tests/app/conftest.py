"""Fixtures of the application-layer reliability tests: a tiny Pendulum dataset in a private
Minari store, the tiny run configuration of tests/rl/test_faults.py (so the training code
compiles once per module), and the importer's datasets root."""

import os
import pathlib
import shutil

import gymnasium as gym
import minari
import numpy as np
import pytest

from sdepolicy.app import RunSpec, run

TINY = "test/reliability-tiny-v0"
TINY_CFG = {
    "hidden": 8,
    "num_critics": 2,
    "batch_size": 16,
    "eval_candidates": 2,
    "ema_start": 5,
    "diffusion_steps": 3,
}
DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def collect(dataset_id, episodes=2, steps=100):
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=steps))
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        env.reset(seed=ep)
        for _ in range(steps):
            env.step(rng.uniform(-2.0, 2.0, size=1).astype(np.float32))
    env.create_dataset(
        dataset_id=dataset_id,
        ref_min_score=-1000.0,
        ref_max_score=0.0,
        eval_env=gym.make("Pendulum-v1", max_episode_steps=steps).spec,
    )
    env.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A Minari store holding TINY, set as MINARI_DATASETS_PATH for the module."""
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    collect(TINY)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH")
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def spec(out, **kw):
    base = dict(
        task="pendulum-mixed",
        dataset=(TINY,),
        steps=20,
        eval_every=20,
        eval_episodes=1,
        steps_per_call=10,
        out=str(out),
        overrides=TINY_CFG,
        progress=False,
    )
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory):
    """One finished run (checkpoints at 10 and 20, one evaluation); tests copy it."""
    out = tmp_path_factory.mktemp("runs") / "done"
    old = os.umask(0o022)
    try:
        run(spec(out, checkpoint_every=10))
    finally:
        os.umask(old)
    return out


def copy_run(src, dst):
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty datasets root for the importer."""
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path
