"""The importer under the faults and bad inputs of issue 33 (items 1, 4, 5, 7, 9, 10): two imports
racing for one id, a full disk, killed imports, bad files and arguments, permissions. Each test
would fail on the code the issue was filed against; all run in-process on the tiny slices of
tests/data (one test spawns the importer's writer on a real, tiny tmpfs, when it can mount one).
"""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sdepolicy.app import DatasetExistsError, OutputWriteError
from sdepolicy.app._data import load_transitions
from sdepolicy.app.importers import _core, import_dataset

DATA = Path(__file__).resolve().parents[1] / "data"
D3RLPY = DATA / "d3rlpy_pendulum_random_slice.h5"  # 502 transitions once imported
NPZ = DATA / "sb_expert_pendulum_slice.npz"  # 597 transitions once imported
ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(ROOT / "examples"))
import import_dataset as cli  # noqa: E402

sys.path.pop(0)


def _entries(root: Path) -> list[str]:
    """Everything directly under the datasets root, hidden folders included."""
    return sorted(os.listdir(root)) if root.exists() else []


def _hidden(root: Path) -> list[str]:
    return [e for e in _entries(root) if e.startswith(".")]


def _one_line(capsys, args, *needles) -> str:
    """The importer's command line in-process: exit 2, exactly one `error:` line, no trace."""
    code = cli.main(args)
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.startswith("error:")]
    assert code == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "wrote" not in captured.out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _dead_pid() -> int:
    """The PID of a process that has exited (as a killed import's is)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- 1. two imports to one new id --------------------------------------------------------------


def test_two_imports_to_one_new_id_exactly_one_wins(root, monkeypatch):
    # While the first import writes its files, a second import of another file to the same
    # id completes. The first must then refuse (at the rename, under the lock) and leave the
    # second's dataset as it is; without the check it moved the second one aside.
    real_write, nested = _core._write_hdf5, []

    def write_while_another_import_finishes(*args):
        if not nested:
            nested.append(None)  # the second import's own write is not interleaved
            nested[0] = import_dataset(str(D3RLPY), "race/x-v0", env_id="Pendulum-v1")
        return real_write(*args)

    monkeypatch.setattr(_core, "_write_hdf5", write_while_another_import_finishes)
    with pytest.raises(DatasetExistsError, match="another import wrote it first"):
        import_dataset(str(NPZ), "race/x-v0", env_id="Pendulum-v1")
    assert nested and nested[0].total_episodes == 3
    assert load_transitions("race/x-v0")[0].rewards.shape == (502,)  # the winner's, untouched
    assert _hidden(root) == []  # the loser's hidden copy is gone


# --- 4. a full disk, and what killed imports leave ---------------------------------------------


def test_full_disk_in_the_writer_is_one_line_and_removes_the_hidden_folder(
    root, monkeypatch, capsys
):
    # A fake writer: the child process writes part of the dataset, then dies as h5py does on a
    # full disk (a segmentation fault after HDF5's errno-28 diagnostics).
    def full_disk_child(cmd, input, **kw):
        job = pickle.loads(input)
        os.makedirs(job["path"])
        with open(os.path.join(job["path"], "main_data.hdf5"), "wb") as f:
            f.write(b"\0" * 4096)
        diag = (
            b"HDF5-DIAG: Error detected in HDF5 (1.14.2) thread 0:\n"
            b"  #000: H5Fint.c line 2012 in H5F__flush(): unable to flush file\n"
            b"    major: Low-level I/O\n    minor: Write failed\n"
            b"  #001: H5FDsec2.c line 808 in H5FD__sec2_write(): file write failed: errno = 28, "
            b"error message = 'No space left on device'\n"
        )
        return subprocess.CompletedProcess(cmd, -11, b"", diag * 5)

    monkeypatch.setattr(_core.subprocess, "run", full_disk_child)
    line = _one_line(
        capsys, [str(NPZ), "--id", "full-v0", "--env", "Pendulum-v1"], "No space left on device"
    )
    assert "Nothing was written" in line
    assert _entries(root) == []  # the hidden folder, partial file and all, was removed


def test_too_little_free_space_is_refused_before_writing(root, monkeypatch):
    class Full:
        f_bavail, f_frsize = 10, 4096  # 40 kB free

    def no_child(*a, **k):
        raise AssertionError("the writer must not start on a disk that cannot hold the data")

    monkeypatch.setattr(_core.os, "statvfs", lambda path: Full())
    monkeypatch.setattr(_core.subprocess, "run", no_child)
    with pytest.raises(OutputWriteError, match="not enough space.*Nothing was written"):
        import_dataset(str(NPZ), "full-v0", env_id="Pendulum-v1")
    assert _entries(root) == []


def test_a_real_full_tmpfs_is_one_line(tmp_path, monkeypatch, capsys):
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mnt)],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    if proc is None or proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the fake writer tests cover it")
    try:
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(mnt))
        # Past the free-space check, as when another process fills the disk meanwhile: the
        # real writer (h5py in its child process) meets the full disk.
        monkeypatch.setattr(_core, "_check_free_space", lambda *a: None)
        _one_line(capsys, [str(D3RLPY), "--id", "full-v0", "--env", "Pendulum-v1"], "No space")
        assert os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False, timeout=20)


def test_what_killed_imports_left_is_cleaned_by_the_next_import(root):
    root.mkdir(parents=True)
    dead = _dead_pid()
    stale = root / f".import-{dead}-abc"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "main_data.hdf5").write_bytes(b"\0" * 100_000)
    # A killed --overwrite that had moved the old dataset aside: it is put back.
    aside = root / f".replaced-{dead}-def"
    (aside / "dataset").mkdir(parents=True)
    (aside / "id").write_text("ns/old-v0")
    (aside / "dataset" / "marker").write_text("the old dataset")
    live = root / f".import-{os.getpid()}-ghi"  # this process is alive: not stale
    live.mkdir()
    import_dataset(str(NPZ), "new-v0", env_id="Pendulum-v1")
    assert not stale.exists() and not aside.exists()
    assert (root / "ns" / "old-v0" / "marker").read_text() == "the old dataset"
    assert live.exists()


# --- 5, 7, 9. bad files and arguments: one line, exit 2, nothing written -----------------------


def _bad_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """(a bad file, the env id to import it with)."""
    if kind == "empty.npz":
        path = tmp_path / kind
        path.write_bytes(b"")
    elif kind == "text.npz":
        path = tmp_path / kind
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "half.npz":  # a half download
        raw = NPZ.read_bytes()
        path = tmp_path / kind
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "object.npz":
        z = dict(np.load(NPZ))
        z["obs"] = np.array([{"a": 1}] * 600, dtype=object)
        path = tmp_path / kind
        np.savez(path, **z)
    elif kind == "zero-d.npz":
        path = tmp_path / kind
        np.savez(path, **{k: np.array(1.0) for k in np.load(NPZ).files})
    elif kind == "ragged.pkl":
        path = tmp_path / kind
        path_ = dict(
            observation=[[0.0, 1.0], [2.0]],
            action=[[0.0], [0.0]],
            reward=[1.0, 1.0],
            next_observation=[[0.0, 1.0], [2.0, 3.0]],
            terminal=[0, 1],
        )
        with open(path, "wb") as f:
            pickle.dump([path_], f)
        return path, "Hopper-v4"
    elif kind == "group.hdf5":
        path = tmp_path / kind
        with h5py.File(path, "w") as f:
            f.create_group("observations")
            for k in ("actions", "rewards", "terminals", "timeouts"):
                f[k] = np.zeros(3)
    elif kind == "zero-rows.hdf5":
        path = tmp_path / kind
        with h5py.File(path, "w") as f:
            f["observations"] = np.zeros((0, 3))
            f["actions"] = np.zeros((0, 1))
            for k in ("rewards", "terminals", "timeouts"):
                f[k] = np.zeros(0)
    else:
        raise ValueError(kind)
    return path, "Pendulum-v1"


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("empty.npz", "empty"),
        ("text.npz", "not an .npz"),
        ("half.npz", "not a complete .npz"),
        ("object.npz", "Python objects"),
        ("zero-d.npz", "0-d array"),
        ("ragged.pkl", "ragged"),
        ("group.hdf5", "HDF5 group"),
        ("zero-rows.hdf5", "no rows"),
    ],
)
def test_bad_files_are_one_line_and_write_nothing(root, tmp_path, capsys, kind, needle):
    path, env_id = _bad_file(tmp_path, kind)
    _one_line(capsys, [str(path), "--id", "bad-v0", "--env", env_id], path.name, needle)
    assert _entries(root) == []


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--id", "ok-v0", "--env", "CartPole-v1"], ["CartPole-v1", "Discrete", "continuous"]),
        (["--id", "test/x-v-1", "--env", "Pendulum-v1"], ["Malformed dataset id", "x-v-1"]),
        (["--id", "../../x-v0", "--env", "Pendulum-v1"], ["Malformed dataset id", "../../x-v0"]),
        (["--id", "ok-v0", "--env", "Pendulum-v1", "--ref-min", "nan", "--ref-max", "nan"],
         ["--ref-min", "finite", "nan"]),
        (["--id", "ok-v0", "--env", "Pendulum-v1", "--ref-min=-inf", "--ref-max", "0"],
         ["--ref-min", "finite", "-inf"]),
        (["--id", "ok-v0", "--env", "Pendulum-v1", "--ref-min", "0", "--ref-max", "inf"],
         ["--ref-max", "finite"]),
        (["--id", "ok-v0", "--env", "Pendulum-v1", "--check-replay", "-5"],
         ["--check-replay", "-5"]),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_and_write_nothing(root, capsys, args, needles):
    _one_line(capsys, [str(NPZ), *args], *needles)
    assert _entries(root) == []


def test_read_only_datasets_root_is_one_line(root, monkeypatch, capsys):
    # As a read-only file system answers (the tests may run as root, for whom a chmod does not
    # stop a write, so the refusal is the file system's: EROFS).
    root.mkdir(parents=True)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(root))

    monkeypatch.setattr(_core.tempfile, "mkdtemp", read_only)
    _one_line(
        capsys,
        [str(NPZ), "--id", "ro-v0", "--env", "Pendulum-v1"],
        "Read-only file system",
        "MINARI_DATASETS_PATH",
    )
    assert _entries(root) == []


# --- 10. permissions ---------------------------------------------------------------------------


def test_imported_dataset_follows_the_umask(root):
    old = os.umask(0o027)
    try:
        import_dataset(str(NPZ), "perm/x-v0", env_id="Pendulum-v1")
    finally:
        os.umask(old)
    folder = root / "perm" / "x-v0"
    modes = {p: p.stat().st_mode & 0o777 for p in [folder, *folder.rglob("*")]}
    for path, mode in modes.items():
        want = 0o750 if path.is_dir() else 0o640  # what mkdir and open give under umask 027
        assert mode == want, f"{path.relative_to(root)}: {oct(mode)}"
    assert (root / "perm").stat().st_mode & 0o777 == 0o750
