"""Many seeds in one process: ER-DP-QE training of 1 seed against 5 seeds at once.

States are built with `init_seeds` (one agent per key, stacked) and trained with
`make_seeds_train_fn` (the fused K-step update `vmap`ped over seeds; every seed draws its own
batches). For each ensemble size M (hopper sizes, batch 256, hidden 256) the script reports the
time of one call for 1 and for S seeds, their ratio (S if vmapping bought nothing, 1 if the S
seeds were free), the seed-updates per second, and the compile and initialisation times.

Both of `make_seeds_train_fn`'s strategies are measured: `vmap` (the seeds batched into every
matmul) and `sequential` (one seed after the other inside the compiled call).

Run: `python benchmarks/bench_seeds.py` (M = 10 and 64, 1 vs 5 seeds), `--quick` for a smoke
test. Writes JSON to `--out` (default runs/bench/seeds.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bench  # noqa: E402
import jax  # noqa: E402

from sdepolicy.rl import init_seeds, make_seeds_train_fn  # noqa: E402


def time_seeds(spec: bench.AgentSpec, num_seeds: int, K: int, args, strategy: str = "vmap") -> dict:
    agent = spec.agent()
    update_fn = agent.update
    dataset = bench.synthetic_dataset(args.dataset_size, spec.obs_dim, spec.action_dim)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    t0 = time.perf_counter()
    states = bench.block(init_seeds(lambda k: spec.init(agent, k), keys))
    init_s = time.perf_counter() - t0
    train = make_seeds_train_fn(update_fn, dataset, spec.batch_size, K, strategy=strategy)
    box = {"states": states, "i": 0}

    def call():
        box["i"] += 1
        batch_keys = jax.random.split(jax.random.key(box["i"]), num_seeds)
        s, _ = train(box["states"], batch_keys)
        box["states"] = bench.block(s)

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    timing = bench.time_calls(call, K, args.min_time, args.min_calls)
    return {
        "seeds": num_seeds,
        "steps_per_call": K,
        "init_s": init_s,
        "first_call_s": first,
        "first_call_overhead_s": first - timing.median,
        "s_per_call_median": timing.median,
        "cpu_s_per_call": sum(timing.cpu) / len(timing.cpu),
        "calls_timed": len(timing.wall),
        "seed_steps_per_s": num_seeds * K / timing.median,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critics", default=None, help="ensemble sizes, e.g. 10,64")
    parser.add_argument("--seeds", type=int, default=None, help="S, compared with 1 seed")
    parser.add_argument("--quick", action="store_true", help="M=2, 2 seeds, few steps")
    parser.add_argument("--out", default="runs/bench/seeds.json")
    parser.add_argument("--diffusion-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument(
        "--steps-per-call", type=int, default=None, help="K (default 20; 4 for M>=32)"
    )
    parser.add_argument("--min-time", type=float, default=None)
    parser.add_argument("--min-calls", type=int, default=None)
    parser.add_argument("--dataset-size", type=int, default=100_000)
    parser.add_argument(
        "--strategies",
        default="vmap,sequential",
        help="how the seeds share a compiled call (make_seeds_train_fn's strategy)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    critics = [int(x) for x in (args.critics or ("2" if quick else "10,64")).split(",")]
    num_seeds = args.seeds or (2 if quick else 5)
    args.min_time = args.min_time if args.min_time is not None else (0.1 if quick else 3.0)
    args.min_calls = args.min_calls if args.min_calls is not None else (1 if quick else 2)
    if quick:
        args.dataset_size = min(args.dataset_size, 1000)

    t_start = time.perf_counter()
    meta = bench.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    results = []
    for M in critics:
        spec = bench.AgentSpec(
            "erdpqe", M, args.diffusion_steps, batch_size=args.batch, hidden=args.hidden
        )
        K = args.steps_per_call or (2 if quick else (4 if M >= 32 else 20))
        print(f"[bench_seeds] {spec.name}: 1 seed ...", flush=True)
        one = time_seeds(spec, 1, K, args)
        for strategy in args.strategies.split(","):
            print(f"[bench_seeds] {spec.name}: {num_seeds} seeds, {strategy} ...", flush=True)
            many = time_seeds(spec, num_seeds, K, args, strategy)
            ratio = many["s_per_call_median"] / one["s_per_call_median"]
            ratio_cpu = many["cpu_s_per_call"] / one["cpu_s_per_call"]
            results.append(
                {
                    "config": spec.name,
                    "strategy": strategy,
                    "num_critics": M,
                    "diffusion_steps": args.diffusion_steps,
                    "batch": args.batch,
                    "hidden": args.hidden,
                    "one_seed": one,
                    "many_seeds": many,
                    "num_seeds": num_seeds,
                    "time_ratio": ratio,
                    "throughput_gain": num_seeds / ratio,
                    "cpu_time_ratio": ratio_cpu,
                    "throughput_gain_cpu": num_seeds / ratio_cpu,
                }
            )
    payload = {"meta": bench.finish_meta(meta, t_start), "results": results}
    return bench.publish(payload, args.out, report)


def report(payload: dict) -> None:
    meta = payload["meta"]
    print(f"\n{bench.machine_line(meta)}\n")
    rows = []
    for r in payload["results"]:
        one, many, S = r["one_seed"], r["many_seeds"], r["num_seeds"]
        rows.append(
            {
                "config": r["config"],
                "strategy": r.get("strategy", "vmap"),
                "K": one["steps_per_call"],
                "t1": f"{one['s_per_call_median']:.3g}",
                "tS": f"{many['s_per_call_median']:.3g}",
                "ratio": f"{r['time_ratio']:.2f} ({r['cpu_time_ratio']:.2f})",
                "sps1": f"{one['seed_steps_per_s']:.3g}",
                "spsS": f"{many['seed_steps_per_s']:.3g}",
                "gain": f"{r['throughput_gain']:.2f} ({r['throughput_gain_cpu']:.2f})",
                "comp": f"{one['first_call_overhead_s']:.0f} / {many['first_call_overhead_s']:.0f}",
                "init": f"{one['init_s']:.1f} / {many['init_s']:.1f}",
                "S": S,
            }
        )
    S = payload["results"][0]["num_seeds"] if payload["results"] else "S"
    bench.print_table(
        rows,
        [
            ("config", "config"),
            ("seeds", "strategy"),
            ("K", "K"),
            ("s/call 1 seed", "t1"),
            (f"s/call {S} seeds", "tS"),
            (f"time ratio {S}:1 (CPU)", "ratio"),
            ("seed-steps/s 1", "sps1"),
            (f"seed-steps/s {S}", "spsS"),
            ("throughput gain (CPU)", "gain"),
            ("compile s (1/S)", "comp"),
            ("init s (1/S)", "init"),
        ],
    )
    print(
        "\nWall clock; (CPU): the same from process CPU time, the load-robust measure. "
        f"Ratio {S} if {S} seeds cost {S}x one, 1 if the extra seeds were free."
    )


if __name__ == "__main__":
    main()
