"""The Ray backend on a real local Ray cluster (2 CPUs): a sweep runs as one Ray task per run,
a failing run is reported and does not stop the others, a run whose worker dies after its first
checkpoint is retried and resumes from it, and a re-launch submits nothing finished."""

import json
import os
import pathlib
import sys

import pytest

from sdepolicy.sweep import RayMissingError, load_sweep, run_sweep

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")

FAST_COMPILE = (
    "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true"
)


@pytest.fixture(scope="module")
def cluster(tiny_datasets, tmp_path_factory):
    env = {"XLA_FLAGS": FAST_COMPILE, "MINARI_DATASETS_PATH": str(tiny_datasets),
           "RAY_AUTH_MODE": "disabled"}  # fmt: skip
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no token written under ~/.ray for a test cluster
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})  # fmt: skip
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def test_a_sweep_on_ray_survives_a_dead_worker_and_a_failing_run(cluster, sweep_file, tmp_path):
    sweep = load_sweep(sweep_file, out=str(tmp_path / "out"))
    log, marker = tmp_path / "checkpoints.log", tmp_path / "killed"

    def die_once(run, step):
        # In the worker: every checkpoint logged with the worker's pid; the first one of seed 1
        # kills its worker as a crash would (no exception, no clean-up).
        with open(log, "a") as f:
            f.write(f"{run.seed} {step} {os.getpid()}\n")
        if run.seed == 1 and not marker.exists():
            marker.touch()
            os._exit(1)

    plan, rows = run_sweep(sweep, backend="ray", on_checkpoint=die_once)
    by = {(r["dataset"], r["seed"]): r for r in rows}
    assert by[("broken", 0)]["status"] == "failed"
    assert "cannot be concatenated" in by[("broken", 1)]["message"]
    assert by[("tiny", 0)]["status"] == "completed" and not by[("tiny", 0)].get("resumed")
    # Seed 1's worker died at step 10; Ray retried the task, which resumed from that checkpoint.
    killed = by[("tiny", 1)]
    assert killed["status"] == "completed" and killed["resumed"] and killed["steps"] == 20
    seen = [line.split() for line in log.read_text().splitlines()]
    one = [(int(step), pid) for seed, step, pid in seen if seed == "1"]
    assert [s for s, _ in one] == [10, 20] and one[0][1] != one[1][1]  # another process
    assert [int(step) for seed, step, _ in seen if seed == "0"] == [10, 20]
    assert all(str(os.getpid()) != pid for *_, pid in seen)  # nothing ran in this process
    folder = pathlib.Path(next(r.folder for r in plan.runs if (r.dataset, r.seed) == ("tiny", 1)))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["evaluations"]) == 2

    # A re-launch reads the finished runs: only the two failed ones go to Ray again.
    again = tmp_path / "again.log"
    _, rows = run_sweep(
        sweep, backend="ray", on_checkpoint=lambda run, step: again.open("a").write("x")
    )
    assert [r["cached"] for r in rows if r["dataset"] == "tiny"] == [True, True]
    assert [r["status"] for r in rows if r["dataset"] == "broken"] == ["failed", "failed"]
    assert not again.exists()  # no run reached a checkpoint: none trained


def test_the_ray_backend_without_ray_is_one_line(sweep_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayMissingError, match=r'pip install -e "\.\[cluster\]"'):
        run_sweep(load_sweep(sweep_file), backend="ray")


def test_ctrl_c_on_a_ray_sweep_leaves_every_run_resumable(cluster, sweep_file, tmp_path):
    """Ctrl-C in the driver while the runs are on Ray: the tasks are cancelled, each run keeps
    its last checkpoint (no lock left held), the sweep says so in one `RunInterruptedError`, and
    the same sweep launched again resumes the interrupted runs instead of starting them over."""
    import _thread
    import dataclasses
    import threading
    import time

    from sdepolicy.app import RunInterruptedError
    from sdepolicy.sweep._cells import busy, finished

    sweep = load_sweep(sweep_file, out=str(tmp_path / "out"))
    sweep = dataclasses.replace(sweep, sources=sweep.sources[:1], steps=40)  # "tiny", 2 seeds
    marker = tmp_path / "first-checkpoint"

    def slow_after_first_checkpoint(run, step):
        # In the worker: the first checkpoint of each run says so, then the run waits there a
        # little, as a long run would be somewhere in its training when the user presses Ctrl-C
        # (the run stops at the end of the chunk at hand, here this callback).
        if step == 10:
            marker.touch()
            time.sleep(3)

    def press_ctrl_c():
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.1)
        _thread.interrupt_main()  # a KeyboardInterrupt in the driver, as Ctrl-C gives

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(RunInterruptedError, match="each keeps its last checkpoint"):
        run_sweep(sweep, backend="ray", on_checkpoint=slow_after_first_checkpoint)

    folders = [pathlib.Path(r.folder) for r in load_plan_runs(sweep)]
    interrupted = [f for f in folders if finished(f) is None]
    assert interrupted  # at least the run that reached its checkpoint is unfinished
    for folder in interrupted:
        assert (folder / "checkpoint.eqx").is_file() or not folder.exists()
        assert not busy(folder)  # its worker let go of the lock

    log = tmp_path / "again.log"
    _, rows = run_sweep(
        sweep,
        backend="ray",
        on_checkpoint=lambda run, step: log.open("a").write(f"{run.seed} {step}\n"),
    )
    assert [r["status"] for r in rows] == ["completed", "completed"]
    resumed = [r["seed"] for r in rows if r.get("resumed")]
    assert resumed  # at least one run continued from its checkpoint instead of from step 0
    steps = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    for seed in resumed:
        assert (seed, 10) not in steps and (seed, 40) in steps  # from step 10 on, to the end


def load_plan_runs(sweep):
    from sdepolicy.sweep import plan

    return plan(sweep).runs
