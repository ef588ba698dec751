"""The training run under faults and bad input: nothing reported as success that is not,
nothing overwritten, one clear line for every mistake.

Every run here shares one tiny configuration and same-shaped datasets (`_tiny_runs.py`), so the
training and evaluation code compiles once for the module (the divergence test compiles its own).
"""

import errno
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _tiny_runs import EPISODE_STEPS, EPISODES, TINY, TINY_CFG, collect, copy_run, tiny_spec

from sdepolicy.app import (
    CheckpointMismatchError,
    ConfigError,
    OutputWriteError,
    RunFolderError,
    RunInterruptedError,
    RunSpec,
    TrainingDivergedError,
    ensure_default_dataset,
    read_header,
    run,
)
from sdepolicy.app import _checkpoint as checkpoint_lib
from sdepolicy.app._run_outputs import strict_json as _strict_json

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from d4rl_train import main  # noqa: E402

WIDE = "test/faults-wide-actions-v0"  # same shapes as TINY, actions 50x outside the box


@pytest.fixture(scope="module")
def datasets(minari_store):
    root = minari_store
    collect(TINY, scale=1.0)
    collect(WIDE, scale=50.0)
    # The same id and shapes as TINY, in another store, with rewards that overflow the critics.
    os.environ["MINARI_DATASETS_PATH"] = str(root / "huge")
    collect(TINY, scale=1.0, reward_scale=1e30)
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    return root


@pytest.fixture(scope="module")
def finished(datasets, tmp_path_factory):
    """One finished run (2 checkpoints, 1 evaluation); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "done"
    run(tiny_spec(out))
    return out


def _cli(capsys, *args):
    """`main` in-process; returns (exit code, the `error:` lines, all of stderr)."""
    code = main(["--no-progress", *args])
    err = capsys.readouterr().err
    return code, [x for x in err.splitlines() if x.startswith("error:")], err


def _one_line(capsys, args, *needles, code=2):
    got, lines, err = _cli(capsys, *args)
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _strict_load(path):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


# --- results that lie or vanish -----------------------------------------------------------------


def test_divergence_stops_at_the_first_bad_chunk_and_keeps_the_last_good_checkpoint(
    datasets, tmp_path, capsys, monkeypatch
):
    # The same configuration as every run here (so no new compilation): a good first chunk on
    # the tiny data, then the resumed run meets a same-shaped dataset of the same id whose
    # rewards are 1e30, so the critics' squared errors overflow float32 in its first update.
    class Stop(Exception):
        pass

    def stop(step):
        raise Stop

    out = tmp_path / "div"
    with pytest.raises(Stop):
        run(tiny_spec(out, reward_transform="none", checkpoint_every=10), on_checkpoint=stop)
    assert read_header(out / "checkpoint.eqx")["step"] == 10
    before = (out / "checkpoint.eqx").read_bytes()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(datasets / "huge"))
    args = ["--dataset", TINY, "--out", str(out), "--resume", "--reward-transform", "none"]
    args += ["--steps", "20", "--eval-every", "20", "--eval-episodes", "1"]
    args += ["--steps-per-call", "10", "--checkpoint-every", "10"]
    args += [f"--set={k}={v}" for k, v in TINY_CFG.items()]
    line = _one_line(capsys, args, "diverged at update 11", "critic_loss", code=3)
    assert "(step 10)" in line  # the last good checkpoint, named
    assert (out / "checkpoint.eqx").read_bytes() == before  # the bad state was not saved
    summary = _strict_load(out / "summary.json")  # strict JSON, no bare NaN
    assert summary["status"] == "diverged" and summary["non_finite"]["step"] == 11
    assert "critic_loss" in summary["non_finite"]["metrics"]
    assert TrainingDivergedError.exit_code == 3


def test_summary_is_strict_json_with_non_finite_values_flagged():
    clean, paths = _strict_json({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32(2)})
    assert clean == {"a": None, "b": [1.0, None], "c": 2.0}
    assert paths == ["a", "b[1]"]
    json.dumps(clean, allow_nan=False)


def test_a_run_folder_without_its_checkpoint_is_not_overwritten(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    (out / "checkpoint.eqx").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RunFolderError, match="already holds a run"):
        run(tiny_spec(out))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before
    for missing in (tmp_path / "typo", tmp_path / "empty"):
        if missing.name == "empty":
            missing.mkdir()
        with pytest.raises(RunFolderError, match="no run to resume"):
            run(tiny_spec(missing, resume=True))
    assert not (tmp_path / "typo").exists()


def test_a_second_run_on_a_locked_folder_fails_at_once(datasets, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # what a running run holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunFolderError, match="another run is using"):
            run(tiny_spec(out))
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_a_corrupt_checkpoint_is_refused_on_resume(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    raw = bytearray((out / "checkpoint.eqx").read_bytes())
    for i in range(16):
        raw[-100 - i] ^= 0xFF
    (out / "checkpoint.eqx").write_bytes(bytes(raw))
    with pytest.raises(CheckpointMismatchError, match="corrupt"):
        run(tiny_spec(out, resume=True))


@pytest.mark.parametrize(
    "seeds, needle", [((2**40,), "outside"), ((-1,), "outside"), ((0, 0), "more than once")]
)
def test_aliasing_seeds_are_refused(tmp_path, seeds, needle):
    with pytest.raises(ConfigError, match=needle):
        run(tiny_spec(tmp_path / "s", seeds=seeds))
    assert not (tmp_path / "s").exists()


def test_resume_with_changed_run_settings_is_refused(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    for change, flag in (({"steps": 10}, "--steps"), ({"eval_episodes": 2}, "--eval-episodes")):
        with pytest.raises(ConfigError, match=flag):
            run(tiny_spec(out, resume=True, **change))
    # Left out, they are the checkpointed run's: the summary stays consistent.
    summary = run(tiny_spec(out, resume=True, steps=None, eval_every=None, eval_episodes=None))
    assert summary["steps"] == 20 and summary["last_evaluation"]["step"] == 20
    assert summary["run"]["eval_episodes"] == 1


def test_resume_mismatch_names_the_setting_and_does_not_loop(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"config\.eta: 0\.1 there, 3\.0 here") as e:
        run(tiny_spec(out, resume=True, overrides={**TINY_CFG, "eta": 3.0}))
    assert "drop --resume" not in str(e.value)


# --- one clear line instead of a traceback ---------------------------------------------------

_CONFIG_PROBES = [
    ("num_critics=1", "num_critics >= 2"),
    ("num_critics=0", "num_critics"),
    ("num_critics=-1", "num_critics"),
    ("q_aggregate=bogus", "q_aggregate"),
    ("diffusion_steps=0", "diffusion_steps"),
    ("hidden=0", "hidden"),
    ("batch_size=0", "batch_size"),
    ("gamma=1.5", "gamma"),
    ("actor_lr=-1", "actor_lr"),
    ("critic_lr=-0.1", "critic_lr"),
    ("lcb_beta=nan", "lcb_beta"),
]


def test_bad_values_give_one_line_before_any_work(datasets, tmp_path, capsys):
    common = ["--dataset", TINY, "--steps", "10"]
    for i, (setting, needle) in enumerate(_CONFIG_PROBES):
        out = tmp_path / f"c{i}"
        _one_line(capsys, [*common, "--out", str(out), "--set", setting], needle)
        assert not out.exists()
    for i, (flag, value) in enumerate(
        [
            ("--steps", "-5"),
            ("--steps", "0"),
            ("--eval-episodes", "0"),
            ("--eval-every", "-1"),
            ("--steps-per-call", "-1"),
            ("--checkpoint-every", "0"),
        ]
    ):
        _one_line(capsys, ["--dataset", TINY, flag, value, "--out", str(tmp_path / f"f{i}")], flag)
    _one_line(capsys, ["--task", "no-such-task"], "--list-tasks")


def test_bad_paths_give_one_line(datasets, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line(capsys, ["--dataset", TINY, "--out", str(a_file)], "is a file")
    _one_line(capsys, ["--dataset", TINY, "--out", str(a_file / "sub")], "cannot write")
    # A truncated main_data.hdf5 in a copy of the store.
    store = tmp_path / "store"
    shutil.copytree(datasets / "test" / "faults-tiny-v0", store / "test" / "faults-tiny-v0")
    h5 = store / "test" / "faults-tiny-v0" / "data" / "main_data.hdf5"
    h5.write_bytes(h5.read_bytes()[:2000])
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    _one_line(capsys, ["--dataset", TINY, "--out", str(tmp_path / "t")], "truncated")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(a_file))
    _one_line(capsys, ["--out", str(tmp_path / "d")], "MINARI_DATASETS_PATH")


def test_full_disk_is_one_line_and_leaves_no_temporary_file(datasets, tmp_path, monkeypatch):
    out = tmp_path / "full"
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 1:  # the first checkpoint is written, the second finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_lib.os, "fsync", fsync)
    with pytest.raises(OutputWriteError, match=r"No space left on device.*\(step 10\)"):
        run(tiny_spec(out, checkpoint_every=10))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert read_header(out / "checkpoint.eqx")["step"] == 10


def test_ctrl_c_names_the_last_checkpoint(datasets, tmp_path):
    def interrupt(step):
        raise KeyboardInterrupt

    with pytest.raises(RunInterruptedError, match=r"step 10\).*--resume"):
        run(tiny_spec(tmp_path / "i", checkpoint_every=10), on_checkpoint=interrupt)
    assert RunInterruptedError.exit_code == 130


def test_actions_outside_the_box_are_warned_and_clipped_only_if_asked(datasets, tmp_path, capsys):
    class Stop(Exception):
        pass

    def stop(step):
        raise Stop

    with pytest.raises(Stop):
        run(tiny_spec(tmp_path / "w", dataset=(WIDE,)), on_checkpoint=stop)
    err = capsys.readouterr().err
    assert "warning:" in err and "outside the environment's action box" in err
    n = int(err.split("warning: ")[1].split(" of ")[0])
    assert 0.9 * EPISODES * EPISODE_STEPS < n <= EPISODES * EPISODE_STEPS
    with pytest.raises(Stop):
        run(tiny_spec(tmp_path / "c", dataset=(WIDE,), clip_actions=True), on_checkpoint=stop)
    assert "clipped" in capsys.readouterr().err


def test_critic_divergence_is_recorded_with_its_step(finished, tmp_path):
    from sdepolicy.app import _data as data_lib
    from sdepolicy.app import get_preset
    from sdepolicy.app._diagnostics import critic_divergence as _critic_divergence

    summary = _strict_load(finished / "summary.json")
    div = summary["critic_divergence"]
    transitions, _ = data_lib.load_transitions([TINY])
    rewards = data_lib.transform_rewards(
        transitions, get_preset("pendulum-mixed").reward_transform
    ).rewards
    r_max = float(np.max(np.abs(np.asarray(rewards))))
    assert div["bound"] == pytest.approx(2.0 * r_max / (1.0 - summary["config"]["gamma"]))
    assert div["diverged"] is False and div["first_step"] == {}
    header = (finished / "metrics.csv").read_text().splitlines()[0]
    assert "critic_over_bound" in header.split(",")

    first = {}
    metrics = {"q_mean": np.array([[1.0, 5.0, 50.0]]), "critic_loss": np.zeros((1, 3))}
    over = _critic_divergence(metrics, 10.0, (7,), 40, first)
    assert over.tolist() == [True] and first == {"7": 43}


def test_dataset_run_is_named_after_its_dataset(finished):
    summary = _strict_load(finished / "summary.json")
    assert summary["name"] == TINY and summary["dataset"]["ids"] == [TINY]
    from sdepolicy.app._runner import _run_name, _slug

    spec = RunSpec(dataset=(TINY,))
    assert f"runs/{_slug(_run_name(spec))}-erdpqe" == "runs/test-faults-tiny-v0-erdpqe"


def test_read_only_store_is_used_without_the_lock(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ensure_default_dataset("test/ro-v0", num_episodes=2, num_ref_episodes=1)
    lock = tmp_path / ".test__ro-v0.lock"
    lock.unlink()
    real_open = open

    def no_writes(path, mode="r", *a, **k):
        if str(path).startswith(str(tmp_path)) and any(c in mode for c in "wa+"):
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", no_writes)
    assert ensure_default_dataset("test/ro-v0", num_episodes=2, num_ref_episodes=1)
    assert not lock.exists()


_KILL_BUILD = """
import os, sys
from sdepolicy.app import _default_dataset as d
real, n = d._run_episode, [0]
def dies(*a, **k):
    n[0] += 1
    if n[0] > 4:
        os._exit(9)  # as a kill: no clean-up runs
    return real(*a, **k)
d._run_episode = dies
d.ensure_default_dataset("test/killed-v0", num_episodes=6, num_ref_episodes=1)
"""


def test_a_killed_dataset_build_is_cleaned_up_next_time(tmp_path):
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _KILL_BUILD], env=env, timeout=120)
    assert proc.returncode == 9
    assert [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]  # what the kill left
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path)
    try:
        ensure_default_dataset("test/killed-v0", num_episodes=6, num_ref_episodes=1)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp")]
    assert (tmp_path / "test" / "killed-v0" / "data" / "metadata.json").exists()
