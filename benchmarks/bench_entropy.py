"""Cost of `entropy="likelihood"` in the ER-DP-QE update, next to the reference estimator.

For each size (the paper's: hopper 11/3, M = 64 critics, hidden 256, batch 256, T = 5; and the
embedded Pendulum default: 3/1, M = 10, hidden 64, batch 256, T = 5) and each estimator, the
fused update (`make_train_fn`, K updates per compiled call, batch sampling inside) is timed over
repeated calls after the first: seconds per update (median over calls, wall clock) and CPU
seconds per update (process CPU time, all threads: the load-robust number on a shared machine).
The likelihood estimator runs the policy's T-step posterior chain for the batch's states with
its backward pass, plus a d x d Jacobian of the last step (`proofs/entropy_likelihood.md` §4);
the reference estimator is a closed form on the one-step prediction.

Run: `python benchmarks/bench_entropy.py` (both sizes, a few minutes on an idle 2-core CPU),
`--quick` (a smoke test on tiny shapes). Writes JSON to `--out` (default
runs/bench/entropy.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bench  # noqa: E402
import jax  # noqa: E402

from sdepolicy.rl import make_train_fn  # noqa: E402

ESTIMATORS = ("reference", "likelihood")
# (label, AgentSpec sizes, steps per call K)
SIZES = {
    "paper (hopper 11/3, M=64, hidden 256)": (dict(num_critics=64, hidden=256), 10),
    "pendulum default (3/1, M=10, hidden 64)": (
        dict(num_critics=10, hidden=64, obs_dim=3, action_dim=1),
        100,
    ),
}
QUICK = {"quick (11/3, M=2, hidden 16, batch 32)": (dict(num_critics=2, hidden=16), 5)}


def time_update(spec: bench.AgentSpec, entropy: str, K: int, min_time: float, min_calls: int):
    agent = spec.agent(entropy=entropy)
    dataset = bench.synthetic_dataset(10_000, spec.obs_dim, spec.action_dim)
    state = bench.block(spec.init(agent, jax.random.key(0)))
    train = make_train_fn(agent.update, dataset, spec.batch_size, K)
    box = {"state": state, "i": 0}

    def call():
        box["i"] += 1
        s, metrics = train(box["state"], jax.random.key(100 + box["i"]))
        box["state"] = bench.block(s)
        box["entropy"] = float(metrics["entropy"][-1])

    t0 = time.perf_counter()
    call()
    first_call_s = time.perf_counter() - t0
    timing = bench.time_calls(call, K, min_time, min_calls)
    return {
        "entropy": entropy,
        "first_call_s": first_call_s,
        "last_entropy_metric": box["entropy"],
        **timing.summary(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, a smoke test")
    parser.add_argument("--min-time", type=float, default=None, help="seconds timed per row")
    parser.add_argument("--out", default="runs/bench/entropy.json")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    meta = bench.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    sizes = QUICK if args.quick else SIZES
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 10.0)
    min_calls = 2 if args.quick else 3
    results = []
    for label, (sizes_kw, K) in sizes.items():
        batch = 32 if args.quick else 256
        spec = bench.AgentSpec("erdpqe", diffusion_steps=5, batch_size=batch, **sizes_kw)
        rows = {}
        for entropy in ESTIMATORS:
            print(f"[bench_entropy] {label}: entropy={entropy} ...", flush=True)
            rows[entropy] = time_update(spec, entropy, K, min_time, min_calls)
        ref, lik = rows["reference"], rows["likelihood"]
        results.append(
            {
                "size": label,
                "num_critics": spec.num_critics,
                "hidden": spec.hidden,
                "batch": spec.batch_size,
                "obs_dim": spec.obs_dim,
                "action_dim": spec.action_dim,
                "diffusion_steps": spec.diffusion_steps,
                "steps_per_call": K,
                "rows": rows,
                "time_ratio": lik["s_per_step_median"] / ref["s_per_step_median"],
                "cpu_ratio": lik["cpu_s_per_step"] / ref["cpu_s_per_step"],
            }
        )
    payload = {"meta": bench.finish_meta(meta, t_start), "results": results}
    return bench.publish(payload, args.out, report)


def report(payload: dict) -> None:
    print(f"\n{bench.machine_line(payload['meta'])}")
    rows = []
    for r in payload["results"]:
        for name, row in r["rows"].items():
            rows.append(
                {
                    "size": r["size"],
                    "entropy": name,
                    "ms": f"{row['s_per_step_median'] * 1e3:.3g}",
                    "cpu": f"{row['cpu_s_per_step'] * 1e3:.3g}",
                    "ratio": ""
                    if name == "reference"
                    else f"{r['time_ratio']:.2f} ({r['cpu_ratio']:.2f})",
                }
            )
    bench.print_table(
        rows,
        [
            ("size", "size"),
            ("entropy", "entropy"),
            ("ms/update (wall)", "ms"),
            ("CPU ms/update", "cpu"),
            ("likelihood/reference wall (CPU)", "ratio"),
        ],
    )


if __name__ == "__main__":
    main()
