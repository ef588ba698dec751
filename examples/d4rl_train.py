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
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="pendulum-mixed", help="preset name (see --list-tasks)")
    p.add_argument("--algo", default="erdpqe", choices=["erdpqe", "diffusion-ql", "bc"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="trained together")
    p.add_argument(
        "--seed-strategy",
        choices=["vmap", "sequential"],
        default="vmap",
        help="seeds batched into every matmul (vmap) or one after the other in each compiled "
        "call (sequential: faster on a CPU at hidden 256, see benchmarks/README.md)",
    )
    p.add_argument("--steps", type=int, help="gradient steps (default: the preset's epochs)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations")
    p.add_argument("--eval-episodes", type=int, help="episodes per evaluation and seed")
    p.add_argument("--steps-per-call", type=int, default=250, help="updates fused per call")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--out", help="output folder (default runs/<task>-<algo>)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--download", action="store_true", help="download a missing Minari dataset")
    p.add_argument("--dataset", nargs="+", help="Minari id(s) to train on instead of the preset's")
    p.add_argument("--env", help="Gymnasium id to evaluate in instead of the dataset's env")
    p.add_argument(
        "--reward-transform",
        choices=["none", "antmaze", "normalize"],
        help="reward transform instead of the preset's",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override an agent hyper-parameter, e.g. --set eta=2.0 --set num_critics=10",
    )
    p.add_argument("--list-tasks", action="store_true", help="print the task presets and exit")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from sdepolicy.rl.errors import SdepolicyError

    try:
        from sdepolicy.rl.presets import get_preset, list_presets
        from sdepolicy.rl.runner import RunSpec, run

        if args.list_tasks:
            for name in list_presets():
                print(f"{name:32s} {get_preset(name).minari_id}")
            return 0
        overrides = {}
        for item in args.set:
            if "=" not in item:
                raise SdepolicyError(f"--set expects FIELD=VALUE, got {item!r}.")
            k, v = item.split("=", 1)
            overrides[k.strip()] = v.strip()
        spec = RunSpec(
            task=args.task,
            algo=args.algo,
            seeds=tuple(args.seeds),
            seed_strategy=args.seed_strategy,
            steps=args.steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            steps_per_call=args.steps_per_call,
            checkpoint_every=args.checkpoint_every,
            out=args.out,
            resume=args.resume,
            overrides=overrides,
            download=args.download,
            progress=not args.no_progress,
            dataset=tuple(args.dataset) if args.dataset else None,
            env=args.env,
            reward_transform=args.reward_transform,
        )
        summary = run(spec)
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _report(summary, spec)
    return 0


def _report(s: dict, spec) -> None:
    last, best, data = s["last_evaluation"], s["best_evaluation"], s["dataset"]
    out = spec.out or f"runs/{spec.task}-{spec.algo}"
    n = len(s["seeds"])
    print(
        f"\n{s['task']} / {s['algo']}: {s['steps']} steps, {n} seed(s), "
        f"{s['wall_time_s']:.0f} s, {s['update_steps_per_s'] or float('nan'):.0f} updates/s"
    )
    print(
        f"  dataset mean return        {data['mean_return']:9.1f}   "
        f"(normalised {data['normalized']:.1f})"
    )
    print(
        f"  last evaluation  (step {last['step']}) {last['return']['mean']:9.1f} ± "
        f"{last['return']['std']:.1f}   (normalised {last['normalized']['mean']:.1f} ± "
        f"{last['normalized']['std']:.1f})"
    )
    print(
        f"  best evaluation  (per seed)  {best['return']['mean']:9.1f} ± "
        f"{best['return']['std']:.1f}   (normalised {best['normalized']['mean']:.1f} ± "
        f"{best['normalized']['std']:.1f})"
    )
    print(f"  reference scores: {json.dumps(s['reference_scores'])}")
    print(f"  wrote {out}/metrics.csv, learning_curve.png, summary.json, checkpoint.eqx")


if __name__ == "__main__":
    sys.exit(main())
