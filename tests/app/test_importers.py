"""Importers of data recorded by others: each format's conventions, Minari round trip, metadata,
replay check, bad files. The real files are slices of ../shared/data kept in their original
format under tests/data (see tests/data/README.md); D4RL has no small real file, so its files
are written here."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from sdepolicy.app import (
    ConfigError,
    DatasetExistsError,
    DataValidationError,
    EnvMismatchError,
    SpaceMismatchError,
)
from sdepolicy.app._data import load_transitions
from sdepolicy.app._scores import reference_scores
from sdepolicy.app.importers import KNOWN_FILES, check_replay, import_dataset, read_episodes

DATA = Path(__file__).resolve().parents[1] / "data"
D3RLPY = DATA / "d3rlpy_pendulum_random_slice.h5"
NPZ = DATA / "sb_expert_pendulum_slice.npz"
CS285 = DATA / "cs285_expert_Hopper-v4_slice.pkl"
DAPG = DATA / "hand_dapg_door-v0_demos_slice.pickle"


def _entries(root: Path) -> list[str]:
    """Everything under the datasets root, hidden temporary folders included."""
    return sorted(os.listdir(root)) if root.exists() else []


def _pickle(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def _raw_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


# --- readers: each format's conventions --------------------------------------------------------


def test_d3rlpy_reward_shift_and_cut_short_last_episode():
    raw = _raw_h5(D3RLPY)  # rows 0..401 (two episodes of 201 rows) + the file's last 103 rows
    eps = read_episodes(str(D3RLPY))
    assert [len(e["rewards"]) for e in eps] == [200, 200, 102]
    ep = eps[1]
    np.testing.assert_array_equal(ep["observations"], raw["observations"][201:402])
    np.testing.assert_array_equal(ep["actions"], raw["actions"][201:401])
    # rewards[i] is for arriving at o_i: step i gets rewards[i + 1]; rewards[201] (= 0) is unused.
    assert raw["rewards"][201] == 0.0
    np.testing.assert_array_equal(ep["rewards"], raw["rewards"][202:402])
    for e in eps:  # time-limited Pendulum: every episode ends by truncation, none terminates
        assert not e["terminations"].any()
        assert e["truncations"].tolist() == [False] * (len(e["rewards"]) - 1) + [True]
    # Return of the first episode, summed from the file independently.
    assert np.isclose(eps[0]["rewards"].sum(), raw["rewards"][1:201].astype(np.float64).sum())


def test_sb_npz_drops_each_episodes_last_step():
    z = np.load(NPZ)
    eps = read_episodes(str(NPZ))
    assert [len(e["rewards"]) for e in eps] == [199, 199, 199]
    np.testing.assert_array_equal(eps[2]["observations"], z["obs"][400:600])
    np.testing.assert_array_equal(eps[2]["actions"], z["actions"][400:599])
    # The stored episode returns include the dropped last reward.
    for i, e in enumerate(eps):
        dropped = z["rewards"][200 * i + 199]
        assert np.isclose(e["rewards"].sum() + dropped, z["episode_returns"][i], rtol=0, atol=1e-9)
        assert e["truncations"][-1] and not e["terminations"].any()


def test_cs285_slice_and_time_limit_is_a_truncation(tmp_path):
    with open(CS285, "rb") as f:
        path = pickle.load(f)[0]
    (ep,) = read_episodes(str(CS285))
    assert len(ep["rewards"]) == 100
    np.testing.assert_array_equal(ep["observations"][1:], path["next_observation"])
    np.testing.assert_array_equal(ep["observations"][:-1], path["observation"])
    assert ep["truncations"][-1] and not ep["terminations"].any()
    # A rollout's terminal at the 1000-step limit is a truncation; one before it terminates.
    rng = np.random.default_rng(0)

    def fake(n):
        obs = rng.standard_normal((n + 1, 2))
        term = np.zeros(n, dtype=bool)
        term[-1] = True
        return dict(
            observation=obs[:-1],
            next_observation=obs[1:],
            action=np.zeros((n, 1)),
            reward=np.ones(n),
            terminal=term,
        )

    long, short = read_episodes(str(_pickle(tmp_path / "x.pkl", [fake(1000), fake(5)])))
    assert long["truncations"][-1] and not long["terminations"].any()
    assert short["terminations"][-1] and not short["truncations"].any()
    assert len(long["rewards"]) == 1000 and len(short["rewards"]) == 5


def test_dapg_drops_the_last_row():
    with open(DAPG, "rb") as f:
        demo = pickle.load(f)[0]
    (ep,) = read_episodes(str(DAPG))
    assert ep["observations"].shape == (40, 39) and ep["actions"].shape == (39, 28)
    np.testing.assert_array_equal(ep["rewards"], demo["rewards"][:39])
    assert ep["truncations"][-1] and not ep["terminations"].any()


def _d4rl(path: Path, with_next: bool) -> Path:
    obs = np.arange(16, dtype=np.float32).reshape(8, 2)
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1)
        f["rewards"] = np.arange(8, dtype=np.float32)
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
        f["timeouts"] = np.array([0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
        if with_next:
            nxt = obs + 2.0  # o' of row t is o of row t + 1 ...
            nxt[2] = -1.0  # ... except at the terminal, whose o' is its own
            nxt[5] = -2.0
            f["next_observations"] = nxt
    return path


def test_d4rl_terminal_vs_timeout(tmp_path):
    a, b, c = read_episodes(str(_d4rl(tmp_path / "with.hdf5", with_next=True)))
    assert a["terminations"].tolist() == [False, False, True] and not a["truncations"].any()
    assert b["truncations"].tolist() == [False, False, True] and not b["terminations"].any()
    assert c["truncations"].tolist() == [False, True]  # the file ends mid-episode
    assert a["observations"][-1].tolist() == [-1.0, -1.0]
    assert c["rewards"].tolist() == [6.0, 7.0]
    # Without next observations the last row of each episode only gives o_T.
    a, b, c = read_episodes(str(_d4rl(tmp_path / "without.hdf5", with_next=False)))
    assert [e["rewards"].tolist() for e in (a, b, c)] == [[0, 1], [3, 4], [6]]
    assert all(e["truncations"][-1] and not e["terminations"].any() for e in (a, b, c))
    np.testing.assert_array_equal(b["observations"], np.arange(6, 12).reshape(3, 2))


# --- Minari round trip and metadata ---------------------------------------------------------


def test_round_trip_through_minari_with_metadata(root):
    raw = _raw_h5(D3RLPY)
    ds = import_dataset(
        str(D3RLPY),
        "imported/pend-v0",
        env_id="Pendulum-v1",
        ref_min_score=-1229.0,
        ref_max_score=-150.0,
        provenance="a test",
    )
    tr, loaded = load_transitions("imported/pend-v0")
    assert tr.rewards.shape == (502,)
    rows = np.r_[0:200, 201:401, 402:504]  # the steps' o_t rows; the next rows give o_{t+1}
    np.testing.assert_array_equal(np.asarray(tr.observations), raw["observations"][rows])
    np.testing.assert_array_equal(np.asarray(tr.next_observations), raw["observations"][rows + 1])
    np.testing.assert_array_equal(np.asarray(tr.actions), raw["actions"][rows])
    np.testing.assert_array_equal(np.asarray(tr.rewards), raw["rewards"][rows + 1])
    assert float(np.asarray(tr.terminals).sum()) == 0.0
    meta = loaded.storage.metadata
    assert loaded.env_spec.id == "Pendulum-v1"
    assert loaded.recover_environment(eval_env=True).spec.id == "Pendulum-v1"
    assert reference_scores(loaded)[:2] == (-1229.0, -150.0)
    sha = hashlib.sha256(D3RLPY.read_bytes()).hexdigest()
    for part in (D3RLPY.name, sha, "format d3rlpy", "a test"):
        assert part in meta["data_provenance"]
    assert ds.total_episodes == 3


def test_known_file_needs_no_other_argument(root, tmp_path):
    path = tmp_path / "sb_expert_pendulum.npz"  # a known file's name
    shutil.copy(NPZ, path)
    ds = import_dataset(str(path), "expert-v0")
    assert ds.env_spec.id == KNOWN_FILES[path.name]["env_id"] == "Pendulum-v1"
    assert ds.storage.metadata["ref_min_score"] == -1229.0
    assert ds.storage.metadata["ref_max_score"] == -150.0
    assert "hill-a/stable-baselines" in ds.storage.metadata["data_provenance"]


def test_env_not_installable_is_not_needed(root, monkeypatch):
    # As without gymnasium-robotics: the package cannot be imported and the id is unknown.
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)
    real_spec = gym.spec

    def spec(env_id):
        if "Adroit" in env_id:
            raise gym.error.NameNotFound(f"Environment `{env_id}` doesn't exist.")
        return real_spec(env_id)

    monkeypatch.setattr(gym, "spec", spec)
    with pytest.raises(DataValidationError, match="outside the action box"):
        import_dataset(str(DAPG), "door-v0", env_id="AdroitHandDoor-v1")
    assert _entries(root) == []
    ds = import_dataset(str(DAPG), "door-v0", env_id="AdroitHandDoor-v1", clip_actions=True)
    assert ds.env_spec.id == "AdroitHandDoor-v1"
    assert ds.observation_space.shape == (39,) and ds.action_space.shape == (28,)
    (ep,) = list(ds.iterate_episodes())
    assert np.abs(ep.actions).max() <= 1.0
    assert "33 action entries clipped" in ds.storage.metadata["data_provenance"]


# --- replay check -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [D3RLPY, NPZ])
def test_replay_pendulum_slices(path):
    result = check_replay(read_episodes(str(path)), "Pendulum-v1", num_transitions=100)
    assert result["supported"] and result["ok"] and result["transitions"] == 100
    assert result["max_obs_error"] < 1e-5 and result["max_reward_error"] < 1e-5


def test_replay_catches_wrong_env_and_perturbed_data(root, tmp_path):
    eps = read_episodes(str(NPZ))
    with pytest.raises(SpaceMismatchError, match=r"MountainCarContinuous-v0.*\(3,\).*\(2,\)"):
        check_replay(eps, "MountainCarContinuous-v0")
    # Right dimensions, wrong dynamics: the recorded next states are off by 0.05.
    z = dict(np.load(NPZ))
    z["obs"] = z["obs"] + np.where(np.arange(600) % 200 == 0, 0.0, 0.05)[:, None].astype(np.float32)
    bad = tmp_path / "perturbed.npz"
    np.savez(bad, **z)
    with pytest.raises(EnvMismatchError, match="perturbed.npz.*Pendulum-v1"):
        import_dataset(str(bad), "p-v0", env_id="Pendulum-v1", check_replay_steps=50)
    assert _entries(root) == []
    none = check_replay(eps, "Pendulum-v1", 0)
    assert none["transitions"] == 0 and none["ok"] is None
    car = [dict(observations=np.zeros((3, 2)), actions=np.zeros((2, 1)), rewards=np.zeros(2))]
    unsupported = check_replay(car, "MountainCarContinuous-v0")
    assert not unsupported["supported"] and "not supported" in unsupported["note"]


# --- bad files: one clear error, nothing written -----------------------------------------------


def _npz(tmp_path, **changes) -> Path:
    z = dict(np.load(NPZ))
    z.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del z[k]
    path = tmp_path / "bad.npz"
    np.savez(path, **z)
    return path


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(rewards=None), DataValidationError, "lacks the key.*rewards"),
        (dict(rewards=np.zeros(599)), DataValidationError, "ragged lengths"),
        (dict(obs=np.full((600, 3), np.nan)), DataValidationError, "non-finite"),
        (dict(actions=np.full((600, 1), 3.0)), DataValidationError, "outside the action box"),
        (dict(obs=np.zeros((600, 4))), SpaceMismatchError, r"Pendulum-v1.*\(4,\).*\(3,\)"),
    ],
)
def test_bad_npz_writes_nothing(root, tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        import_dataset(str(_npz(tmp_path, **change)), "bad-v0", env_id="Pendulum-v1")
    assert _entries(root) == []


def test_unknown_format_missing_env_and_existing_id(root, tmp_path):
    txt = tmp_path / "data.csv"
    txt.write_text("1,2,3\n")
    with pytest.raises(ConfigError, match="Unknown file type"):
        import_dataset(str(txt), "x-v0", env_id="Pendulum-v1")
    with pytest.raises(ConfigError, match="Unknown format"):
        read_episodes(str(NPZ), format="parquet")
    with pytest.raises(ConfigError, match="No environment"):
        import_dataset(str(NPZ), "x-v0")
    with pytest.raises(ConfigError, match="Malformed dataset id"):
        import_dataset(str(NPZ), "no version", env_id="Pendulum-v1")
    assert _entries(root) == []
    first = import_dataset(str(NPZ), "ns/x-v0", env_id="Pendulum-v1")
    assert first.total_episodes == 3
    with pytest.raises(DatasetExistsError, match="ns/x-v0"):
        import_dataset(str(D3RLPY), "ns/x-v0", env_id="Pendulum-v1")
    assert load_transitions("ns/x-v0")[0].rewards.shape == (597,)  # untouched
    import_dataset(str(D3RLPY), "ns/x-v0", env_id="Pendulum-v1", overwrite=True)
    assert load_transitions("ns/x-v0")[0].rewards.shape == (502,)
    assert [e for e in _entries(root) if e.startswith(".")] == []  # no temporary left


def test_command_line(root, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import import_dataset as cli
    finally:
        sys.path.pop(0)
    assert (
        cli.main([str(NPZ), "--id", "cli-v0", "--env", "Pendulum-v1", "--check-replay", "20"]) == 0
    )
    out = capsys.readouterr().out
    assert "episodes      3" in out and "transitions   597" in out and "Pendulum-v1" in out
    assert "replay check" in out
    assert cli.main([str(NPZ), "--id", "cli-v0", "--env", "Pendulum-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "already exists" in err[0]
