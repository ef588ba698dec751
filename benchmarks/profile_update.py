"""Where the time of one ER-DP-QE update goes, and what-ifs (docs/method.md §11: the 64-critic update is
compute-bound on a CPU; how far is it from the matmul roofline, and why?).

Parts of one update (hopper sizes, batch 256, hidden 256, M = 64 by default), each its own
jitted function on the same inputs, timed after compilation:

- `update`: the whole `ERDPQE.update`;
- `next_actions`: the EMA actor's posterior sampler on s' (T denoiser calls);
- `target_q`: the target ensemble on (s', a');
- `targets`: both, plus the TD target (`next_state_values` + `td_targets`);
- `critic_fwd`: the ensemble on (s, a) alone;
- `critic_grad`: value and gradient of the critic loss (targets given);
- `critic_step`: `critic_grad` + Adam after global-norm clipping;
- `critic_adam`: the optimiser step alone (gradients given);
- `actor_step`: value and gradient of the actor loss + Adam;
- `ema_polyak`: EMA of the actor and Polyak average of the target ensemble.

Each line gives the matmul FLOPs counted on its jaxpr, the achieved FLOP/s and the ratio to the
measured batched matmul of the critic's shapes.

What-ifs (`--variants`), by building the networks with another activation (the critics' and
the denoiser's constructor argument `activation`; nothing in the library is edited):

- `mish`: the library's exact one-exponential Mish with its closed-form derivative rule (a
  `jax.custom_jvp`; the baseline);
- `mish_autodiff`: the same formula differentiated by autodiff (the library before its speed
  work: the backward pass replays the forward expression's dozen elementwise operations);
- `mish_std`: the textbook `x * tanh(softplus(x))`;
- `relu`: ReLU (a lower bound: what any activation costs at least);
- `mish_vjp`: the closed-form derivative as a `jax.custom_vjp` whose only residual is the input,
  the slope recomputed in the backward pass instead of kept (reverse mode only);
- `identity`: no activation at all (the matmuls, bias adds and the rest of the step only).

The Q-ensemble's hand-written backward pass (`FusedBackward`) keeps the activation's slope from
the forward pass (its vector-Jacobian product with ones; for Mish, `mish_and_slope`'s closed
form), whatever the variant; the variants change both networks' activation.

Run: `python benchmarks/profile_update.py [--critics 64] [--variants mish,relu,...]`. Writes
JSON to `--out` (default runs/bench/profile.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bench  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from sdepolicy.policy import mish, mish_and_slope  # noqa: E402
from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig  # noqa: E402
from sdepolicy.rl.agents._base import ema_update  # noqa: E402

# --- activation variants ------------------------------------------------------------------------


def mish_std(x):
    return x * jnp.tanh(jax.nn.softplus(x))


def relu(x):
    return jnp.maximum(x, 0)


def identity(x):
    return x


@jax.custom_vjp
def mish_vjp(x):
    """The library's Mish with a reverse-mode rule that keeps only the input `x` (already in
    memory: it is the matmul's output) and recomputes the slope in the backward pass."""
    return mish(x)


mish_vjp.defvjp(lambda x: (mish(x), x), lambda x, ct: (mish_and_slope(x)[1] * ct,))


VARIANTS = {
    "mish": mish,  # the library as it is
    "mish_std": mish_std,
    "relu": relu,
    "mish_autodiff": bench.mish_autodiff,
    "mish_vjp": mish_vjp,
    "identity": identity,
}


# --- the parts of one update --------------------------------------------------------------------


def _optimizer_step(optimizer, module, grads, opt_state):
    # What the shared update does with a gradient (sdepolicy/rl/agents/_base.py).
    params = eqx.filter(module, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.apply_updates(module, updates), opt_state


def parts(agent):
    """`name -> f(state, batch, key)` pieces of `agent.update` (the same calls, in pieces)."""
    config = agent.config
    critic_opt, actor_opt = agent.critic_optimizer(), agent.actor_optimizer()

    def fake_targets(state, batch):
        # Shapes of the TD targets, without computing them (for the critic-only parts).
        return jnp.broadcast_to(batch.rewards, (config.num_critics, batch.rewards.shape[0]))

    def critic_grad(state, batch, key):
        # The call the update makes: the agent's critic loss, Q and the gradients.
        y = fake_targets(state, batch)
        return eqx.filter_value_and_grad(
            lambda c: c.regression_loss(batch.observations, batch.actions, y, agent.critic_loss),
            has_aux=True,
        )(state.critic)

    def critic_step(state, batch, key):
        _, grads = critic_grad(state, batch, key)
        return _optimizer_step(critic_opt, state.critic, grads, state.critic_opt_state)

    def critic_adam(state, batch, key):
        grads = jax.tree.map(lambda x: x * 1e-3, eqx.filter(state.critic, eqx.is_inexact_array))
        return _optimizer_step(critic_opt, state.critic, grads, state.critic_opt_state)

    def actor_step(state, batch, key):
        def loss(denoiser):
            actor = eqx.tree_at(lambda p: p.denoiser, state.actor, denoiser)
            return agent.actor_loss(actor, state.critic, batch, key)

        (_, _), grads = eqx.filter_value_and_grad(loss, has_aux=True)(state.actor.denoiser)
        return _optimizer_step(actor_opt, state.actor.denoiser, grads, state.actor_opt_state)

    def ema_polyak(state, batch, key):
        ema = ema_update(
            state.ema_actor.denoiser,
            state.actor.denoiser,
            state.step,
            config.ema_decay,
            config.ema_start,
            config.ema_every,
        )
        return ema, optax.incremental_update(state.critic, state.target_critic, config.tau)

    return {
        "update": lambda state, batch, key: agent.update(state, batch),
        "next_actions": lambda s, b, k: s.ema_actor.sample(b.next_observations, k),
        "target_q": lambda s, b, k: s.target_critic(b.next_observations, b.actions),
        "targets": agent.critic_targets,
        "critic_fwd": lambda s, b, k: s.critic(b.observations, b.actions),
        "critic_grad": critic_grad,
        "critic_step": critic_step,
        "critic_adam": critic_adam,
        "actor_step": actor_step,
        "ema_polyak": ema_polyak,
    }


def measure(fn, state, batch, key, min_time, min_calls):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    flops, _ = bench.count_matmul_flops(fn, state, batch, key)
    bench.block(compiled(state, batch, key))
    timing = bench.time_calls(
        lambda: bench.block(compiled(state, batch, key)), 1, min_time, min_calls
    )
    return {
        "s_median": timing.median,
        "s_min": float(min(timing.wall)),
        "cpu_s": sum(timing.cpu) / len(timing.cpu),
        "calls_timed": len(timing.wall),
        "compile_s": compile_s,
        "matmul_flops": flops,
        "xla_flops": bench.xla_flops(compiled),
        "achieved_flops_per_s": flops / timing.median,
        "achieved_flops_per_cpu_s": flops * len(timing.cpu) / sum(timing.cpu),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critics", type=int, default=64)
    parser.add_argument("--diffusion-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--parts", default=",".join(parts(ERDPQE(ERDPQEConfig())).keys()))
    parser.add_argument("--variants", default="mish,mish_autodiff,mish_std,relu,identity")
    parser.add_argument(
        "--variant-parts",
        default="update,critic_grad,critic_fwd",
        help="parts measured for the activation variants other than the first",
    )
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--out", default="runs/bench/profile.json")
    args = parser.parse_args(argv)

    spec = bench.AgentSpec(
        "erdpqe", args.critics, args.diffusion_steps, batch_size=args.batch, hidden=args.hidden
    )
    agent = spec.agent()
    t_start = time.perf_counter()
    meta = bench.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    mm = bench.batched_critic_matmul(spec.num_critics, spec.batch_size, spec.hidden, 2.0)
    sq = bench.square_matmul(2048, 2.0)
    dataset = bench.synthetic_dataset(10_000, spec.obs_dim, spec.action_dim)
    batch = dataset.sample(jax.random.key(1), spec.batch_size)
    key = jax.random.key(2)

    results = {}
    variants = args.variants.split(",")
    for i, variant in enumerate(variants):
        names = args.parts.split(",") if i == 0 else args.variant_parts.split(",")
        results[variant] = {}
        # The activation is the networks' constructor argument: one state per variant.
        state = bench.block(spec.init(agent, jax.random.key(0), VARIANTS[variant]))
        fns = parts(agent)
        for name in names:
            print(f"[profile] {variant} {name} ...", flush=True)
            r = measure(fns[name], state, batch, key, args.min_time, args.min_calls)
            r["roofline_batched"] = r["achieved_flops_per_s"] / mm["flops_per_s"]
            r["roofline_batched_cpu"] = r["achieved_flops_per_cpu_s"] / mm["flops_per_cpu_s"]
            results[variant][name] = r

    payload = {
        "meta": bench.finish_meta(meta, t_start),
        "config": spec.name,
        "matmul": {"batched": mm, "square": sq},
        "results": results,
    }
    return bench.publish(payload, args.out, report)


def report(payload: dict) -> None:
    meta = payload["meta"]
    mm = payload["matmul"]["batched"]
    print(f"\n{payload['config']}: {bench.machine_line(meta)}")
    print(
        f"batched matmul {mm['a']}x{mm['b']}: {bench.fmt_si(mm['flops_per_s'], 'FLOP/s')} "
        f"({bench.fmt_si(mm['flops_per_cpu_s'], 'FLOP/CPU-s')}); square 2048: "
        f"{bench.fmt_si(payload['matmul']['square']['flops_per_s'], 'FLOP/s')} "
        f"({bench.fmt_si(payload['matmul']['square']['flops_per_cpu_s'], 'FLOP/CPU-s')})\n"
    )
    base = payload["results"].get("mish", {})
    update = base.get("update", {}).get("cpu_s")
    rows = []
    for variant, res in payload["results"].items():
        for name, r in res.items():
            ref = base.get(name, {}).get("cpu_s")
            rows.append(
                {
                    "variant": variant,
                    "part": name,
                    "ms": f"{1e3 * r['s_median']:.1f}",
                    "min": f"{1e3 * r['s_min']:.1f}",
                    "cpu": f"{1e3 * r['cpu_s']:.0f}",
                    "share": f"{100 * r['cpu_s'] / update:.0f}%" if update else "",
                    "vs": f"{r['cpu_s'] / ref:.2f}" if ref else "",
                    "flops": bench.fmt_si(r["matmul_flops"]),
                    "ach": bench.fmt_si(r["achieved_flops_per_cpu_s"]),
                    "roof": bench.pct(r["roofline_batched"], r["roofline_batched_cpu"]),
                }
            )
    bench.print_table(
        rows,
        [
            ("activation", "variant"),
            ("part", "part"),
            ("ms (median)", "ms"),
            ("ms (min)", "min"),
            ("CPU ms", "cpu"),
            ("CPU share of update", "share"),
            ("CPU vs mish", "vs"),
            ("matmul FLOP", "flops"),
            ("FLOP/CPU-s", "ach"),
            ("/batched mm (CPU)", "roof"),
        ],
    )
    print(
        "\nShares and ratios use CPU time (load-robust); the roofline is wall clock (CPU time) "
        "against the batched matmul of the critic's shapes measured in the same run."
    )


if __name__ == "__main__":
    main()
