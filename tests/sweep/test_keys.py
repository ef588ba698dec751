"""The cache key of a fixed cell, pinned to the value `benchmarks/real_data.py` computed before
the sweep package took over its cache (commit 869ce33): a campaign's finished runs must be found
by the code after it. A change of a project default (a config field's value) changes the keys
on purpose (docs/protocol.md §3: new runs); then these pins move with it, nothing else does."""

import argparse

import numpy as np
import pytest

from sdepolicy.sweep import Settings, cell_dir, cell_record

DATA = {"ids": ("real/x-v0",), "file": "x.npz", "sources": {"x.npz": "ab" * 32},
        "env_id": "Pendulum-v1", "ref": (-1229.0, -150.0), "episodes": 3,
        "transitions": 597, "returns": np.array([-200.0, -300.0])}  # fmt: skip
BUDGET = dict(steps=100, eval_every=50, eval_episodes=2, final_eval_episodes=4)
NO_BUDGET = dict(steps=None, eval_every=None, eval_episodes=None, final_eval_episodes=None)
# name -> (algo, settings, the key real_data.py gave at 869ce33)
PINNED = {
    "bc": ("bc", dict(BUDGET), "7970b438f182"),
    "erdpqe_eta": ("erdpqe", dict(BUDGET, overrides={"eta": "1", "alpha": "0"}), "0ba668ed2d7b"),
    "dql_defaults": ("diffusion-ql", dict(NO_BUDGET), "933ce9c31f06"),
    "erdpqe_scale": (
        "erdpqe",
        dict(BUDGET, steps=50000, eval_every=2500, reward_transform="scale"),
        "6da82c71b01e",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_key_of_a_fixed_cell_is_pinned(name, tmp_path):
    algo, kw, key = PINNED[name]
    kw = {"overrides": {}, "reward_transform": None} | kw
    # As the sweep builds it, and as real_data.py passes its parsed arguments.
    for settings in (Settings(**kw), argparse.Namespace(**kw, reps=2000)):
        cell = cell_record("pendulum-expert", DATA, algo, settings)
        assert cell["key"] == key
    assert cell_dir(tmp_path, cell) == tmp_path / "runs" / "pendulum-expert" / f"{algo}-{key}"
