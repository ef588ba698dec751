"""`python -m sdepolicy.sweep FILE [--backend local|ray] [--ray auto|local|ADDRESS]
[--report-only]`: run a sweep file (docs/sweeps.md) and write its report."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from . import BACKENDS, RayMissingError, SweepFileError, load_sweep, report, run_sweep
from ._report import progress_line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sdepolicy.sweep", description=__doc__)
    p.add_argument(
        "file",
        type=pathlib.Path,
        help="the sweep file (TOML); with --report-only also a folder of runs",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: one run after another here; ray: one Ray task per run",
    )
    p.add_argument(
        "--ray",
        default="auto",
        metavar="auto|local|ADDRESS",
        help="the Ray cluster: auto (the one `ray start` started), local (start one "
        "here) or an address (default auto)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="local backend: how many runs train at once, each in a worker process (default 1; "
        "2 on a 2-core CPU trains about 1.5 times as fast in all)",
    )
    p.add_argument("--out", help="the folder of the runs and the report instead of the file's")
    p.add_argument(
        "--report-only", action="store_true", help="run nothing: the report of the finished runs"
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap replicates (intervals)")
    return p.parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    from sdepolicy.app import RunInterruptedError, SdepolicyError

    args = parse_args(argv)
    if args.jobs < 1 or (args.jobs > 1 and args.backend != "local"):
        print("error: --jobs is a positive number of runs at once, for the local backend only.",
              file=sys.stderr)  # fmt: skip
        return 2
    t0 = time.time()
    try:
        if args.report_only and args.file.is_dir():
            sweep = args.file
        else:
            sweep = load_sweep(args.file, out=args.out)
        if args.dry_run:
            from . import plan

            p = plan(sweep, write=False)
            for r in p.runs:
                print(f"{r.label}: {r.folder}")
            for r in p.problems:
                print(f"[{r['dataset']} / {r['algo']}] failed: {r['message']}")
            print(f"{len(p.runs)} runs in {len(p.cells)} cells")
            return 0
        if args.report_only:
            payload = report(sweep, reps=args.reps)
            if not payload["cells"]:
                print(f"error: no runs under {payload['profiles_png'].rsplit('/', 1)[0]}/runs.",
                      file=sys.stderr)  # fmt: skip
                return 2
            rows = payload["runs"]
        else:
            p, rows = run_sweep(
                sweep,
                backend=args.backend,
                address=args.ray,
                jobs=args.jobs,
                progress=lambda r: print(progress_line(r), flush=True),
            )
            for r in p.problems:
                print(f"[{r['dataset']} / {r['algo']}] failed: {r['message']}", flush=True)
            payload = report(sweep, rows, p.cells, reps=args.reps, wall=time.time() - t0)
    except (SweepFileError, RayMissingError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunInterruptedError as e:
        print(f"error: {e}; run the same command to continue.", file=sys.stderr)
        return 130
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print("\n".join(payload["table"]))
    print()
    print("\n".join(payload["report"]["tables"]))
    print("\n".join(payload["statuses"]))
    json_path = pathlib.Path(payload["profiles_png"]).with_name("report.json")
    print(f"{payload['machine']}; {payload['wall_s'] / 60:.1f} min in all")
    print(f"wrote {json_path}, {json_path.with_suffix('.md')} and {payload['profiles_png']}")
    bad = [r for r in rows if r.get("status") not in ("completed", "diverged")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
