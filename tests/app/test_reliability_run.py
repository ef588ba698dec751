"""The training run under the faults and bad inputs of issue 33 (items 2, 3, 4, 6, 7, 8, 9, 10):
the lock, the checkpoint's integrity and run id, SIGTERM and Ctrl-C, restarts, bad settings and
paths, standard output on a full disk, permissions. Each test would fail on the code the issue
was filed against.

The runs share tests/app/test_faults.py's tiny configuration and its same-shaped dataset
(`_tiny_runs.py`), so the training and evaluation code compiles once per process. Only one test
starts a process (JAX_PLATFORMS is read when JAX starts).
"""

from __future__ import annotations

import errno
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest
from _tiny_runs import TINY, TINY_CFG, collect, copy_run, tiny_spec

from sdepolicy.app import (
    CheckpointMismatchError,
    ConfigError,
    DatasetNotFoundError,
    DataValidationError,
    RunFolderError,
    RunTerminatedError,
    read_header,
    run,
)
from sdepolicy.app import _runner as runner_lib
from sdepolicy.app._run_folder import RUN_ID, RunLock

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import d4rl_train  # noqa: E402

sys.path.pop(0)

RUN_FLAGS = ["--steps", "20", "--eval-every", "20", "--eval-episodes", "1"]
RUN_FLAGS += ["--steps-per-call", "10", "--checkpoint-every", "10"]
RUN_FLAGS += [f"--set={k}={v}" for k, v in TINY_CFG.items()]


@pytest.fixture(scope="module")
def datasets(minari_store):
    collect(
        TINY,
        author="sdepolicy tests",
        code_permalink="tests/app/_tiny_runs.py",
        author_email="none",
        algorithm_name="uniform random actions",
        description="tiny Pendulum data for the tests",
    )
    return minari_store


def _spec(out, **kw):
    """`tiny_spec` with checkpoints at 10 and 20."""
    return tiny_spec(out, **{"checkpoint_every": 10, **kw})


@pytest.fixture(scope="module")
def finished(datasets, tmp_path_factory):
    """One finished run (checkpoints at 10 and 20, one evaluation); tests copy it."""
    out = tmp_path_factory.mktemp("runs") / "done"
    run(_spec(out))
    return out


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}


def _one_line(capsys, args, *needles, code=2):
    """`d4rl_train.main` in-process: the exit code, exactly one `error:` line, no trace."""
    got = d4rl_train.main(["--no-progress", *args])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def signals():
    """The SIGINT and SIGTERM handlers as they were, restored after the test (the command line
    ignores both once a run was interrupted, as the process is about to end)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield saved
    for s, handler in saved.items():
        signal.signal(s, handler)


# --- 2. the lock ---------------------------------------------------------------------------------


def test_a_lock_that_is_a_link_is_not_followed(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    out = tmp_path / "x"
    out.mkdir()
    (out / ".lock").symlink_to(notes)
    with pytest.raises(RunFolderError, match="symbolic link.*not touched"):
        with RunLock(out, resume=False):
            pass
    assert notes.read_text() == "my notes\n"
    (out / ".lock").unlink()
    os.mkfifo(out / ".lock")  # not a regular file
    with pytest.raises(RunFolderError, match="not a plain file"):
        with RunLock(out, resume=False):
            pass


# --- 3. the checkpoint's integrity and its run -------------------------------------------------


def test_an_edited_checkpoint_header_is_refused(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    path = out / "checkpoint.eqx"
    line, payload = path.read_bytes().split(b"\n", 1)
    header = json.loads(line)
    header["extra"]["history"][-1]["returns"] = [-150.0]  # a better result than the true one
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    before = _snapshot(out)
    with pytest.raises(CheckpointMismatchError, match="corrupt.*header or its arrays"):
        run(_spec(out, resume=True))
    assert _snapshot(out) == before


def test_a_checkpoint_of_another_run_is_refused(finished, tmp_path):
    # Another run of the same configuration, stopped at its first checkpoint (step 10).
    class Stop(Exception):
        pass

    def stop(step):
        raise Stop

    other = tmp_path / "other"
    with pytest.raises(Stop):
        run(_spec(other), on_checkpoint=stop)
    assert read_header(other / "checkpoint.eqx")["step"] == 10
    out = copy_run(finished, tmp_path)
    run_id = (out / RUN_ID).read_text().strip()
    assert read_header(out / "checkpoint.eqx")["run_id"] == run_id
    assert json.loads((out / "summary.json").read_text())["run_id"] == run_id
    shutil.copy(other / "checkpoint.eqx", out / "checkpoint.eqx")
    before = _snapshot(out)
    with pytest.raises(CheckpointMismatchError, match="another run"):
        run(_spec(out, resume=True))
    assert _snapshot(out) == before  # metrics.csv not cut, summary.json not replaced


def test_a_checkpoint_holding_a_json_list_is_one_line(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    (out / "checkpoint.eqx").write_text("[1, 2, 3]\n")
    args = ["--dataset", TINY, "--out", str(out), "--resume", *RUN_FLAGS]
    _one_line(capsys, args, "not an sdepolicy checkpoint")


# --- 4. what a killed run left ----------------------------------------------------------------


def test_stale_temporary_files_are_removed_on_resume(tmp_path):
    out = tmp_path / "killed"
    out.mkdir()
    (out / "checkpoint.eqx").write_bytes(b"{}\n")  # the lock does not read it
    stale = ["checkpoint.eqx.k3j2.tmp", "summary.json.ab.tmp", ".run_id.x.tmp", ".write-test-1"]
    for name in stale:
        (out / name).write_bytes(b"\0" * 1000)
    (out / "notes.tmp").write_text("not the run's")
    with RunLock(out, resume=True):
        left = sorted(p.name for p in out.iterdir())
    assert left == [".lock", "checkpoint.eqx", "notes.tmp"]


# --- 6. bad settings, data, paths and platforms: one line before any work ----------------------


@pytest.mark.parametrize(
    "setting, needle", [("hidden=1e20", "hidden"), ("ema_start=1e30", "ema_start")]
)
def test_huge_integer_settings_are_refused_before_any_work(
    datasets, tmp_path, capsys, setting, needle
):
    out = tmp_path / "huge"
    line = _one_line(capsys, ["--dataset", TINY, "--out", str(out), "--set", setting], needle)
    assert "integer in [" in line
    assert not out.exists()


def test_out_names_too_long_or_links_that_lead_nowhere_are_one_line(datasets, tmp_path, capsys):
    long = tmp_path / ("x" * 300) / "run"
    _one_line(capsys, ["--dataset", TINY, "--out", str(long), *RUN_FLAGS], "too long")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    _one_line(capsys, ["--dataset", TINY, "--out", str(dangling)], "does not exist")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    _one_line(capsys, ["--dataset", TINY, "--out", str(loop)], "loops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]


def test_a_dataset_whose_metadata_is_empty_is_one_line(datasets, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(datasets / "test" / "faults-tiny-v0", store / "test" / "faults-tiny-v0")
    (store / "test" / "faults-tiny-v0" / "data" / "metadata.json").write_text("{}")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    out = tmp_path / "m"
    _one_line(capsys, ["--dataset", TINY, "--out", str(out)], "damaged", "metadata.json")
    assert not out.exists()


_NO_GPU = """
import sys
sys.path.insert(0, "examples")
import d4rl_train, import_dataset
print("run", d4rl_train.main(["--dataset", "test/none-v0", "--out", sys.argv[1], "--no-progress"]))
print("import", import_dataset.main([sys.argv[2], "--id", "g-v0", "--env", "Pendulum-v1"]))
"""


def test_a_platform_jax_cannot_start_is_one_line(tmp_path):
    if any(d.platform == "gpu" for d in __import__("jax").devices()):
        pytest.skip("this machine has a GPU: JAX_PLATFORMS=gpu starts")
    env = dict(os.environ, JAX_PLATFORMS="gpu", MINARI_DATASETS_PATH=str(tmp_path / "store"))
    npz = ROOT / "tests" / "data" / "sb_expert_pendulum_slice.npz"
    proc = subprocess.run(
        [sys.executable, "-c", _NO_GPU, str(tmp_path / "out"), str(npz)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "run 2" in proc.stdout and "import 2" in proc.stdout, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 2 and "Traceback" not in proc.stderr, proc.stderr
    for line in lines:
        assert "JAX_PLATFORMS=gpu" in line and "jax[cuda12]" in line and "unset" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_a_full_standard_output_after_a_completed_run_is_one_line(
    finished, tmp_path, capsys, monkeypatch
):
    summary = json.loads((finished / "summary.json").read_text())

    class FullDisk(io.TextIOBase):
        def write(self, s):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fileno(self):  # not a file: nothing to point at /dev/null
            raise io.UnsupportedOperation("fileno")

    import sdepolicy.app

    monkeypatch.setattr(sdepolicy.app, "run", lambda spec: summary)
    monkeypatch.setattr(sys, "stdout", FullDisk())
    code = d4rl_train.main(["--dataset", TINY, "--out", str(finished), "--no-progress"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "No space left on device" in lines[0] and "run completed" in lines[0]
    assert f"{finished}/summary.json" in lines[0]


# --- 6, 8. Ctrl-C twice, SIGTERM, a run killed before its first checkpoint ---------------------


def test_sigterm_is_handled_like_ctrl_c(datasets, tmp_path, capsys, monkeypatch, signals):
    assert signals[signal.SIGTERM] is signal.SIG_DFL
    real_save, sent = runner_lib.save_checkpoint, []

    def save_then_terminated(*a, **k):
        real_save(*a, **k)
        if not sent:
            sent.append(True)
            # Without a handler SIGTERM would end the test process itself: check first.
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no SIGTERM handler"
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(runner_lib, "save_checkpoint", save_then_terminated)
    out = tmp_path / "t"
    args = ["--dataset", TINY, "--out", str(out), *RUN_FLAGS]
    line = _one_line(capsys, args, "terminated (SIGTERM)", "(step 10)", "--resume", code=143)
    assert str(out / "checkpoint.eqx") in line
    assert RunTerminatedError.exit_code == 143
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signals[s])
    monkeypatch.setattr(runner_lib, "save_checkpoint", real_save)
    assert d4rl_train.main(["--no-progress", "--resume", *args]) == 0
    assert read_header(out / "checkpoint.eqx")["step"] == 20


def test_a_second_ctrl_c_during_the_clean_up_is_ignored(
    datasets, tmp_path, capsys, monkeypatch, signals
):
    # Python's own Ctrl-C handler, as a process starts with (earlier in-process calls of main
    # left theirs; the fixture puts back whatever was there).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real_save, real_clean = runner_lib.save_checkpoint, runner_lib.clean_failed

    def save_then_ctrl_c(*a, **k):
        real_save(*a, **k)
        signal.raise_signal(signal.SIGINT)

    def ctrl_c_again(*a, **k):  # the impatient user presses Ctrl-C again
        signal.raise_signal(signal.SIGINT)
        return real_clean(*a, **k)

    monkeypatch.setattr(runner_lib, "save_checkpoint", save_then_ctrl_c)
    monkeypatch.setattr(runner_lib, "clean_failed", ctrl_c_again)
    out = tmp_path / "i"
    args = ["--dataset", TINY, "--out", str(out), *RUN_FLAGS]
    _one_line(capsys, args, "interrupted", "(step 10)", "--resume", code=130)
    # The process is ending: further Ctrl-C and SIGTERM are ignored, not a trace at exit.
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(datasets, tmp_path, capsys):
    for resume in (False, True):
        out = tmp_path / f"k{int(resume)}"
        out.mkdir()
        # What a SIGKILL before the first checkpoint leaves: rows, a run id, a lock.
        (out / "metrics.csv").write_text("step,seed,critic_loss\n10,0,1.0\n")
        (out / RUN_ID).write_text("0123abcd\n")
        (out / ".lock").write_text("12345\n")
        summary = run(_spec(out, resume=resume))
        assert summary["status"] == "completed" and summary["steps"] == 20
        assert "stopped before its first checkpoint" in capsys.readouterr().err
        rows = (out / "metrics.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["10", "20"]  # the old row is gone
        assert (out / RUN_ID).read_text().strip() == summary["run_id"] != "0123abcd"


def test_sigterm_before_the_first_checkpoint_leaves_nothing(
    datasets, tmp_path, capsys, monkeypatch, signals
):
    real_append = runner_lib.append_csv

    def append_then_terminated(*a, **k):
        real_append(*a, **k)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no SIGTERM handler"
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(runner_lib, "append_csv", append_then_terminated)
    out = tmp_path / "early"
    with pytest.raises(RunTerminatedError, match="no checkpoint was written"):
        run(_spec(out))
    assert not out.exists()  # the same command can run again


# --- 7. reference scores that are not numbers ---------------------------------------------------


def test_non_finite_reference_scores_are_refused_before_training(datasets, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(datasets / "test" / "faults-tiny-v0", store / "test" / "faults-tiny-v0")
    meta_path = store / "test" / "faults-tiny-v0" / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["ref_min_score"] = meta["ref_max_score"] = float("nan")  # as an older import wrote
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    out = tmp_path / "n"
    with pytest.raises(DataValidationError, match="unusable reference scores"):
        run(_spec(out))
    assert not out.exists()


# --- 9. ids, strings, folders, repeated settings, the measured rate ----------------------------


def test_the_run_checks_the_dataset_id_as_the_importer_does(datasets, tmp_path, monkeypatch):
    # A root one level down: '../test/faults-tiny-v0' would reach the dataset outside it.
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(datasets / "test"))
    for bad in ("../../x-v0", "../test/faults-tiny-v0", "/abs/x-v0"):
        out = tmp_path / "d"
        with pytest.raises(ConfigError, match="Malformed dataset id"):
            run(_spec(out, dataset=(bad,)))
        assert not out.exists()


def test_a_dataset_given_as_a_string_is_one_id(datasets, tmp_path):
    summary = run(_spec(tmp_path / "s", dataset=TINY))
    assert summary["dataset"]["ids"] == [TINY] and summary["name"] == TINY


def test_a_failed_run_leaves_none_of_the_folders_it_made(datasets, tmp_path):
    with pytest.raises(DatasetNotFoundError):
        run(_spec(tmp_path / "a" / "b" / "c", dataset=("test/missing-v0",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_repeated_set_key_is_refused(datasets, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["--dataset", TINY, "--out", str(out), "--set", "eta=-1", "--set", "eta=0.2"]
    _one_line(capsys, args, "--set eta is given twice")
    assert not out.exists()


def test_resume_of_a_completed_run_keeps_its_measured_rate(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    rate = json.loads((finished / "summary.json").read_text())["update_steps_per_s"]
    assert isinstance(rate, float) and rate > 0
    summary = run(_spec(out, resume=True))  # nothing left to train: no chunk is timed
    assert summary["update_steps_per_s"] == rate
    assert json.loads((out / "summary.json").read_text())["update_steps_per_s"] == rate


# --- 10. permissions --------------------------------------------------------------------------


def test_outputs_follow_the_umask(datasets, tmp_path):
    out = tmp_path / "p"
    old = os.umask(0o027)
    try:
        run(_spec(out))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    names = ["checkpoint.eqx", "metrics.csv", "summary.json", "learning_curve.png", RUN_ID]
    assert {n: modes[n] for n in names} == {n: 0o640 for n in names}
    assert out.stat().st_mode & 0o777 == 0o750
