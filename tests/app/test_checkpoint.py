import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from sdepolicy.app import CheckpointMismatchError
from sdepolicy.app._checkpoint import config_fingerprint, load_checkpoint, save_checkpoint


def _tree(key, width=4):
    return {"mlp": eqx.nn.MLP(3, 2, width, 2, key=key), "step": jnp.array(7)}


def test_round_trip(tmp_path):
    tree = _tree(jax.random.key(0))
    fp = config_fingerprint({"task": "x", "lr": 3e-4})
    save_checkpoint(tmp_path / "ckpt.eqx", tree, step=7, fingerprint=fp)
    like = _tree(jax.random.key(1))
    restored, header = load_checkpoint(tmp_path / "ckpt.eqx", like, fingerprint=fp)
    assert header["step"] == 7
    arrays = lambda t: jax.tree.leaves(eqx.filter(t, eqx.is_array))
    for a, b in zip(arrays(tree), arrays(restored), strict=True):
        assert jnp.array_equal(a, b)
    assert not (tmp_path / "ckpt.eqx.tmp").exists()


def test_other_configuration_is_refused(tmp_path):
    tree = _tree(jax.random.key(0))
    save_checkpoint(tmp_path / "c", tree, step=1, fingerprint=config_fingerprint({"lr": 1}))
    with pytest.raises(CheckpointMismatchError, match="different configuration"):
        load_checkpoint(tmp_path / "c", tree, fingerprint=config_fingerprint({"lr": 2}))


def test_other_shapes_are_refused(tmp_path):
    fp = config_fingerprint({})
    save_checkpoint(tmp_path / "c", _tree(jax.random.key(0)), step=1, fingerprint=fp)
    with pytest.raises(CheckpointMismatchError, match="shapes"):
        load_checkpoint(tmp_path / "c", _tree(jax.random.key(0), width=8), fingerprint=fp)


def test_garbage_file_is_refused(tmp_path):
    (tmp_path / "c").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(tmp_path / "c", _tree(jax.random.key(0)), fingerprint="x")


def _payload_offset(path):
    with open(path, "rb") as f:
        return len(f.readline())


def test_flipped_payload_bytes_are_refused(tmp_path):
    tree, fp = _tree(jax.random.key(0)), config_fingerprint({})
    save_checkpoint(tmp_path / "c", tree, step=1, fingerprint=fp)
    raw = bytearray((tmp_path / "c").read_bytes())
    start = _payload_offset(tmp_path / "c")
    for i in range(16):  # sixteen bytes inside the arrays, far from any structure
        raw[len(raw) - 40 - i] ^= 0xFF
    assert start < len(raw) - 60
    (tmp_path / "c").write_bytes(bytes(raw))
    with pytest.raises(CheckpointMismatchError, match="corrupt"):
        load_checkpoint(tmp_path / "c", tree, fingerprint=fp)


def test_truncated_payload_is_one_clear_error(tmp_path):
    tree, fp = _tree(jax.random.key(0)), config_fingerprint({})
    save_checkpoint(tmp_path / "c", tree, step=1, fingerprint=fp)
    raw = (tmp_path / "c").read_bytes()
    (tmp_path / "c").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CheckpointMismatchError, match="truncated"):
        load_checkpoint(tmp_path / "c", tree, fingerprint=fp)


def test_failed_write_keeps_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    from sdepolicy.app import _checkpoint as checkpoint

    tree, fp = _tree(jax.random.key(0)), config_fingerprint({})
    save_checkpoint(tmp_path / "c", tree, step=1, fingerprint=fp)
    before = (tmp_path / "c").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "c", tree, step=2, fingerprint=fp)
    assert (tmp_path / "c").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_mismatch_names_the_setting_that_differs(tmp_path):
    tree = _tree(jax.random.key(0))
    old = {"config": {"eta": 1.0, "hidden": 16}, "seeds": [0]}
    new = {"config": {"eta": 3.0, "hidden": 16}, "seeds": [0]}
    save_checkpoint(
        tmp_path / "c", tree, step=1, fingerprint=config_fingerprint(old), description=old
    )
    with pytest.raises(CheckpointMismatchError, match=r"config\.eta: 1\.0 there, 3\.0 here") as e:
        load_checkpoint(tmp_path / "c", tree, fingerprint=config_fingerprint(new), description=new)
    assert "drop --resume" not in str(e.value)
