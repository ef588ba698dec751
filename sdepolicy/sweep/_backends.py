"""Where the runs run: here, one after another or `jobs` at once in worker processes (`local`),
or on a Ray cluster, one Ray task per run (`ray`). Either way a run is an ordinary run folder: a
finished one is read and not run again, a killed one resumes from its last checkpoint, and
Ctrl-C leaves every run resumable.

Ray is imported only by `run_ray`; it is the optional extra `cluster`
(`pip install -e ".[cluster]"`)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from ._cells import Run, busy, execute, finished, first_line, record, write_status

Progress = Callable[[dict[str, Any]], None]
OnCheckpoint = Callable[[Run, int], None]


def _cell(run: Run) -> dict:
    return {"dataset": run.dataset, "algo": run.algo, "key": run.key}


def run_local(
    runs: Sequence[Run],
    *,
    jobs: int = 1,
    progress: Progress | None = None,
    on_checkpoint: OnCheckpoint | None = None,
) -> list[dict[str, Any]]:
    """The runs on this machine: with `jobs == 1` one after another in this process (runs of one
    cell share its compilation), otherwise `jobs` at once, each in one of `jobs` worker
    processes (`on_checkpoint` must then be picklable: a module-level function). A run that
    fails is its `failed` row and the others run; Ctrl-C raises `RunInterruptedError` with every
    interrupted run left at its last checkpoint. Rows come back in the order of `runs`.

    Two runs at once on a 2-core CPU train about 1.5 times as many steps per second in all as
    one run (docs/sweeps.md); more jobs than cores only share them."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and len(runs) > 1:
        return _run_in_workers(runs, jobs, progress, on_checkpoint)
    rows = []
    for run in runs:
        row = execute(run, on_checkpoint)
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


# --- the worker processes of `run_local(jobs > 1)` ----------------------------------------------

_IN_RUN = False  # in a worker: whether a run is in progress (Ctrl-C stops it) or it waits (ignored)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, _worker_sigint)


def _worker_sigint(signum, frame) -> None:
    # Ctrl-C reaches every process of the terminal's group, and the parent forwards it too: the
    # first stops the run at hand as a Ctrl-C stops a run (its checkpoint kept); any later one,
    # or one while the worker waits for work, is ignored, so the clean-up is not cut short.
    global _IN_RUN
    if _IN_RUN:
        _IN_RUN = False
        raise KeyboardInterrupt


def _worker_run(run: Run, on_checkpoint: OnCheckpoint | None) -> dict[str, Any]:
    global _IN_RUN
    _IN_RUN = True
    try:
        return execute(run, on_checkpoint)
    finally:
        _IN_RUN = False


def _run_in_workers(runs, jobs, progress, on_checkpoint) -> list[dict[str, Any]]:
    from sdepolicy.app import RunInterruptedError

    # spawn, not fork: JAX's threads do not survive a fork.
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(runs)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
    )
    futures = {pool.submit(_worker_run, run, on_checkpoint): i for i, run in enumerate(runs)}
    rows: list[dict[str, Any] | None] = [None] * len(runs)
    pending = set(futures)
    try:
        while pending:
            # Short waits, so that a Ctrl-C here is seen at once however long the runs are.
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.get):
                row = future.result()  # a worker's RunInterruptedError: Ctrl-C reached only it
                rows[futures[future]] = row
                if progress is not None:
                    progress(row)
    except (KeyboardInterrupt, RunInterruptedError):
        for future in futures:
            future.cancel()
        # Where only this process got the Ctrl-C (`kill -INT`), the workers get it from here.
        for process in list(getattr(pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGINT)
            except (ProcessLookupError, OSError):
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        unfinished = sum(1 for r in rows if r is None)
        raise RunInterruptedError(
            f"interrupted with {unfinished} run(s) unfinished; each keeps its last checkpoint"
        ) from None
    pool.shutdown(wait=True)
    return rows  # type: ignore[return-value]


class RayMissingError(ImportError):
    """The Ray backend was asked for and `ray` is not installed."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissingError(
            "the Ray backend needs ray: pip install -e \".[cluster]\" (or pip install 'ray>=2.9')."
        ) from None
    return ray


def _ray_task(run: Run, on_checkpoint: OnCheckpoint | None) -> dict[str, Any]:
    """The body of one Ray task: the run, in the worker. An exception other than the app's own
    (those are the run's `failed` row: re-running would fail the same way) goes back to Ray,
    which retries the task; the retry, like a retry after a dead worker, finds the checkpoint
    and resumes."""
    return execute(run, on_checkpoint, catch_all=False)


def _task_options(run: Run, max_retries: int, cpus: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_cpus": cpus,
        "num_gpus": run.gpus,
        "max_retries": max_retries,
        "retry_exceptions": True,
    }
    if run.gpus == 0:
        # A CPU run leaves the node's GPUs to the runs that asked for them.
        options["runtime_env"] = {"env_vars": {"JAX_PLATFORMS": "cpu"}}
    elif run.gpus < 1:
        # Runs sharing a GPU: JAX must not take 75 % of its memory up front.
        options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}
    return options


def connect(address: str | None):
    """`ray.init` unless this process is already connected: `auto` joins the cluster started
    with `ray start`, `local` starts one on this machine, anything else is a cluster's address
    (`ray://host:10001`, `host:6379`)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as e:
        raise ConnectionError(
            f"no Ray cluster at {address!r} ({first_line(e)}); start one with `ray start --head` "
            "or pass --ray local to start one on this machine."
        ) from None
    return ray


def run_ray(
    runs: Sequence[Run],
    *,
    address: str | None = "auto",
    max_retries: int = 3,
    cpus: float = 1.0,
    progress: Progress | None = None,
    on_checkpoint: OnCheckpoint | None = None,
) -> list[dict[str, Any]]:
    """One Ray task per run, `num_gpus` as the run asks, each writing its run folder under the
    sweep's `out` (a folder every node sees). Finished runs are read here and not submitted; a
    task that raises or whose worker dies is retried (`max_retries`) and resumes from its last
    checkpoint; one that still fails is its `failed` row. Ctrl-C cancels the tasks (each run
    stops at its last checkpoint) and raises `RunInterruptedError`."""
    from sdepolicy.app import RunInterruptedError

    ray = connect(address)
    rows: list[dict[str, Any]] = []

    def emit(row):
        rows.append(row)
        if progress is not None:
            progress(row)

    remote = ray.remote(_ray_task)
    pending: dict[Any, Run] = {}
    for run in runs:
        done = finished(run.folder)
        if done is not None:
            emit(record(_cell(run), run.seed, done, cached=True))
        elif busy(run.folder):
            emit(record(_cell(run), run.seed, None, status="busy",
                        message="another process is running it"))  # fmt: skip
        else:
            ref = remote.options(**_task_options(run, max_retries, cpus)).remote(run, on_checkpoint)
            pending[ref] = run
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    emit(ray.get(ref))
                except ray.exceptions.RayError as e:
                    # Retries spent: the task's error, or the worker's death, in one line.
                    cause = getattr(e, "cause", None)
                    what = first_line(cause) if isinstance(cause, BaseException) else None
                    message = f"{type(e).__name__}: {what or first_line(e)}"
                    write_status(run.folder, "failed", message)
                    emit(record(_cell(run), run.seed, None, status="failed",
                                message=message))  # fmt: skip
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: the run keeps its checkpoint
        ray.wait(list(pending), num_returns=len(pending), timeout=60)
        raise RunInterruptedError(
            f"interrupted with {len(pending)} run(s) unfinished; each keeps its last checkpoint"
        ) from None
    return rows
