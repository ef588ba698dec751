"""The cost of the SDE floor's input checks in the samplers' hot loops (issue 30).

The checks of issue 30 run on traced values too (`equinox.branched_error_if`); the samplers check
their grid once per call, outside the loop, so the loop itself should not slow down. This script
times one compiled sampler call (median of repeats, after compilation) on the paths a user hits:

- `PosteriorSampler` with a `noise_to_x0_predictor` (the hot loop of training and sampling), on
  the 5-step integer grid and on a 200-step grid, for a 2-d state and a batch of 256;
- the same chain through `DiffusionPolicy.sample` (its `predict_x0` calls the public, checked
  `sde.x0_from_noise` at every step);
- `ProbabilityFlowSampler` (Heun, 50 steps) with a `noise_to_score` score;
- `sde.posterior` under `jit` with traced times (one call: the checks are attached here).

Run it on the code before and after to compare, e.g. (from the repository root)

    git worktree add /tmp/sde-before <commit before the checks>
    PYTHONPATH=/tmp/sde-before python benchmarks/bench_checks.py --label before
    python benchmarks/bench_checks.py --label after

`--quick` runs tiny repeats (a smoke test); `--out` writes the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

import sdepolicy
import sdepolicy.sde as sp


def _median_time(fn, repeats: int, inner: int) -> float:
    jax.block_until_ready(fn())  # compile
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def workloads():
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
    eps = sp.noise_to_x0_predictor(sde, lambda t, x, args: 0.5 * jnp.tanh(x))
    score = sp.noise_to_score(sde, lambda t, x, args: 0.5 * jnp.tanh(x))
    post5 = sp.PosteriorSampler(sde)
    post200 = sp.PosteriorSampler(sde, times=jnp.linspace(0.0, 5.0, 201))
    flow = sp.ProbabilityFlowSampler(sde, 50, t_end=0.01)
    key = jax.random.key(0)
    small, batch = jnp.ones((2,)), jnp.ones((256, 2))
    out = {
        "posterior N=5, x (2,)": lambda: post5(eps, small, key),
        "posterior N=5, x (256, 2)": lambda: post5(eps, batch, key),
        "posterior N=200, x (2,)": lambda: post200(eps, small, key),
        "posterior N=200, x (256, 2)": lambda: post200(eps, batch, key),
        "probability flow Heun 50, x (256, 2)": lambda: flow(score, batch),
    }
    # The compiled loop alone (inside one jax.jit: no Python wrapper per call).
    loop5 = jax.jit(lambda x, k: post5(eps, x, k))
    loop200 = jax.jit(lambda x, k: post200(eps, x, k))
    out["jit(posterior N=5), x (2,)"] = lambda: loop5(small, key)
    out["jit(posterior N=200), x (2,)"] = lambda: loop200(small, key)
    out["jit(posterior N=200), x (256, 2)"] = lambda: loop200(batch, key)
    from sdepolicy.policy import DiffusionPolicy

    policy = DiffusionPolicy.create(
        11, 3, [-1.0] * 3, [1.0] * 3, key=jax.random.key(1), hidden=64, depth=2
    )
    states = jnp.zeros((256, 11))
    out["DiffusionPolicy.sample T=5, batch 256, hidden 64"] = lambda: policy.sample(states, key)
    # the same chain with the sampler built once (the loop alone, no construction)
    from sdepolicy.policy._diffusion_policy import _BatchedX0

    sampler, x0_hat = policy.sampler(), _BatchedX0(policy)
    x_T = jnp.zeros((256, 3))
    out["policy's PosteriorSampler, built once"] = lambda: sampler(x0_hat, x_T, key, states)
    posterior = jax.jit(lambda x, s, t: sde.posterior(x, x, s=s, t=t).mean)
    out["jit sde.posterior, traced s, t, x (256, 2)"] = lambda: posterior(batch, 1.0, 2.0)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    rows = {}
    for name, fn in workloads().items():
        # ~0.1 s per repeat: enough calls to average the dispatch noise of a shared machine
        once = _median_time(fn, 1, 3)
        inner = 1 if args.quick else max(1, int(0.1 / max(once, 1e-6)))
        rows[name] = _median_time(fn, repeats, inner)
    load = os.getloadavg()
    print(
        f"sdepolicy from {pathlib.Path(sdepolicy.__file__).parent} ({args.label}); "
        f"jax {jax.__version__}; load average {load[0]:.2f}"
    )
    print(f"| workload | {args.label}: µs per call |")
    print("|---|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e6:.1f} |")
    result = {
        "label": args.label,
        "us_per_call": {k: v * 1e6 for k, v in rows.items()},
        "meta": {"jax": jax.__version__, "loadavg": load},
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
