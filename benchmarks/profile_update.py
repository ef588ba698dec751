"""Where the time of one ER-DP-QE update goes, and what-ifs (docs/method.md §11: the 64-critic update is
compute-bound on a CPU; how far is it from the matmul roofline, and why?).

Parts of one update (hopper sizes, batch 256, hidden 256, M = 64 by default), each its own
jitted function on the same inputs, timed after compilation:

- `update`: the whole `erdpqe.update`;
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

What-ifs (`--variants`), by swapping the activation the library's networks call
(`sdepolicy.rl.critics.mish` and `sdepolicy.policy.networks.mish`, monkeypatched in this
process only; nothing in the library is edited):

- `mish`: the library's exact one-exponential Mish with its closed-form derivative rule (a
  `jax.custom_jvp`; the baseline);
- `mish_autodiff`: the same formula differentiated by autodiff (the library before its speed
  work: the backward pass replays the forward expression's dozen elementwise operations);
- `mish_std`: the textbook `x * tanh(softplus(x))`;
- `relu`: ReLU (a lower bound: what any activation costs at least);
- `mish_vjp`: the closed-form derivative as a `jax.custom_vjp` whose only residual is the input,
  the slope recomputed in the backward pass instead of kept (reverse mode only);
- `identity`: no activation at all (the matmuls, bias adds and the rest of the step only).

The Q-ensemble's hand-written backward pass keeps Mish's slope from the forward pass
(`sdepolicy.policy.mish_and_slope`) whatever the variant; the variants change the denoiser's and
the plain (`critic_backward="autodiff"`) ensemble's activation.

Run: `python benchmarks/profile_update.py [--critics 64] [--variants mish,relu,...]`. Writes
JSON to `--out` (default runs/bench/profile.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bc  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import sdepolicy.policy.networks as networks  # noqa: E402
from sdepolicy.rl.agents import common, erdpqe  # noqa: E402

# --- activation variants ------------------------------------------------------------------------

_LIBRARY_MISH = networks.mish  # kept: the what-ifs below replace the name in the library


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
    return _LIBRARY_MISH(x)


mish_vjp.defvjp(
    lambda x: (_LIBRARY_MISH(x), x), lambda x, ct: (networks.mish_and_slope(x)[1] * ct,)
)


VARIANTS = {
    "mish": None,  # the library as it is
    "mish_std": mish_std,
    "relu": relu,
    "mish_autodiff": bc.mish_autodiff,
    "mish_vjp": mish_vjp,
    "identity": identity,
}


# --- the parts of one update --------------------------------------------------------------------


def parts(config):
    """`name -> f(state, batch, key)` pieces of `erdpqe.update` (the same calls, in pieces)."""
    critic_opt = common.make_optimizer(config.critic_lr, config.grad_norm)
    actor_opt = common.make_optimizer(config.actor_lr, config.grad_norm)

    def targets(state, batch, key):
        nv = common.next_state_values(
            state.ema_actor,
            state.target_critic,
            batch.next_observations,
            key,
            config.max_q_backup,
            config.max_q_samples,
        )
        return common.td_targets(batch.rewards, batch.terminals, nv, config.gamma)

    def fake_targets(state, batch):
        # Shapes of the TD targets, without computing them (for the critic-only parts).
        return jnp.broadcast_to(batch.rewards, (config.num_critics, batch.rewards.shape[0]))

    def critic_grad(state, batch, key):
        # The call erdpqe.update makes: loss, Q and gradients of the per-member MSE.
        y = fake_targets(state, batch)
        return state.critic.squared_error_and_grad(
            batch.observations, batch.actions, y, 1.0 / y.size
        )

    def critic_step(state, batch, key):
        _, _, grads = critic_grad(state, batch, key)
        return common.apply_gradients(critic_opt, state.critic, grads, state.critic_opt_state)

    def critic_adam(state, batch, key):
        grads = jax.tree.map(lambda x: x * 1e-3, common.trainable(state.critic))
        return common.apply_gradients(critic_opt, state.critic, grads, state.critic_opt_state)

    def actor_step(state, batch, key):
        (loss, aux), grads = eqx.filter_value_and_grad(
            lambda d: erdpqe.actor_loss(config, d, state.actor, state.critic, batch, key),
            has_aux=True,
        )(state.actor.denoiser)
        return common.apply_gradients(actor_opt, state.actor.denoiser, grads, state.actor_opt_state)

    def ema_polyak(state, batch, key):
        ema = common.ema_update(
            state.ema_actor.denoiser,
            state.actor.denoiser,
            state.step,
            config.ema_decay,
            config.ema_start,
            config.ema_every,
        )
        return ema, common.polyak(state.target_critic, state.critic, config.tau)

    return {
        "update": lambda state, batch, key: erdpqe.update(config, state, batch),
        "next_actions": lambda s, b, k: s.ema_actor.sample(b.next_observations, k),
        "target_q": lambda s, b, k: s.target_critic(b.next_observations, b.actions),
        "targets": targets,
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
    flops, _ = bc.count_matmul_flops(fn, state, batch, key)
    bc.block(compiled(state, batch, key))
    timing = bc.time_calls(lambda: bc.block(compiled(state, batch, key)), 1, min_time, min_calls)
    return {
        "s_median": timing.median,
        "s_min": float(min(timing.wall)),
        "cpu_s": sum(timing.cpu) / len(timing.cpu),
        "calls_timed": len(timing.wall),
        "compile_s": compile_s,
        "matmul_flops": flops,
        "xla_flops": bc.xla_flops(compiled),
        "achieved_flops_per_s": flops / timing.median,
        "achieved_flops_per_cpu_s": flops * len(timing.cpu) / sum(timing.cpu),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critics", type=int, default=64)
    parser.add_argument("--diffusion-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--parts", default=",".join(parts(erdpqe.ERDPQEConfig()).keys()))
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

    spec = bc.AgentSpec(
        "erdpqe", args.critics, args.diffusion_steps, batch_size=args.batch, hidden=args.hidden
    )
    config = spec.config()
    t_start = time.perf_counter()
    meta = bc.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    mm = bc.batched_critic_matmul(spec.num_critics, spec.batch_size, spec.hidden, 2.0)
    sq = bc.square_matmul(2048, 2.0)
    state = bc.block(spec.init(config, jax.random.key(0)))
    dataset = bc.synthetic_dataset(10_000, spec.obs_dim, spec.action_dim)
    batch = dataset.sample(jax.random.key(1), spec.batch_size)
    key = jax.random.key(2)

    results = {}
    variants = args.variants.split(",")
    for i, variant in enumerate(variants):
        names = args.parts.split(",") if i == 0 else args.variant_parts.split(",")
        results[variant] = {}
        with bc.swap_activation(VARIANTS[variant]):
            fns = parts(config)
            for name in names:
                print(f"[profile] {variant} {name} ...", flush=True)
                r = measure(fns[name], state, batch, key, args.min_time, args.min_calls)
                r["roofline_batched"] = r["achieved_flops_per_s"] / mm["flops_per_s"]
                r["roofline_batched_cpu"] = r["achieved_flops_per_cpu_s"] / mm["flops_per_cpu_s"]
                results[variant][name] = r

    payload = {
        "meta": bc.finish_meta(meta, t_start),
        "config": spec.name,
        "matmul": {"batched": mm, "square": sq},
        "results": results,
    }
    return bc.publish(payload, args.out, report)


def report(payload: dict) -> None:
    meta = payload["meta"]
    mm = payload["matmul"]["batched"]
    print(f"\n{payload['config']}: {bc.machine_line(meta)}")
    print(
        f"batched matmul {mm['a']}x{mm['b']}: {bc.fmt_si(mm['flops_per_s'], 'FLOP/s')} "
        f"({bc.fmt_si(mm['flops_per_cpu_s'], 'FLOP/CPU-s')}); square 2048: "
        f"{bc.fmt_si(payload['matmul']['square']['flops_per_s'], 'FLOP/s')} "
        f"({bc.fmt_si(payload['matmul']['square']['flops_per_cpu_s'], 'FLOP/CPU-s')})\n"
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
                    "flops": bc.fmt_si(r["matmul_flops"]),
                    "ach": bc.fmt_si(r["achieved_flops_per_cpu_s"]),
                    "roof": bc.pct(r["roofline_batched"], r["roofline_batched_cpu"]),
                }
            )
    bc.print_table(
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
