"""`benchmarks/curves.py` on a campaign folder written here: the plateau step, the final value
and the critics' late-loss ratio are the numbers worked out by hand for these curves."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import curves  # noqa: E402


def _seed(folder: pathlib.Path, scores, losses, period=1000):
    folder.mkdir(parents=True)
    evaluations = [
        {"step": period * (i + 1), "normalized": [s], "returns": [0.0], "episodes": 1}
        for i, s in enumerate(scores)
    ]
    (folder / "summary.json").write_text(
        json.dumps({"status": "completed", "evaluations": evaluations})
    )
    rows = ["step,seed,critic_loss"]
    for i, loss in enumerate(losses):
        # Two rows per period, averaging to `loss`.
        for step, value in ((period * i + period // 2, loss - 0.5), (period * (i + 1), loss + 0.5)):
            rows.append(f"{step},0,{value}")
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def work(tmp_path):
    cell = tmp_path / "runs" / "toy-set" / "erdpqe-abc"
    cell.mkdir(parents=True)
    (cell / "cell.json").write_text(
        json.dumps({"dataset": "toy-set", "algo": "erdpqe", "overrides": {}, "budget": {}})
    )
    # Mean curve: 10, 50, 90, 80, 99, 100, 101, 100: final (last quarter, steps >= 6000) 100.33;
    # within 5 points from step 5000 on (99), not before (80 at step 4000).
    _seed(cell / "seed-0", [0, 40, 80, 70, 98, 100, 102, 100], [4, 2, 1, 1, 1, 2, 3, 3])
    _seed(cell / "seed-1", [20, 60, 100, 90, 100, 100, 100, 100], [4, 2, 1, 1, 2, 2, 2, 2])
    return tmp_path


def test_plateau_final_value_and_late_critic_loss(work, tmp_path):
    campaign = curves.read_campaign(work, None)
    (agent,) = campaign["toy-set"]
    result = curves.analyse(agent, band=5.0)
    assert result["seeds"] == [0, 1]
    assert result["final"] == pytest.approx((100.0 + 101.0 + 100.0) / 3)
    assert result["plateau_step"] == 5000
    # Seed 0: later half (steps 5000-8000) losses 1, 2, 3, 3; last quarter (2 periods) 3 / min 1.
    # Seed 1: 2, 2, 2, 2 -> 1.
    assert result["critic_late_ratio"] == pytest.approx([3.0, 1.0])
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "curves.json").write_text('{"other-set": {"kept": true}}')
    assert curves.main(["--work", str(work), "--out", str(tmp_path / "figs")]) == 0
    written = json.loads((tmp_path / "figs" / "curves.json").read_text())
    assert set(written) == {"other-set", "toy-set"}  # a dataset not analysed keeps its entry
    assert (tmp_path / "figs" / "curves_toy-set.png").stat().st_size > 0
    assert curves.main(["--work", str(tmp_path / "nothing")]) == 2


def test_a_curve_still_moving_at_its_end_has_no_plateau(work):
    (agent,) = curves.read_campaign(work, None)["toy-set"]
    moving = {**agent, "seeds": [
        {**s, "evaluations": [(step, 0.0 if i < 7 else 60.0)
                              for i, (step, _) in enumerate(s["evaluations"])]}
        for s in agent["seeds"]]}  # fmt: skip
    # Last quarter (steps 6000-8000): 0, 0, 60 -> 20; the last evaluation, 60, is 40 away.
    result = curves.analyse(moving, band=5.0)
    assert result["final"] == pytest.approx(20.0) and result["plateau_step"] is None
    assert curves._plateau(result).startswith("none")
