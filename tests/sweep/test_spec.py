"""A sweep file expanded: its settings (the grid), its cells (one per dataset, agent and
setting that differ in what decides the result) and its runs (one folder per seed); and a bad
file refused in one line that names the key."""

import json
import pathlib

import numpy as np
import pytest

from sdepolicy.sweep import Source, SweepFileError, load_sweep, plan

FILE = """
out = "{out}"
agents = ["bc", "erdpqe"]
seeds = [0, 3]
datasets = ["real/pendulum-expert-v0", {{name = "mixed", ids = ["real/a-v0", "real/b-v0"]}}]

[budget]
steps = 100
eval_every = 50

[set]
hidden = 16
critic_layer_sizes = [8, 8]

[grid]
eta = [0.2, 1.0]
batch_size = [16, 32]
"""


def _data(ids, transitions=597):
    return {"ids": tuple(ids), "file": "x", "sources": {i: "ab" * 32 for i in ids},
            "env_id": "Pendulum-v1", "ref": (-1229.0, -150.0), "episodes": 3,
            "transitions": transitions, "returns": np.array([-200.0, -300.0])}  # fmt: skip


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(FILE.format(out=tmp_path / "out"))
    return load_sweep(path)


def test_a_sweep_file_is_read(sweep, tmp_path):
    assert sweep.out == str(tmp_path / "out")
    assert sweep.sources == (
        Source(name="real-pendulum-expert-v0", ids=("real/pendulum-expert-v0",)),
        Source(name="mixed", ids=("real/a-v0", "real/b-v0")),
    )
    assert sweep.agents == ("bc", "erdpqe") and sweep.seeds == (0, 3)
    assert (sweep.steps, sweep.eval_every, sweep.eval_episodes) == (100, 50, None)
    # Values as `--set` gives them: strings, a list as "8,8".
    assert sweep.overrides == {"hidden": "16", "critic_layer_sizes": "8,8"}
    settings = sweep.settings()
    assert [s.overrides["eta"] + "/" + s.overrides["batch_size"] for s in settings] == [
        "0.2/16", "0.2/32", "1.0/16", "1.0/32"]  # fmt: skip
    assert all(s.overrides["hidden"] == "16" and s.steps == 100 for s in settings)


def test_a_sweep_expands_into_cells_and_run_folders(sweep):
    data = {"real-pendulum-expert-v0": _data(["real/pendulum-expert-v0"]),
            "mixed": _data(["real/a-v0", "real/b-v0"], 1200)}  # fmt: skip
    sweep = type(sweep)(**{**sweep.__dict__, "overrides": {"hidden": "16"}})
    p = plan(sweep, data=data)
    # ER-DP-QE: 2 datasets x 4 grid points; BC has no `eta`: 2 datasets x 2 batch sizes.
    by = {(c["dataset"], c["algo"]) for c in p.cells}
    assert len(by) == 4
    count = lambda algo: sum(c["algo"] == algo for c in p.cells)
    assert count("erdpqe") == 8 and count("bc") == 4
    assert len({c["key"] for c in p.cells}) == 12 and not p.problems
    assert len(p.runs) == 12 * 2
    out = pathlib.Path(sweep.out)
    for run in p.runs:
        folder = pathlib.Path(run.folder)
        assert folder == out / "runs" / run.dataset / f"{run.algo}-{run.key}" / f"seed-{run.seed}"
        assert run.spec.seeds == (run.seed,) and run.spec.out == run.folder
        assert run.spec.steps == 100 and run.spec.steps_per_call == 100
        assert run.spec.dataset == data[run.dataset]["ids"]
        if run.algo == "bc":
            assert "eta" not in run.spec.overrides
    # cell.json beside the seeds, the record whose hash is the key.
    for cell in p.cells:
        path = out / "runs" / cell["dataset"] / f"{cell['algo']}-{cell['key']}" / "cell.json"
        assert json.loads(path.read_text())["key"] == cell["key"]
    assert sorted({r.seed for r in p.runs}) == [0, 3]


def test_a_setting_an_agent_refuses_is_reported_not_fatal(sweep):
    data = {"real-pendulum-expert-v0": _data(["real/pendulum-expert-v0"]),
            "mixed": _data(["real/a-v0", "real/b-v0"])}  # fmt: skip
    bad = type(sweep)(**{**sweep.__dict__, "overrides": {"hidden": "many"}, "grid": {}})
    p = plan(bad, data=data, write=False)
    assert not p.cells and len(p.problems) == 4  # 2 datasets x 2 agents
    assert all(r["status"] == "failed" and "hidden" in r["message"] for r in p.problems)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('agents = ["bc"]\ndatasets = ["a/b-v0"]', "`out`"),
        ('out = "x"\nagents = ["bc"]', "nothing to train on"),
        ('out = "x"\ndatasets = ["a/b-v0"]\nagents = ["sac"]', "unknown agent"),
        ('out = "x"\ndatasets = ["a/b-v0"]\nseeds = [1, 1]', "`seeds`"),
        ('out = "x"\ndatasets = ["a/b-v0"]\n[budget]\nsteps = 0', "[budget] steps"),
        ('out = "x"\ndatasets = ["a/b-v0"]\n[grid]\neta = 1', "[grid] eta"),
        ('out = "x"\ndatasets = ["a/b-v0"]\nseed = [1]', "unknown key(s) seed"),
        ('out = "x"\ndatasets = ["a/b-v0"]\nreward_transform = "x"', "reward_transform"),
        ('out = "x"\ndatasets = [', "not valid TOML"),
    ],
)
def test_a_bad_sweep_file_is_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SweepFileError) as e:
        load_sweep(path)
    assert needle in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)
