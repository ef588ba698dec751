"""`benchmarks/real_data.py`'s cache and report, with the training replaced by a stand-in that
writes a summary (the real path is smoke-tested in tests/test_benchmarks_smoke.py): the cache
key, a finished run read and never re-run, a killed one resumed, only new seeds trained, and the
report's numbers against the statistics computed directly."""

import argparse
import importlib.util
import json
import pathlib

import numpy as np
import pytest

import sdepolicy.app
from sdepolicy.app import RunInterruptedError, compare, describe

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rd():
    spec = importlib.util.spec_from_file_location("real_data", ROOT / "benchmarks/real_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(transitions=597):
    return {"ids": ("real/x-v0",), "file": "x.npz", "sources": {"x.npz": "ab" * 32},
            "env_id": "Pendulum-v1", "ref": (-1229.0, -150.0), "episodes": 3,
            "transitions": transitions, "returns": np.array([-200.0, -300.0])}  # fmt: skip


def _args(**kw):
    base = dict(steps=100, eval_every=50, eval_episodes=2, final_eval_episodes=4,
                overrides={}, reward_transform=None, reps=2000)  # fmt: skip
    return argparse.Namespace(**(base | kw))


def test_cache_key_changes_with_what_decides_the_result(rd):
    key = lambda name="d", algo="bc", data=None, **kw: rd.cell_record(
        name, data or _data(), algo, _args(**kw)
    )["key"]
    base = key()
    assert key() == base  # deterministic
    others = [
        key(name="e"),
        key(algo="erdpqe"),
        key(data=_data(transitions=598)),
        key(steps=200),
        key(eval_every=25),
        key(final_eval_episodes=20),
        key(overrides={"lr": "1e-3"}),
        key(reward_transform="scale"),
    ]
    assert len({base, *others}) == len(others) + 1
    # An option another agent has does not change BC's key (`--set alpha=0` is ER-DP-QE's).
    assert key(overrides={"alpha": "0"}) == base
    # The budget in the key is the resolved one: the default final evaluation is 20 episodes.
    cell = rd.cell_record("d", _data(), "bc", _args(final_eval_episodes=None, eval_episodes=None))
    assert cell["budget"]["final_eval_episodes"] == 20 and cell["budget"]["steps"] == 100


class FakeRuns:
    """Stands in for `sdepolicy.app.run`: records its calls, writes a completed summary whose
    scores are a function of the seed, or is killed after its checkpoint."""

    def __init__(self):
        self.calls, self.kill = [], False

    def __call__(self, spec):
        out = pathlib.Path(spec.out)
        self.calls.append((spec.seeds[0], spec.resume))
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoint.eqx").write_text("x")
        if self.kill:
            raise RunInterruptedError("interrupted; the last checkpoint is ...")
        seed = spec.seeds[0]
        evals = [{"step": s, "returns": [0.0], "normalized": [float(seed * 10 + s / 50)]}
                 for s in (50, 100)]  # fmt: skip
        norm = lambda v: {"mean": v, "std": 0.0}
        summary = {
            "status": "completed", "steps": 100, "evaluations": evals,
            "last_evaluation": {"step": 100, "episodes": 4, "normalized": norm(seed * 10 + 2.0)},
            "last_quarter": {"normalized": norm(seed * 10 + 2.0)},
            "best_evaluation": {"normalized": norm(seed * 10 + 2.0)},
            "timing": {"train_s": 9.0, "eval_s": 1.0}, "critic_divergence": {"diverged": False},
        }  # fmt: skip
        (out / "summary.json").write_text(json.dumps(summary))
        return summary


def test_finished_runs_are_read_killed_ones_resumed_new_seeds_trained(rd, tmp_path, monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(sdepolicy.app, "run", fake)
    cell = rd.cell_record("d", _data(), "bc", _args())
    rows = [rd.run_one(cell, _data(), s, _args(), tmp_path) for s in (0, 1)]
    assert fake.calls == [(0, False), (1, False)]
    assert [r["cached"] for r in rows] == [False, False] and rows[1]["last"] == 12.0
    # Again with one seed more: only seed 2 trains.
    rows = [rd.run_one(cell, _data(), s, _args(), tmp_path) for s in (0, 1, 2)]
    assert fake.calls[2:] == [(2, False)] and [r["cached"] for r in rows] == [True, True, False]
    # A run killed after its checkpoint is resumed by the next campaign.
    fake.kill = True
    with pytest.raises(RunInterruptedError):  # stops the campaign, is not recorded
        rd.run_one(cell, _data(), 3, _args(), tmp_path)
    fake.kill = False
    row = rd.run_one(cell, _data(), 3, _args(), tmp_path)
    assert fake.calls[-1] == (3, True) and row["resumed"]
    # A folder left without a checkpoint (stopped before it) starts afresh.
    stale = rd.cell_dir(tmp_path, cell) / "seed-4"
    stale.mkdir()
    (stale / "metrics.csv").write_text("step\n")
    rd.run_one(cell, _data(), 4, _args(), tmp_path)
    assert fake.calls[-1] == (4, False)
    assert (rd.cell_dir(tmp_path, cell) / "seed-4" / "summary.json").exists()


def _rows(rd, algo, dataset, scores, key):
    return [
        {
            "dataset": dataset,
            "algo": algo,
            "key": key,
            "seed": i,
            "status": "completed",
            "last": float(v),
            "last_quarter": float(v) - 1.0,
            "best": float(v) + 1.0,
            "train_s": 8.0,
            "eval_s": 2.0,
        }  # fmt: skip
        for i, v in enumerate(scores)
    ]


def test_report_matches_the_statistics_computed_directly(rd, tmp_path):
    rng = np.random.default_rng(0)
    scores = {
        (algo, d): rng.normal(mu, 10, 5)
        for algo, mu in (("bc", 50), ("diffusion-ql", 40), ("erdpqe", 60))
        for d in ("pendulum-random", "pendulum-expert")
    }
    cells, rows = [], []
    for (algo, d), v in scores.items():
        key = f"{algo}-{d}"
        cells.append({"dataset": d, "algo": algo, "key": key, "overrides": {},
                      "budget": {"steps": 100}, "reward_transform": "standardize",
                      "data_info": {"normalized": 42.0, "mean_return": -700.0},
                      "data": {"transitions": 10}})  # fmt: skip
        rows += _rows(rd, algo, d, v, key)
    names = ["pendulum-random", "pendulum-expert"]
    report = rd.build_report(rows, cells, names, reps=2000)
    assert report["agents"] == ["bc", "diffusion-ql", "erdpqe"]
    erdpqe = {d: scores[("erdpqe", d)] for d in names}
    bc = {d: scores[("bc", d)] for d in names}
    direct = describe(erdpqe, reps=2000)
    got = report["stats"]["last"]["erdpqe"]
    assert got["aggregate"]["iqm"] == direct["aggregate"]["iqm"]
    assert got["per_dataset"]["pendulum-expert"]["mean"].point == pytest.approx(
        scores[("erdpqe", "pendulum-expert")].mean()
    )
    quarter = report["stats"]["last_quarter"]["erdpqe"]["aggregate"]["mean"].point
    assert quarter == pytest.approx(got["aggregate"]["mean"].point - 1.0)
    imp = report["improvement"]["last"]
    assert set(imp) == {"P(erdpqe > bc)", "P(erdpqe > diffusion-ql)"}
    assert imp["P(erdpqe > bc)"]["aggregate"] == compare(erdpqe, bc, reps=2000)["aggregate"]
    assert report["time"]["eval_share"] == pytest.approx(0.2)
    assert any(line.startswith("| **aggregate**") for line in report["tables"])
    # The profiles' PNG and the report files.
    args = argparse.Namespace(overrides={}, reward_transform=None, steps=100, reps=2000)
    payload = rd.write_report(tmp_path / "r.json", cells, rows, names, args, [0, 1], 1.0)
    assert pathlib.Path(payload["profiles_png"]).stat().st_size > 10_000
    assert (tmp_path / "r.md").read_text().count("| **aggregate**") == 4
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk["report"]["improvement"]["last"]["P(erdpqe > bc)"]["aggregate"]["point"] == (
        imp["P(erdpqe > bc)"]["aggregate"].point
    )


def test_two_configurations_of_one_agent_get_their_own_labels(rd):
    cell = lambda key, over, steps=100: {"algo": "erdpqe", "key": key, "overrides": over,
                                         "budget": {"steps": steps},
                                         "reward_transform": "standardize"}  # fmt: skip
    labels = rd._label_cells([cell("a", {}), cell("b", {"eta": "1"}), cell("c", {}, 200)])
    # The settings that differ between the cells: the overrides, and the steps since they vary.
    assert labels == {
        "a": "erdpqe[steps=100]",
        "b": "erdpqe[eta=1,steps=100]",
        "c": "erdpqe[steps=200]",
    }
    assert rd._label_cells([cell("a", {}), {**cell("z", {}), "algo": "bc"}]) == {
        "a": "erdpqe", "z": "bc"}  # fmt: skip


def test_report_only_reads_the_finished_runs(rd, tmp_path, monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(sdepolicy.app, "run", fake)
    for algo in ("bc", "erdpqe"):
        cell = rd.cell_record("pendulum-expert", _data(), algo, _args())
        folder = rd.cell_dir(tmp_path, cell)
        folder.mkdir(parents=True)
        (folder / "cell.json").write_text(json.dumps(cell, default=str))
        for s in (0, 1, 2):
            rd.run_one(cell, _data(), s, _args(), tmp_path)
    (folder / "seed-3").mkdir()  # started, not finished
    found = rd.read_cells(tmp_path)
    assert [c["algo"] for c, _ in found] == ["bc", "erdpqe"]
    assert [r["status"] for r in found[1][1]] == ["completed"] * 3 + ["unfinished"]
    code = rd.main(["--report-only", "--work", str(tmp_path), "--reps", "500", "--seeds", "0", "1"])
    assert code == 0 and len(fake.calls) == 6  # nothing trained
    payload = json.loads((tmp_path / "real_data.json").read_text())
    stats = payload["report"]["stats"]["last"]
    assert stats["erdpqe"]["aggregate"]["runs"] == 2  # --seeds 0 1 selects two of three
    assert stats["erdpqe"]["aggregate"]["mean"]["point"] == pytest.approx((2.0 + 12.0) / 2)
