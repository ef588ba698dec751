"""The local backend on tiny runs: a sweep runs, a failing run is reported (its error line) and
does not stop the others, a re-launch reads the finished runs and trains nothing, Ctrl-C leaves
a run that the next launch resumes, and the report has every run's status."""

import _thread
import dataclasses
import json
import os
import pathlib
import threading
import time

import pytest

import sdepolicy.app
from sdepolicy.app import RunInterruptedError
from sdepolicy.sweep import load_sweep, plan, run_sweep
from sdepolicy.sweep._cells import busy, finished
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


# --- jobs > 1: the runs in worker processes -----------------------------------------------------
# The callbacks below run in the workers, so they are module-level (picklable) and talk to the
# test through files named in the environment the workers inherit.


def _log_checkpoint(run, step):
    with open(os.environ["SDEPOLICY_TEST_LOG"], "a") as f:
        f.write(f"{run.dataset} {run.seed} {step} {os.getpid()}\n")


def _pause_after_first_checkpoint(run, step):
    if step == 10:
        pathlib.Path(os.environ["SDEPOLICY_TEST_MARKER"]).touch()
        time.sleep(30)  # where a long run would still be training when Ctrl-C comes


def _key(row):
    return row["dataset"], row["seed"]


def test_two_jobs_train_every_run_in_worker_processes_with_the_same_results(
    first, tmp_path, monkeypatch
):
    sweep, _, sequential = first
    log = tmp_path / "checkpoints.log"
    monkeypatch.setenv("SDEPOLICY_TEST_LOG", str(log))
    sweep = dataclasses.replace(sweep, out=str(tmp_path / "out"))
    _, rows = run_sweep(sweep, jobs=2, on_checkpoint=_log_checkpoint)
    assert [_key(r) for r in rows] == [_key(r) for r in sequential]  # the plan's order
    for got, want in zip(rows, sequential, strict=True):
        assert got["status"] == want["status"] and not got.get("cached")
        if want["status"] == "completed":  # the same numbers as the runs made in one process
            assert got["curve"] == want["curve"] and got["last"] == want["last"]
        else:
            assert got["message"] == want["message"]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted((d, int(s), int(k)) for d, s, k, _ in lines) == [
        ("tiny", 0, 10), ("tiny", 0, 20), ("tiny", 1, 10), ("tiny", 1, 20)]  # fmt: skip
    assert str(os.getpid()) not in {pid for *_, pid in lines}  # trained in the workers


def test_ctrl_c_with_two_jobs_leaves_every_run_resumable(first, tmp_path, monkeypatch):
    sweep, _, _ = first
    sweep = dataclasses.replace(sweep, out=str(tmp_path / "out"), sources=sweep.sources[:1],
                                steps=40)  # fmt: skip
    marker, log = tmp_path / "first-checkpoint", tmp_path / "again.log"
    monkeypatch.setenv("SDEPOLICY_TEST_MARKER", str(marker))
    monkeypatch.setenv("SDEPOLICY_TEST_LOG", str(log))

    def press_ctrl_c():  # here, in the parent: a KeyboardInterrupt as `kill -INT <parent>` gives
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    t0 = time.time()
    with pytest.raises(RunInterruptedError, match="each keeps its last checkpoint"):
        run_sweep(sweep, jobs=2, on_checkpoint=_pause_after_first_checkpoint)
    assert time.time() - t0 < 100  # the Ctrl-C reached the paused worker: it did not wait 30 s
    folders = [pathlib.Path(r.folder) for r in plan(sweep, write=False).runs]
    assert all(finished(f) is None for f in folders)  # 40 steps: neither run got to its end
    assert any((f / "checkpoint.eqx").is_file() for f in folders)
    assert not any(busy(f) for f in folders)  # every worker let go of its run's lock

    _, rows = run_sweep(sweep, jobs=2, on_checkpoint=_log_checkpoint)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    steps = {tuple(map(int, line.split()[1:3])) for line in log.read_text().splitlines()}
    resumed = [r["seed"] for r in rows if r.get("resumed")]
    assert resumed  # continued from step 10, not from 0
    for seed in resumed:
        assert (seed, 10) not in steps and (seed, 40) in steps


def test_jobs_is_checked(first):
    sweep, _, _ = first
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(sweep, jobs=0)
    with pytest.raises(ValueError, match="local backend"):
        run_sweep(sweep, backend="ray", jobs=2)
    assert main([str(pathlib.Path(sweep.out).parent / "sweep.toml"), "--jobs", "0"]) == 2
