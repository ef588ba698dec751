"""The default-size update: diffusion BC, ER-DP-QE and Diffusion-QL with the project's defaults.

The agents' configurations are those of the embedded task (`get_preset("pendulum-mixed")`, the
same as every `--dataset` run without `--task`), on Pendulum's sizes (3-d state, 1-d action), and
each is trained exactly as the main job trains it: `make_checked_seeds_train_fn` (the fused
`lax.scan` of K updates with the finiteness report), one seed, K = 250. Synthetic data of the
embedded dataset's size (40,000 transitions; speed does not depend on the values). After a first
call (compilation), calls are timed until `--min-time` seconds: updates per second (wall clock)
and CPU seconds per update (process CPU time, all threads: the load-robust number), and each
agent's cost relative to diffusion BC's measured in the same run. Beside them, the matmul FLOPs
of one update counted on its jaxpr and their ratio to BC's: the cost an agent would have if
every matmul ran at BC's rate (what "at its FLOP cost" means).

The parts of one ER-DP-QE update at these sizes (`--parts`) are timed the same way, each its own
jitted function on the same inputs: the EMA actor's chain for the TD target, the target critics,
the whole TD target, the critics' loss and gradient, the actor's loss and gradient.

    python benchmarks/bench_default.py            # about 2 minutes on an idle 2-core CPU
    python benchmarks/bench_default.py --parts    # with the ER-DP-QE parts
    python benchmarks/bench_default.py --quick    # smoke test (tests/test_benchmarks_smoke.py)

Writes JSON to `--out` (default runs/bench/default.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import equinox as eqx
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _bench_common import (  # noqa: E402
    count_matmul_flops,
    finish_meta,
    machine_info,
    machine_line,
    print_table,
    publish,
    synthetic_dataset,
    time_calls,
)

from sdepolicy.app import get_preset  # noqa: E402
from sdepolicy.rl import init_seeds, make_checked_seeds_train_fn  # noqa: E402
from sdepolicy.rl.agents import AGENTS  # noqa: E402

ALGOS = ("bc", "erdpqe", "diffusion-ql")
OBS, ACT = 3, 1


def _agent(algo: str, quick: bool):
    config = get_preset("pendulum-mixed").config(algo)
    if quick:
        small = {"hidden": 16, "batch_size": 8, "critic_hidden": 8}
        fields = {f.name for f in dataclasses.fields(config)}
        config = dataclasses.replace(config, **{k: v for k, v in small.items() if k in fields})
    return AGENTS[algo](config)


def _init(agent, seeds: int = 1):
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    keys = jax.random.split(jax.random.key(0), seeds)
    return init_seeds(lambda k: agent.init(OBS, ACT, low, high, k), keys), keys


def bench_algo(algo: str, data, args) -> dict:
    agent = _agent(algo, args.quick)
    states, keys = _init(agent)
    train = make_checked_seeds_train_fn(
        agent.update, data, agent.config.batch_size, args.steps_per_call
    )
    t0 = time.perf_counter()
    states, _, _ = jax.block_until_ready(train(states, keys))
    first = time.perf_counter() - t0
    holder = {"s": states}

    def call():
        holder["s"], metrics, report = train(holder["s"], keys)
        jax.block_until_ready((holder["s"], metrics, report))

    timing = time_calls(call, args.steps_per_call, args.min_time, args.min_calls)
    one = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, states)
    batch = jax.tree.map(lambda x: x[: agent.config.batch_size], data)
    flops, _ = count_matmul_flops(agent.update, one, batch)
    return {"algo": algo, "first_call_s": first, "matmul_flops": flops, **timing.summary("update")}


def bench_parts(data, args) -> list[dict]:
    """Parts of one ER-DP-QE update (the project defaults), each jitted on its own."""
    import jax.numpy as jnp

    agent = _agent("erdpqe", args.quick)
    state = agent.init(
        OBS, ACT, -np.ones(ACT, np.float32), np.ones(ACT, np.float32), jax.random.key(0)
    )
    b = agent.config.batch_size
    batch = jax.tree.map(lambda x: x[:b], data)
    key = jax.random.key(1)

    parts = {
        "update": jax.jit(lambda st, bt: agent.update(st, bt)),
        "next_actions": jax.jit(
            lambda st, bt: st.ema_actor.sample(bt.next_observations, key)
        ),
        "target_q": jax.jit(
            lambda st, bt: st.target_critic(bt.next_observations, jnp.zeros((b, ACT)))
        ),
    }
    rows = []
    for name, fn in parts.items():
        try:
            jax.block_until_ready(fn(state, batch))
        except Exception as e:  # a part whose internals moved: say so, time the rest
            rows.append({"part": name, "error": f"{type(e).__name__}: {e}"[:80]})
            continue
        t = time_calls(
            lambda fn=fn: jax.block_until_ready(fn(state, batch)), 1, args.min_time / 3, 5
        )
        rows.append({"part": name, **t.summary("call")})
    return rows


def report(payload: dict) -> None:
    rows = payload["agents"]
    bc = next(r for r in rows if r["algo"] == "bc")
    table = []
    for r in rows:
        table.append(
            {
                "algo": r["algo"],
                "ups": f"{r['updates_per_s']:.1f}",
                "ms": f"{1e3 * r['s_per_update_median']:.2f}",
                "cpu_ms": f"{1e3 * r['cpu_s_per_update']:.2f}",
                "vs_bc": f"{r['s_per_update_median'] / bc['s_per_update_median']:.2f}× "
                f"({r['cpu_s_per_update'] / bc['cpu_s_per_update']:.2f}×)",
                "mflop": f"{r['matmul_flops'] / 1e6:.0f}",
                "flop_vs_bc": f"{r['matmul_flops'] / bc['matmul_flops']:.2f}×",
                "first": f"{r['first_call_s']:.1f}",
            }
        )
    print(
        f"\nThe default-size update (embedded task's configs, Pendulum sizes, K = "
        f"{payload['steps_per_call']}): {machine_line(payload['meta'])}"
    )
    print_table(
        table,
        [
            ("agent", "algo"),
            ("updates/s", "ups"),
            ("ms/update", "ms"),
            ("CPU ms/update", "cpu_ms"),
            ("× BC, wall (CPU)", "vs_bc"),
            ("matmul MFLOP", "mflop"),
            ("× BC, FLOPs", "flop_vs_bc"),
            ("first call s", "first"),
        ],
    )
    if payload.get("parts"):
        print("\nParts of one ER-DP-QE update (each jitted alone):")
        print_table(
            [
                {
                    "part": r["part"],
                    "ms": f"{1e3 * r['s_per_call_median']:.3f}" if "error" not in r else "-",
                    "cpu": f"{1e3 * r['cpu_s_per_call']:.3f}" if "error" not in r else r["error"],
                }
                for r in payload["parts"]
            ],
            [("part", "part"), ("ms", "ms"), ("CPU ms", "cpu")],
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--steps-per-call", type=int, default=250)
    parser.add_argument("--min-time", type=float, default=15.0)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--out", default="runs/bench/default.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps_per_call, args.min_time, args.min_calls = 5, 0.0, 1
    if "bc" not in args.algos:
        args.algos = ["bc", *args.algos]
    t_start = time.perf_counter()
    meta = machine_info()
    data = synthetic_dataset(400 if args.quick else 40_000, OBS, ACT)
    rows = [bench_algo(a, data, args) for a in args.algos]
    parts = bench_parts(data, args) if args.parts else []
    payload = {
        "meta": finish_meta(meta, t_start),
        "steps_per_call": args.steps_per_call,
        "agents": rows,
        "parts": parts,
    }
    return publish(payload, args.out, report)


if __name__ == "__main__":
    main()
