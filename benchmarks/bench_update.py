"""Training-update speed of ER-DP-QE and Diffusion-QL: steps/s, compile time, FLOPs, roofline.

For every configuration (hopper sizes: 11-dimensional state, 3-dimensional action; batch 256;
hidden 256 by default):

- **fused**: `make_train_fn(update, dataset, batch, K)`, K updates per compiled call (a
  `lax.scan` with batch sampling inside); steps/s over repeated calls after the first;
- **single** (K = 1): the same computation, one update (with its batch sampling) per call of a
  `jax.jit`ted step, called from a Python loop without blocking between steps (async dispatch).
  `fused / single` is what fusing buys;
- **compile**: ahead-of-time compile time of one update (`jax.jit(step).lower(...).compile()`),
  and the first fused call's overhead (first call minus a steady call);
- **FLOPs** of one update: XLA's cost analysis (`compiled.cost_analysis()["flops"]`; jax 0.10
  returns a dict on CPU; it counts a `while`/`scan` body once, so the sampler's T-step chain is
  undercounted), the matmul FLOPs counted on the jaxpr (`dot_general` shapes, scans x length),
  and a hand count from the layer shapes;
- **roofline**: achieved FLOP/s (jaxpr matmul FLOPs x steps/s of the fused step) over this
  machine's float32 matmul throughput measured in the same run: (a) the critic's hidden layer as
  ONE batched matmul of all members, `[M, batch, hidden] x [M, hidden, hidden]`; (b) the same
  layer for one group of members as the optimised ensemble issues it on this backend
  (`[g, hidden, hidden] x [g, hidden, batch]`, g = 8 at the paper's sizes on a CPU); (c) a big
  square matmul. `/best mm` divides by the fastest of the three: the strict roofline.
- **variants**: `optimised` is the library as it runs; `straightforward` is the same update with
  Mish differentiated by autodiff and the Q-ensemble in its plain batch-major form differentiated
  by autodiff (`init(..., critic_backward="autodiff")`), i.e. the step before the speed work, which
  `tests/rl/test_fast_step.py` pins the optimised one to. `--baseline` picks the configurations
  that also get a straightforward row (default: erdpqe-M64-T5).

Run: `python benchmarks/bench_update.py` (all configurations, < 10 min on an idle 2-core CPU),
`--quick` (a smoke test), `--configs erdpqe-M64-T5,dql-T5` to select. Writes JSON to `--out`
(default runs/bench/update.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bench  # noqa: E402
import jax  # noqa: E402

from sdepolicy.policy import mish  # noqa: E402
from sdepolicy.rl import make_train_fn  # noqa: E402

DEFAULT_CONFIGS = [
    "erdpqe-M2-T5",
    "erdpqe-M2-T10",
    "erdpqe-M10-T5",
    "erdpqe-M10-T10",
    "erdpqe-M64-T5",
    "erdpqe-M64-T10",
    "dql-T5",
    "dql-T10",
]
QUICK_CONFIGS = ["erdpqe-M2-T5"]


def activation_variant(name: str):
    """The networks' activation: the library's for `mish`, otherwise a what-if from
    `profile_update.py`."""
    if name == "mish":
        return mish
    import profile_update

    return profile_update.VARIANTS[name]


def step_variant(name: str, activation=mish):
    """(`init` options, activation) of the `optimised` or `straightforward` update step."""
    if name == "optimised":
        return {}, activation
    if name == "straightforward":
        return {"critic_backward": "autodiff"}, bench.mish_autodiff
    raise SystemExit(f"unknown variant {name!r}: expected optimised or straightforward")


def default_steps_per_call(spec: bench.AgentSpec) -> int:
    """K: enough steps per call that dispatch is negligible, few enough that a call of the
    64-critic update (~0.2 s per step on an idle 2-core CPU) stays short."""
    return 10 if spec.num_critics >= 32 else 100


def default_min_calls(spec: bench.AgentSpec) -> int:
    """Timed calls at least: more for the 64-critic configurations, whose K = 10 calls are few
    per second (the median of 5 is steadier on a shared machine than that of 2)."""
    return 5 if spec.num_critics >= 32 else 2


def required_flops(spec: bench.AgentSpec, dataset) -> int:
    """Matmul FLOPs of one update counted on the STRAIGHTFORWARD step's jaxpr. The optimised
    step's own jaxpr also holds weight-gradient matmuls of the hand-written backward pass that
    no one uses (the actor's Q term needs only the input gradient) and that XLA removes; counting
    them would inflate its rate."""
    init_options, activation = step_variant("straightforward")
    agent = spec.agent()
    state = spec.init(agent, jax.random.key(0), activation, **init_options)

    def step(state, dataset, key):
        return agent.update(state, dataset.sample(key, spec.batch_size))

    flops, _ = bench.count_matmul_flops(step, state, dataset, jax.random.key(1))
    return flops


def bench_config(spec: bench.AgentSpec, args, init_options: dict, activation=mish) -> dict:
    agent = spec.agent()
    update_fn = agent.update
    dataset = bench.synthetic_dataset(args.dataset_size, spec.obs_dim, spec.action_dim)
    t0 = time.perf_counter()
    state = bench.block(spec.init(agent, jax.random.key(0), activation, **init_options))
    init_s = time.perf_counter() - t0

    # --- one update per call: AOT compile (compile time, XLA's FLOPs), then a Python loop ---
    def step(state, dataset, key):
        key, sub = jax.random.split(key)
        state, _ = update_fn(state, dataset.sample(sub, spec.batch_size))
        return state, key

    t0 = time.perf_counter()
    single = jax.jit(step).lower(state, dataset, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    xla = bench.xla_flops(single)
    counted_own, has_while = bench.count_matmul_flops(step, state, dataset, jax.random.key(1))
    counted = required_flops(spec, dataset)
    analytic = bench.analytic_update_flops(spec)

    loop = {"state": state, "key": jax.random.key(1)}
    chunk = args.single_chunk

    def run_single():
        s, k = loop["state"], loop["key"]
        for _ in range(chunk):
            s, k = single(s, dataset, k)
        loop["state"], loop["key"] = bench.block((s, k))

    run_single()  # warm-up
    min_calls = args.min_calls if args.min_calls is not None else default_min_calls(spec)
    single_t = bench.time_calls(run_single, chunk, args.min_time, min_calls)
    state = loop["state"]

    # --- K fused steps per call through make_train_fn ---
    K = args.steps_per_call or default_steps_per_call(spec)
    train = make_train_fn(update_fn, dataset, spec.batch_size, K)
    fused = {"state": state, "i": 0}

    def run_fused():
        fused["i"] += 1
        s, _ = train(fused["state"], jax.random.key(100 + fused["i"]))
        fused["state"] = bench.block(s)

    t0 = time.perf_counter()
    run_fused()
    first_call_s = time.perf_counter() - t0
    fused_t = bench.time_calls(run_fused, K, args.min_time, min_calls)

    fused_sum, single_sum = fused_t.summary(), single_t.summary()
    achieved = counted * fused_sum["steps_per_s"]
    achieved_cpu = counted / fused_sum["cpu_s_per_step"]
    return {
        "config": spec.name,
        "algo": spec.algo,
        "num_critics": spec.num_critics,
        "diffusion_steps": spec.diffusion_steps,
        "batch": spec.batch_size,
        "hidden": spec.hidden,
        "obs_dim": spec.obs_dim,
        "action_dim": spec.action_dim,
        "init_s": init_s,
        "compile_s": compile_s,
        "fused": {
            "steps_per_call": K,
            "first_call_s": first_call_s,
            "first_call_overhead_s": first_call_s - fused_t.median,
            **fused_sum,
        },
        "single": single_sum,
        "fusion_speedup": fused_sum["steps_per_s"] / single_sum["steps_per_s"],
        "fusion_cpu_ratio": single_sum["cpu_s_per_step"] / fused_sum["cpu_s_per_step"],
        "flops": {
            "xla_cost_analysis": xla,
            "xla_note": "XLA counts a while/scan body once: the sampler chain is undercounted",
            "jaxpr_matmul": counted,
            "jaxpr_matmul_note": "of the straightforward step (autodiff generates only the "
            "matmuls the maths needs); used for the rates of every variant",
            "jaxpr_matmul_own_variant": counted_own,
            "jaxpr_has_while": has_while,
            "analytic_matmul": analytic["total"],
            "analytic_critic": analytic["critic"],
            "analytic_denoiser": analytic["denoiser"],
        },
        "achieved_flops_per_s": achieved,
        "achieved_flops_per_cpu_s": achieved_cpu,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", help="comma-separated, e.g. erdpqe-M64-T5,dql-T10")
    parser.add_argument("--quick", action="store_true", help="one small config, few steps")
    parser.add_argument("--out", default="runs/bench/update.json")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--obs-dim", type=int, default=bench.HOPPER_OBS)
    parser.add_argument("--action-dim", type=int, default=bench.HOPPER_ACT)
    parser.add_argument(
        "--steps-per-call", type=int, default=None, help="K (default 100, 10 for M>=32)"
    )
    parser.add_argument("--single-chunk", type=int, default=None, help="K=1 steps per timed chunk")
    parser.add_argument(
        "--min-time", type=float, default=None, help="seconds timed per measurement"
    )
    parser.add_argument("--min-calls", type=int, default=None)
    parser.add_argument("--dataset-size", type=int, default=100_000)
    parser.add_argument(
        "--baseline",
        default="erdpqe-M64-T5",
        help="comma-separated configurations that also get a `straightforward` row (the step "
        "before the speed work); 'none' for none",
    )
    parser.add_argument("--square", type=int, default=None, help="size of the square matmul")
    parser.add_argument(
        "--activation",
        default="mish",
        help="what-if: run the networks with another activation (see profile_update.py), "
        "e.g. mish_autodiff, Mish differentiated through its formula",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.min_time = args.min_time if args.min_time is not None else (0.2 if quick else 3.0)
    if quick and args.min_calls is None:
        args.min_calls = 1
    args.single_chunk = args.single_chunk or (2 if quick else 10)
    if quick and args.steps_per_call is None:
        args.steps_per_call = 4
    if quick:
        args.dataset_size = min(args.dataset_size, 1000)
    names = (
        args.configs.split(",") if args.configs else (QUICK_CONFIGS if quick else DEFAULT_CONFIGS)
    )
    sizes = dict(
        batch_size=args.batch, hidden=args.hidden, obs_dim=args.obs_dim, action_dim=args.action_dim
    )
    specs = [bench.parse_config_name(n.strip(), **sizes) for n in names]

    t_start = time.perf_counter()
    meta = bench.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)

    # The roofline's denominators, measured in this process before the updates.
    mm_time = 0.3 if quick else 2.0
    square_n = args.square or (256 if quick else 2048)
    matmul = {"square": bench.square_matmul(square_n, mm_time), "batched": {}, "grouped": {}}
    for members in sorted({s.num_critics for s in specs}):
        matmul["batched"][f"M{members}"] = bench.batched_critic_matmul(
            members, args.batch, args.hidden, mm_time
        )
        matmul["grouped"][f"M{members}"] = bench.grouped_critic_matmul(
            members, args.batch, args.hidden, mm_time
        )

    meta["activation"] = args.activation
    if args.baseline == "none":
        baseline = set()
    elif quick and args.baseline == parser.get_default("baseline"):
        baseline = {specs[0].name}
    else:
        baseline = {n.strip() for n in args.baseline.split(",")}
    runs = [(spec, "optimised") for spec in specs]
    runs += [(spec, "straightforward") for spec in specs if spec.name in baseline]
    results = []
    for spec, variant in runs:
        print(f"[bench_update] {spec.name} {variant} ({args.activation}) ...", flush=True)
        init_options, activation = step_variant(variant, activation_variant(args.activation))
        r = bench_config(spec, args, init_options, activation)
        r["variant"] = variant
        key = f"M{spec.num_critics}"
        denominators = {
            "batched": matmul["batched"][key],
            "grouped": matmul["grouped"][key],
            "square": matmul["square"],
        }
        best = max(denominators, key=lambda k: denominators[k]["flops_per_s"])
        best_cpu = max(denominators, key=lambda k: denominators[k]["flops_per_cpu_s"])
        for name, mm in denominators.items():
            r[f"roofline_{name}"] = r["achieved_flops_per_s"] / mm["flops_per_s"]
            r[f"roofline_{name}_cpu"] = r["achieved_flops_per_cpu_s"] / mm["flops_per_cpu_s"]
        r["roofline_best"] = r[f"roofline_{best}"]
        r["roofline_best_cpu"] = r[f"roofline_{best_cpu}_cpu"]
        r["roofline_best_is"] = best
        results.append(r)

    payload = {"meta": bench.finish_meta(meta, t_start), "matmul": matmul, "results": results}
    return bench.publish(payload, args.out, report)


def report(payload: dict) -> None:
    meta, matmul = payload["meta"], payload["matmul"]
    print(f"\n{bench.machine_line(meta)}")
    if meta.get("activation", "mish") != "mish":
        print(f"WHAT-IF: networks run with activation {meta['activation']!r}, not the library's")
    print("float32 matmul throughput, wall-clock (per CPU-second):")
    listed = [("square", matmul["square"])]
    listed += [(f"batched {k}", v) for k, v in matmul["batched"].items()]
    listed += [(f"grouped {k}", v) for k, v in matmul.get("grouped", {}).items()]
    for name, v in listed:
        print(
            f"  {name} {v['a']}x{v['b']}: {bench.fmt_si(v['flops_per_s'], 'FLOP/s')} "
            f"({bench.fmt_si(v['flops_per_cpu_s'], 'FLOP/CPU-s')})"
        )
    print()
    rows = []
    for r in payload["results"]:
        rows.append(
            {
                "config": r["config"],
                "variant": r.get("variant", "optimised"),
                "K": r["fused"]["steps_per_call"],
                "fused": f"{r['fused']['steps_per_s']:.3g}",
                "single": f"{r['single']['steps_per_s']:.3g}",
                "x": f"{r['fusion_speedup']:.2f} ({r['fusion_cpu_ratio']:.2f})",
                "cpu": f"{r['fused']['cpu_s_per_step'] * 1e3:.3g}",
                "cpu1": f"{r['single']['cpu_s_per_step'] * 1e3:.3g}",
                "compile": f"{r['compile_s']:.1f}",
                "xla": bench.fmt_si(r["flops"]["xla_cost_analysis"]),
                "jaxpr": bench.fmt_si(r["flops"]["jaxpr_matmul"]),
                "hand": bench.fmt_si(r["flops"]["analytic_matmul"]),
                "achieved": bench.fmt_si(r["achieved_flops_per_s"], "FLOP/s"),
                "achieved_cpu": bench.fmt_si(r["achieved_flops_per_cpu_s"]),
                "roof": bench.pct(r["roofline_batched"], r["roofline_batched_cpu"]),
                "roof_best": bench.pct(r["roofline_best"], r["roofline_best_cpu"]),
            }
        )
    bench.print_table(
        rows,
        [
            ("config", "config"),
            ("variant", "variant"),
            ("K", "K"),
            ("steps/s (K fused)", "fused"),
            ("steps/s (K=1)", "single"),
            ("fused/K=1 (CPU)", "x"),
            ("CPU ms/step K", "cpu"),
            ("CPU ms/step 1", "cpu1"),
            ("compile s", "compile"),
            ("FLOP XLA", "xla"),
            ("FLOP jaxpr", "jaxpr"),
            ("FLOP hand", "hand"),
            ("FLOP/s", "achieved"),
            ("FLOP/CPU-s", "achieved_cpu"),
            ("/batched mm (CPU)", "roof"),
            ("/best mm (CPU)", "roof_best"),
        ],
    )
    print(
        "\nsteps/s and FLOP/s: wall clock; FLOP/CPU-s and (CPU): per second of process CPU time, "
        "the load-robust measure. FLOP XLA: cost analysis (loop bodies once); FLOP jaxpr: "
        "matmuls of the jaxpr (scans x length), used for the rates; FLOP hand: layer shapes. "
        "/batched mm: over the critic layer as one batched matmul of all M members; /best mm: "
        "over the fastest matmul measured (square, all-members or one-group batched): the "
        "strict roofline."
    )


if __name__ == "__main__":
    main()
