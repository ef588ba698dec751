"""Prototype: the Q-ensemble's forward pass in a feature-major layout, `[M, features, batch]`.

`QEnsemble.__call__` keeps activations as `[M, batch, features]`. Its first layer,
`einsum("bi,moi->mbo", x, W0)`, has no batch dimension on `x`: XLA computes it as one matmul
`[batch, M*out]` and then TRANSPOSES the 16.8 MB result (M = 64, batch 256, hidden 256) to
`[M, batch, out]`; the backward pass transposes again. On this CPU the transpose costs ~9x the
matmul itself (`--micro` below). With activations `[M, out, batch]` and the library's weight
layout `(M, out, in)`, every layer is a plain (batched) matmul with no transpose:

    h_1 = mish(W_0 @ x^T + b_0)            # (M*out, in) @ (in, batch), reshaped: no transpose
    h_j = mish(W_j @ h_{j-1} + b_j)        # batched (M, out, in) @ (M, in, batch)
    q   = w_out . h + b_out                # (M, batch)

Same parameters, same function (checked here to float32 rounding), so it is a drop-in body for
`QEnsemble.__call__`. This script measures it as a what-if by replacing `QEnsemble.__call__`
in this process (the library is not edited): microbenchmarks of the first layer, then parts of
the ER-DP-QE update (as `profile_update.py`) for both layouts, with the library's Mish and with
the proposed closed-form-derivative Mish.

Run: `python benchmarks/proto_critic_layout.py [--critics 64] [--micro-only]`. Writes JSON to
`--out` (default runs/bench/critic_layout.json).
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bc  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import profile_update as pu  # noqa: E402

import sdepolicy.rl.critics as critics  # noqa: E402


def feature_major_call(self, states, actions):
    """`QEnsemble.__call__` computed with activations `[M, features, batch]`."""
    x = jnp.concatenate([states, actions], axis=-1)  # (batch, in)
    (w0, *ws), (b0, *bs) = self.weights, self.biases
    m, out, inp = w0.shape
    # (M*out, in) @ (in, batch): the input is shared by all members, one plain matmul.
    z = (w0.reshape(m * out, inp) @ x.T).reshape(m, out, -1) + b0[:, :, None]
    h = critics.mish(z)
    for w, b in zip(ws[:-1], bs[:-1], strict=True):
        h = critics.mish(jnp.einsum("moi,mib->mob", w, h) + b[:, :, None])
    return jnp.einsum("mi,mib->mb", ws[-1][:, 0, :], h) + bs[-1]


@contextlib.contextmanager
def layout(name: str):
    if name == "library":
        yield
        return
    saved = critics.QEnsemble.__call__
    critics.QEnsemble.__call__ = feature_major_call
    try:
        yield
    finally:
        critics.QEnsemble.__call__ = saved


def check_equal(spec) -> float:
    config = spec.config()
    state = spec.init(config, jax.random.key(0))
    ds = bc.synthetic_dataset(512, spec.obs_dim, spec.action_dim)
    q_lib = state.critic(ds.observations, ds.actions)
    q_fm = feature_major_call(state.critic, ds.observations, ds.actions)
    return float(jnp.max(jnp.abs(q_lib - q_fm)) / jnp.max(jnp.abs(q_lib)))


def micro(members: int, batch: int, hidden: int, in_dim: int, min_time: float) -> dict:
    """The first layer alone: the library's einsum against the feature-major matmul."""
    x = jax.random.normal(jax.random.key(0), (batch, in_dim))
    w = jax.random.normal(jax.random.key(1), (members, hidden, in_dim))
    flops = 2 * batch * in_dim * members * hidden
    fns = {
        "einsum bi,moi->mbo (library)": lambda x, w: jnp.einsum("bi,moi->mbo", x, w),
        "(M*out, in) @ x^T (feature-major)": lambda x, w: (
            w.reshape(members * hidden, in_dim) @ x.T
        ).reshape(members, hidden, batch),
    }
    out = {}
    for name, f in fns.items():
        c = jax.jit(f).lower(x, w).compile()
        bc.block(c(x, w))
        t = bc.time_calls(lambda c=c: bc.block(c(x, w)), 1, min_time, 10)
        cpu = sum(t.cpu) / len(t.cpu)
        out[name] = {"cpu_ms": 1e3 * cpu, "wall_ms_median": 1e3 * t.median, "flops": flops}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critics", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--parts", default="update,critic_fwd,critic_grad,actor_step")
    parser.add_argument("--activations", default="mish,mish_jvp")
    parser.add_argument("--micro-only", action="store_true")
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--out", default="runs/bench/critic_layout.json")
    args = parser.parse_args(argv)
    spec = bc.AgentSpec("erdpqe", args.critics, 5, batch_size=args.batch, hidden=args.hidden)
    t_start = time.perf_counter()
    meta = bc.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    rel_err = check_equal(spec)
    print(f"feature-major vs library Q: max relative difference {rel_err:.2e}")
    m = micro(spec.num_critics, spec.batch_size, spec.hidden, spec.obs_dim + spec.action_dim, 2.0)
    for name, r in m.items():
        print(f"  first layer, {name}: {r['cpu_ms']:.2f} CPU ms")
    results = {}
    if not args.micro_only:
        mm = bc.batched_critic_matmul(spec.num_critics, spec.batch_size, spec.hidden, 2.0)
        config = spec.config()
        state = bc.block(spec.init(config, jax.random.key(0)))
        batch = bc.synthetic_dataset(10_000, spec.obs_dim, spec.action_dim).sample(
            jax.random.key(1), spec.batch_size
        )
        key = jax.random.key(2)
        for act in args.activations.split(","):
            for lay in ("library", "feature_major"):
                name = f"{lay}+{act}"
                results[name] = {}
                with pu.activation(pu.VARIANTS[act]), layout(lay):
                    fns = pu.parts(config)
                    for part in args.parts.split(","):
                        print(f"[layout] {name} {part} ...", flush=True)
                        r = pu.measure(fns[part], state, batch, key, args.min_time, args.min_calls)
                        r["roofline_batched_cpu"] = (
                            r["achieved_flops_per_cpu_s"] / mm["flops_per_cpu_s"]
                        )
                        results[name][part] = r
        meta["batched_matmul"] = mm
    payload = {
        "meta": bc.finish_meta(meta, t_start),
        "config": spec.name,
        "max_relative_difference": rel_err,
        "first_layer": m,
        "results": results,
    }
    path = bc.write_json(args.out, payload)
    report(payload)
    print(f"wrote {path}")
    return payload


def report(payload: dict) -> None:
    meta = payload["meta"]
    print(
        f"\n{payload['config']}: {meta['cpu']}, {meta['cpu_count']} cores; {bc.load_note(meta)}\n"
    )
    base = payload["results"].get("library+mish", {})
    rows = []
    for name, res in payload["results"].items():
        for part, r in res.items():
            ref = base.get(part, {}).get("cpu_s")
            rows.append(
                {
                    "variant": name,
                    "part": part,
                    "cpu": f"{1e3 * r['cpu_s']:.0f}",
                    "wall": f"{1e3 * r['s_median']:.0f}",
                    "vs": f"{r['cpu_s'] / ref:.2f}" if ref else "",
                    "roof": f"{100 * r['roofline_batched_cpu']:.0f}%",
                }
            )
    if rows:
        bc.print_table(
            rows,
            [
                ("layout+activation", "variant"),
                ("part", "part"),
                ("CPU ms", "cpu"),
                ("wall ms (median)", "wall"),
                ("CPU vs library+mish", "vs"),
                ("/batched mm (CPU)", "roof"),
            ],
        )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
