import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from sdepolicy.rl.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint
from sdepolicy.rl.errors import CheckpointMismatchError


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
