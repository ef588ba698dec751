"""Train ER-DP-QE, Diffusion-QL or diffusion BC on a Minari (D4RL) dataset and evaluate it.

With no flags: the embedded Pendulum task (a mixed-quality dataset built locally on first use
with Minari's DataCollector), offline, on CPU, in a few minutes.

    python examples/d4rl_train.py
    python examples/d4rl_train.py --task hopper-medium-v2 --seeds 0 1 2 3 4
    python examples/d4rl_train.py --task antmaze-umaze-v0 --algo diffusion-ql --set eta=2.5
    python examples/d4rl_train.py --out runs/x --resume          # continue a killed run
    python examples/d4rl_train.py --list-tasks
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys


def parse_args(argv=None) -> argparse.Namespace:
    """One flag per field of `sdepolicy.app.RunSpec` (derived from it), and `--list-tasks`."""
    from sdepolicy.app import add_run_arguments

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_run_arguments(p)
    p.add_argument("--list-tasks", action="store_true", help="print the task presets and exit")
    return p.parse_args(argv)


def _interrupt_once(signum, frame):
    """The first Ctrl-C stops the run; later ones are ignored, so the clean-up and the exit
    (JAX's own clean-up at exit) are not cut short with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt_once)
    try:
        args = parse_args(argv)
        from sdepolicy.app import SdepolicyError, get_preset, list_presets, run, run_spec_from_args
    except KeyboardInterrupt:  # while importing, before the run started
        print("error: interrupted before the run started; nothing was written.", file=sys.stderr)
        return 130
    try:
        if args.list_tasks:
            for name in list_presets():
                print(f"{name:32s} {get_preset(name).minari_id}")
            return 0
        summary = run(run_spec_from_args(args))
    except SdepolicyError as e:
        # 2: a bad input or setting; 3: training diverged; 130: interrupted (Ctrl-C); 143:
        # terminated (SIGTERM).
        if e.exit_code in (130, 143):  # the process ends now: a second signal must not cut it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before the run started (argument checks)
        print("error: interrupted before the run started; nothing was written.", file=sys.stderr)
        return 130
    try:
        _report(summary)
        sys.stdout.flush()
    except OSError as e:  # standard output on a full disk, or closed: the run itself is done
        # Point stdout at /dev/null so that the interpreter's last flush does not fail again.
        try:
            fd = sys.stdout.fileno()
        except (OSError, ValueError):  # not a file (io.UnsupportedOperation is a ValueError)
            pass
        else:
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
        print(
            f"error: could not print the report to standard output ({e.strerror or e}); the run "
            f"completed and its results are in {summary['out']}/summary.json.",
            file=sys.stderr,
        )
        return 2
    return 0


def _report(s: dict) -> None:
    last, best, data = s["last_evaluation"], s["best_evaluation"], s["dataset"]
    n = len(s["seeds"])
    # No rate when this process timed no chunk (a resumed run that was already complete).
    rate = s["update_steps_per_s"]
    rate = f"{rate:.0f} updates/s" if rate else "no updates timed in this process"
    print(
        f"\n{s['name']} / {s['algo']}: {s['steps']} steps, {n} seed(s), "
        f"{s['wall_time_s']:.0f} s, {rate}"
    )
    f = lambda x: "    n/a" if x is None else f"{x:9.1f}"
    g = lambda x: "n/a" if x is None else f"{x:.1f}"
    print(
        f"  dataset mean return        {f(data['mean_return'])}   "
        f"(normalised {g(data['normalized'])})"
    )
    print(
        f"  last evaluation  (step {last['step']}) {f(last['return']['mean'])} ± "
        f"{g(last['return']['std'])}   (normalised {g(last['normalized']['mean'])} ± "
        f"{g(last['normalized']['std'])})"
    )
    quarter = s.get("last_quarter")
    if quarter:
        steps = f"steps {quarter['from_step']}+, {len(quarter['steps'])} evals"
        print(
            f"  last quarter     ({steps}) {f(quarter['return']['mean'])} ± "
            f"{g(quarter['return']['std'])}   (normalised {g(quarter['normalized']['mean'])} ± "
            f"{g(quarter['normalized']['std'])}; per seed the mean over those evaluations)"
        )
    print(
        f"  best evaluation  (per seed)  {f(best['return']['mean'])} ± "
        f"{g(best['return']['std'])}   (normalised {g(best['normalized']['mean'])} ± "
        f"{g(best['normalized']['std'])})"
    )
    timing = s.get("timing")
    if timing:
        share = timing["eval_share"]
        print(
            f"  time: training {timing['train_s']:.0f} s, evaluation {timing['eval_s']:.0f} s "
            f"({'n/a' if share is None else f'{100 * share:.0f} %'} of the two; "
            f"{timing['eval_episodes']} episodes, the last evaluation "
            f"{last.get('episodes', '?')} per seed)"
        )
    if s.get("offline_selection"):
        off = s["offline_selection"]
        print(
            f"  offline selection (top_k {off['top_k']}) {f(off['return']['mean'])} ± "
            f"{g(off['return']['std'])}   (normalised {g(off['normalized']['mean'])} ± "
            f"{g(off['normalized']['std'])}; steps {off['steps']})"
        )
    if s.get("non_finite_values"):
        print(f"  non-finite (null in summary.json): {', '.join(s['non_finite_values'])}")
    div = s["critic_divergence"]
    if div["diverged"]:
        first = ", ".join(f"seed {k} at update {v}" for k, v in div["first_step"].items())
        print(f"  critic divergence (|Q| beyond {div['bound']:.3g}): {first}")
    print(f"  reference scores: {json.dumps(s['reference_scores'])}")
    print(f"  wrote {s['out']}/metrics.csv, learning_curve.png, summary.json, checkpoint.eqx")


if __name__ == "__main__":
    code = main()
    if code in (130, 143):
        # Interrupted: the run has cleaned up and released its folder. JAX's clean-up at exit
        # can crash (a segmentation fault) after an interrupt mid-computation, so skip it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
