r"""Does `entropy="likelihood"` help on the two-step toy (docs/toys.md §2)?

The toy, its data, its agents and its evaluation are `toy_two_step.py`'s (imported, not
copied); only the variants differ. With the same keys as that script (actor initialisation,
batches, evaluation draws), so the rows "diffusion policy" and "+ entropy (reference)"
reproduce its "diffusion policy" and "+ entropy" rows:

- **diffusion policy**: $\alpha = 0$ (no entropy term), two critics, $\min(Q_1, Q_2)$;
- **+ entropy (reference)** / **(likelihood)**: $\alpha = 0.01$ with the reference code's
  estimator / with the policy's own entropy (`sdepolicy.policy.policy_entropy`);
- **+ entropy + LCB (reference)** / **(likelihood)**: ER-DP-QE proper, $M = 10$, LCB.

Besides the return, per variant and seed, at the start state $s_0 = 0$: the mean of the
likelihood estimate over 4,000 paths, and the entropy of the policy's (unclipped) samples by
the $m$-spacing estimator (Vasicek 1976) on 20,000 draws, a check of the bound on trained
networks; and the share of first actions at the box's edge ($|a_0| > 0.99$ after clipping).

    python examples/toy_two_step_entropy.py     # runs/toy_two_step_entropy/two_step_entropy.json
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import toy_two_step as toy
from _toy_common import Timer, config_dict, init_agents, train, write_json

from sdepolicy.policy import policy_entropy
from sdepolicy.rl import select_seed
from sdepolicy.rl.agents import ERDPQE
from sdepolicy.sde import PosteriorSampler

VARIANTS = (
    "diffusion policy",
    "+ entropy (reference)",
    "+ entropy (likelihood)",
    "+ entropy + LCB (reference)",
    "+ entropy + LCB (likelihood)",
)


def make_configs(alpha: float = 0.01) -> dict:
    base = toy.make_configs(alpha=alpha)
    lik = lambda c: dataclasses.replace(c, entropy="likelihood")  # noqa: E731
    return {
        "diffusion policy": base["diffusion policy"],
        "+ entropy (reference)": base["+ entropy"],
        "+ entropy (likelihood)": lik(base["+ entropy"]),
        "+ entropy + LCB (reference)": base["+ entropy + LCB"],
        "+ entropy + LCB (likelihood)": lik(base["+ entropy + LCB"]),
    }


def spacing_entropy(x: np.ndarray) -> float:
    """Vasicek's m-spacing estimate of a 1-D differential entropy, m = sqrt(n)."""
    x = np.sort(np.asarray(x, np.float64))
    n = x.size
    m = int(round(np.sqrt(n)))
    upper = x[np.minimum(np.arange(n) + m, n - 1)]
    lower = x[np.maximum(np.arange(n) - m, 0)]
    return float(np.mean(np.log(n / (2 * m) * np.maximum(upper - lower, 1e-300))))


@eqx.filter_jit
def _start_state_entropy(actor, key):
    k_est, k_draw = jax.random.split(key)
    states = toy.obs(jnp.zeros((4000,)), 0)
    estimate = jnp.mean(policy_entropy(actor, states, k_est))
    # The policy's own chain without the output clip (the law the estimate is about).
    sampler = PosteriorSampler(actor.sde, x0_bounds=actor.sampler().x0_bounds)
    s0 = toy.obs(jnp.zeros((1,)), 0)[0]

    def predict(t, x, state):
        return actor.sde.x0_from_noise(x, actor.predict_noise(t, x, state), t=t)

    def draw(k):
        k_T, k_chain = jax.random.split(k)
        x_T = jax.random.normal(k_T, (1,))
        return sampler(predict, x_T, k_chain, s0)[0]

    return estimate, jax.vmap(draw)(jax.random.split(k_draw, 20_000))


def run(steps: int = 5000, seeds: int = 5, episodes: int = 1000) -> dict:
    data, info = toy.make_dataset(0)
    configs = make_configs()
    a_grid = np.linspace(-1.0, 1.0, 201)
    results = {"optimal_return": toy.optimal_return(), "variants": {}}
    # The same keys as toy_two_step.run: paired seeds differ only in the config.
    k_init, k_train, k_eval = jax.random.split(jax.random.key(1), 3)
    for name in VARIANTS:
        config = configs[name]
        timer = Timer()
        agent = ERDPQE(config)
        states = init_agents(agent, 2, 1, toy.LOW, toy.HIGH, k_init, num_seeds=seeds)
        states, metrics = train(
            agent, data, states, k_train, steps=steps, steps_per_call=500, label=name,
            seeds=seeds,
        )  # fmt: skip
        train_time = timer.as_dict()
        ev = toy.evaluate(config, states, seeds, k_eval, episodes, a_grid)
        estimates, spacings = [], []
        for i in range(seeds):
            est, draws = _start_state_entropy(select_seed(states, i).actor, jax.random.key(7))
            estimates.append(float(est))
            spacings.append(spacing_entropy(np.asarray(draws)))
        results["variants"][name] = {
            "returns": [float(r) for r in ev["returns"]],
            "return_mean": float(np.mean(ev["returns"])),
            "return_std": float(np.std(ev["returns"])),
            "edge_share_a0": [float(np.mean(np.abs(a) > 0.99)) for a in ev["a0"]],
            "likelihood_estimate_s0": estimates,
            "spacing_entropy_s0": spacings,
            "final_entropy_metric": float(np.mean(metrics["entropy"][:, -100:])),
            "train_time": train_time,
            "config": config_dict(config),
        }
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/toy_two_step_entropy")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--episodes", type=int, default=1000)
    args = p.parse_args(argv)
    timer = Timer()
    results = run(args.steps, args.seeds, args.episodes)
    results["total_time"] = timer.as_dict()
    out = pathlib.Path(args.out)
    write_json(out / "two_step_entropy.json", results)
    print(f"\n{'variant':<30s} {'return':>15s}   per seed   | H est. (s0) | H spacing (s0)")
    for name, r in results["variants"].items():
        per = " ".join(f"{x:.2f}" for x in r["returns"])
        est = np.mean(r["likelihood_estimate_s0"])
        spc = np.mean(r["spacing_entropy_s0"])
        print(
            f"{name:<30s} {r['return_mean']:.3f} ± {r['return_std']:.3f}   {per} | "
            f"{est:+.3f} | {spc:+.3f}   train {r['train_time']}"
        )
    print(f"total {results['total_time']}; wrote {out}/two_step_entropy.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
