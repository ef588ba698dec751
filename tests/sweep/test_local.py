"""The local backend on tiny runs: a sweep runs, a failing run is reported (its error line) and
does not stop the others, a re-launch reads the finished runs and trains nothing, Ctrl-C leaves
a run that the next launch resumes, and the report has every run's status."""

import json
import pathlib

import pytest

import sdepolicy.app
from sdepolicy.app import RunInterruptedError
from sdepolicy.sweep import load_sweep, plan, run_sweep
from sdepolicy.sweep.__main__ import main


@pytest.fixture(scope="module")
def first(sweep_file):
    sweep = load_sweep(sweep_file)
    plan, rows = run_sweep(sweep)
    return sweep, plan, rows


def test_a_sweep_runs_and_a_failing_run_does_not_stop_the_others(first):
    sweep, plan, rows = first
    by = {(r["dataset"], r["seed"]): r for r in rows}
    assert set(by) == {("tiny", 0), ("tiny", 1), ("broken", 0), ("broken", 1)}
    # The broken source fails inside each of its runs, with the app's one line.
    for seed in (0, 1):
        row = by[("broken", seed)]
        assert row["status"] == "failed" and "cannot be concatenated" in row["message"]
    for seed in (0, 1):
        row = by[("tiny", seed)]
        assert row["status"] == "completed" and not row["cached"] and row["steps"] == 20
        folder = next(r.folder for r in plan.runs if (r.dataset, r.seed) == ("tiny", seed))
        summary = json.loads((pathlib.Path(folder) / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["seeds"] == [seed]
    # Two seeds, two runs with their own results.
    assert by[("tiny", 0)]["curve"] != by[("tiny", 1)]["curve"]


def test_a_relaunched_sweep_trains_nothing_finished(first, monkeypatch):
    sweep, _, _ = first
    calls = []
    real = sdepolicy.app.run
    monkeypatch.setattr(
        sdepolicy.app, "run", lambda spec, **kw: calls.append(spec) or real(spec, **kw)
    )
    _, rows = run_sweep(sweep)
    tiny = [r for r in rows if r["dataset"] == "tiny"]
    assert [r["cached"] for r in tiny] == [True, True]
    # Only the failed runs run again (and fail again); the finished ones are read.
    assert sorted(s.seeds[0] for s in calls) == [0, 1]
    assert all("broken" in s.out for s in calls)


def test_ctrl_c_leaves_a_run_the_next_launch_resumes(first, tmp_path):
    sweep, _, _ = first
    sweep = type(sweep)(**{**sweep.__dict__, "out": str(tmp_path / "out"), "seeds": (2,),
                           "sources": sweep.sources[:1]})  # fmt: skip
    seen = []

    def ctrl_c(run, step):
        seen.append(step)
        raise KeyboardInterrupt

    with pytest.raises(RunInterruptedError):
        run_sweep(sweep, on_checkpoint=ctrl_c)
    assert seen == [10]
    (run,) = plan(sweep, write=False).runs
    assert (pathlib.Path(run.folder) / "checkpoint.eqx").is_file()
    assert not (pathlib.Path(run.folder) / "summary.json").exists()
    _, rows = run_sweep(sweep, on_checkpoint=lambda run, step: seen.append(step))
    (row,) = rows
    assert row["status"] == "completed" and row["resumed"] and seen == [10, 20]


def test_the_report_has_the_statistics_and_every_runs_status(first, capsys):
    sweep, _, _ = first
    assert main([str(sweep.out), "--report-only", "--reps", "200"]) == 1  # two runs failed
    printed = capsys.readouterr().out
    assert "**Runs**: 2 completed, 2 failed" in printed  # what the folders hold
    assert main([str(sweep.out).rsplit("/", 1)[0] + "/sweep.toml", "--reps", "200"]) == 1
    printed = capsys.readouterr().out
    assert "**Runs**: 2 completed, 2 failed" in printed and "cached" in printed
    md = (pathlib.Path(sweep.out) / "report.md").read_text()
    assert "| broken | bc | 0 | failed | " in md and "cannot be concatenated" in md
    assert "| **aggregate**" in md
    payload = json.loads((pathlib.Path(sweep.out) / "report.json").read_text())
    assert payload["report"]["stats"]["last"]["bc"]["aggregate"]["runs"] == 2
    assert {r["status"] for r in payload["runs"]} == {"completed", "failed"}
