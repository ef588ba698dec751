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
    p.add_argument("--steps-per-call", type=int, help="updates fused per call (default 250)")
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
    p.add_argument(
        "--clip-actions",
        action="store_true",
        help="clip dataset actions into the environment's action box (otherwise a warning)",
    )
    p.add_argument(
        "--ms-offline",
        action="store_true",
        help="also report Diffusion-QL's offline model selection (top-k by BC loss with early "
        "stopping, docs/method.md §7.2) beside the last and best evaluations",
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
    from sdepolicy.app import SdepolicyError

    try:
        from sdepolicy.app import RunSpec, get_preset, list_presets, run

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
            clip_actions=args.clip_actions,
            offline_selection=args.ms_offline,
        )
        summary = run(spec)
    except SdepolicyError as e:
        # 2: a bad input or setting; 3: training diverged; 130: interrupted (Ctrl-C).
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before the run started (imports, argument checks)
        print("error: interrupted before the run started; nothing was written.", file=sys.stderr)
        return 130
    _report(summary)
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
    print(
        f"  best evaluation  (per seed)  {f(best['return']['mean'])} ± "
        f"{g(best['return']['std'])}   (normalised {g(best['normalized']['mean'])} ± "
        f"{g(best['normalized']['std'])})"
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
    sys.exit(main())
