"""The embedded Pendulum dataset: built offline in a temporary Minari folder, loaded back."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sdepolicy.app import get_preset
from sdepolicy.app._data import check_spaces, flatten_observation, load_transitions, recover_env
from sdepolicy.app._default_dataset import (
    DEFAULT_DATASET_ID,
    ensure_default_dataset,
    measure_reference_scores,
    swing_up_action,
)
from sdepolicy.app._scores import PROVENANCE_DATASET, normalized_score, reference_scores

EPISODES, REF_EPISODES = 6, 4


@pytest.fixture
def minari_path(tmp_path, monkeypatch):
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def test_controller_swings_up_and_beats_random():
    random_mean, clean_mean = measure_reference_scores(REF_EPISODES, seed=3)
    # Reference-free sanity: a good pendulum policy scores about -150, random about -1200.
    assert clean_mean > -300.0 and random_mean < -800.0
    # Hanging at rest (θ = π): the energy law pushes; upright at rest: no torque.
    assert swing_up_action([-1.0, 0.0, 0.0]) == 2.0
    assert swing_up_action([1.0, 0.0, 0.0]) == 0.0
    # Near the top the PD law pushes back towards θ = 0.
    assert swing_up_action([np.cos(0.2), np.sin(0.2), 0.0]) < 0.0


def test_default_dataset_round_trip(minari_path):
    dataset_id = ensure_default_dataset(num_episodes=EPISODES, num_ref_episodes=REF_EPISODES)
    assert dataset_id == DEFAULT_DATASET_ID == get_preset("pendulum-mixed").minari_id
    assert (minari_path / DEFAULT_DATASET_ID / "data").is_dir()
    transitions, dataset = load_transitions(dataset_id)
    assert dataset.total_episodes == EPISODES
    assert len(transitions) == EPISODES * 200
    assert (transitions.obs_dim, transitions.action_dim) == (3, 1)
    # Pendulum only ever truncates (time limit): no terminal anywhere.
    assert float(transitions.terminals.sum()) == 0.0
    assert np.all(np.abs(np.asarray(transitions.actions)) <= 2.0)
    # s' of one step is s of the next inside an episode.
    np.testing.assert_array_equal(
        transitions.next_observations[:199], transitions.observations[1:200]
    )

    ref_min, ref_max, provenance = reference_scores(dataset)
    assert provenance == PROVENANCE_DATASET
    assert (ref_min, ref_max) == pytest.approx(measure_reference_scores(REF_EPISODES, seed=0))
    returns = np.array([ep.rewards.sum() for ep in dataset.iterate_episodes()])
    # Half random, half noisy controller: a spread of qualities.
    assert returns.min() < -700.0 and returns.max() > -400.0
    assert 0.0 < normalized_score(returns.mean(), ref_min, ref_max) < 100.0

    env = recover_env(dataset)
    check_spaces(transitions, env)
    check_spaces(dataset, env)
    obs, _ = env.reset(seed=0)
    assert flatten_observation(obs).shape == (transitions.obs_dim,)


def test_default_dataset_is_deterministic_and_built_once(minari_path, tmp_path, monkeypatch):
    first = ensure_default_dataset(num_episodes=2, num_ref_episodes=1)
    data_dir = minari_path / DEFAULT_DATASET_ID / "data"
    stamp = {p: os.stat(data_dir / p).st_mtime_ns for p in os.listdir(data_dir)}
    assert ensure_default_dataset(num_episodes=2, num_ref_episodes=1) == first
    assert {p: os.stat(data_dir / p).st_mtime_ns for p in os.listdir(data_dir)} == stamp
    a, _ = load_transitions(first)

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "other"))
    ensure_default_dataset(num_episodes=2, num_ref_episodes=1)
    b, _ = load_transitions(first)
    for field in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
