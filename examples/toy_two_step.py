r"""A two-step toy in the spirit of ER-DP-QE's Figure 1 (docs/method.md §10): diffusion policy vs
+ entropy vs + entropy + Q-ensemble LCB, five seeds each.

**The task** (our design; the paper only describes it in words):

- 1-D state, $s_0 = 0$; two steps $s_{i+1} = \operatorname{clip}(s_i + a_i, -2, 2)$ with
  $a_i \in [-1, 1]$; the observation is $(s_i, i)$ so that the problem is Markov (the same
  position means different things before and after the first step).
- Reward only at the end, a mixture of two Gaussian bumps over the final state,
  $r(s_2) = 1.0\,e^{-(s_2 + 1)^2 / (2 \cdot 0.3^2)} + 3.0\,e^{-(s_2 - 1.5)^2 / (2 \cdot 0.25^2)}$:
  a small bump at $-1$ and a high one at $+1.5$. The best return, 3, needs
  $a_0 + a_1 = 1.5$ (so $a_0 \in [0.5, 1]$).
- Unbalanced offline data: 5,000 episodes (10,000 transitions). An episode comes from a
  "cautious" behaviour policy, $a_i \sim \mathcal N(-0.5, 0.25^2)$ clipped, which ends near
  the small bump, or with probability `--explore` (default 0.05) from an "explorer",
  $a_i \sim \mathcal N(0.75, 0.3^2)$ clipped, whose final states spread around the high bump
  (and past it, to the wall at 2). With the default data seed: 259 explorer episodes, 157 of
  them ending with $r > 1.5$ (3 % of the data); mean data return 0.71.
- Transitions: $(s_0, a_0, r = 0, s_1, \text{terminal} = 0)$ and
  $(s_1, a_1, r(s_2), s_2, \text{terminal} = 1)$; $\gamma = 0.99$.

**True optimal Q** at the start, by brute force over the second step:
$Q^*(s_0 = 0, a_0) = \gamma \max_{a_1 \in [-1, 1]} r(\operatorname{clip}(a_0 + a_1, -2, 2))$
(a grid of 2001 second actions).

**Agents**: all three are `sdepolicy.rl.ERDPQE` (T = 5 cosine schedule, batch 100,
width 64, critics initialised as the reference code's, docs/method.md §6.1, $\eta = 1$, Adam
$3\cdot10^{-4}$), with the noise-matching loss and $\hat x_0$ clipping (the paper's
AntMaze/Adroit setting; with MLL and no clipping, the locomotion setting, the sampler puts most
actions on the box's edges, see `docs/toys.md`). They differ only in the parts the paper adds:

- **diffusion policy**: $\alpha = 0$, $M = 2$ critics, the actor maximises $\min(Q_1, Q_2)$
  (clipped double Q, as Diffusion-QL); `lcb_beta` $= 1/\sqrt 2$ so that `act`'s LCB over two
  members *is* $\min(Q_1, Q_2)$ (for $M = 2$, $\bar Q - \hat\sigma/\sqrt 2 = \min$);
- **+ entropy**: the same with $\alpha$ = `--alpha` (default 0.01, the paper's), reference
  entropy estimator;
- **+ entropy + LCB**: ER-DP-QE proper, $M$ = `--num-critics` (default 10), actor and `act`
  on the LCB $\bar Q - 4\hat\sigma$.

Each variant trains all seeds at once (`init_seeds`, `make_seeds_train_fn`), and seed $i$ of
every variant uses the same keys (actor initialisation, batches, evaluation draws), so paired
seeds differ only in the variant's config. The return of a seed is the mean final reward of
`--episodes` episodes played with the agent's `act` (50 candidates, softmax over the target
critics' aggregate).

    python examples/toy_two_step.py               # runs/toy_two_step/{two_step.png,two_step.json}
    python examples/toy_two_step.py --explore 0.1 --out runs/two_step_ex10
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _toy_common import (
    Timer,
    config_dict,
    init_agents,
    save_figure,
    total_line,
    train,
    write_json,
)

from sdepolicy.rl import Transitions, aggregate_q, select_seed
from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig

S_MAX = 2.0
GAMMA = 0.99
# (height, centre, width) of the reward bumps over the final state.
BUMPS = ((1.0, -1.0, 0.3), (3.0, 1.5, 0.25))
CAUTIOUS_MEAN, CAUTIOUS_STD = -0.5, 0.25
EXPLORER_MEAN, EXPLORER_STD = 0.75, 0.3
VARIANTS = ("diffusion policy", "+ entropy", "+ entropy + LCB")
LOW = -np.ones(1, np.float32)
HIGH = np.ones(1, np.float32)


def reward(s):
    """$r(s_2)$: the mixture of Gaussian bumps (works on NumPy and JAX arrays)."""
    xp = jnp if isinstance(s, jax.Array) else np
    return sum(h * xp.exp(-((s - c) ** 2) / (2 * w**2)) for h, c, w in BUMPS)


def step(s, a):
    """$s' = \\operatorname{clip}(s + \\operatorname{clip}(a, -1, 1), -2, 2)$."""
    xp = jnp if isinstance(s, jax.Array) else np
    return xp.clip(s + xp.clip(a, -1.0, 1.0), -S_MAX, S_MAX)


def obs(s, i):
    """The observation $(s, i)$ for positions `s` (shape `(n,)`) at step `i`."""
    xp = jnp if isinstance(s, jax.Array) else np
    return xp.stack([s, xp.full_like(s, float(i))], axis=-1)


def true_q0(a0: np.ndarray, gamma: float = GAMMA, num_a1: int = 2001) -> np.ndarray:
    """$Q^*(s_0 = 0, a_0) = \\gamma \\max_{a_1} r(\\operatorname{clip}(a_0 + a_1))$, by brute
    force over a grid of `num_a1` second actions in $[-1, 1]$."""
    a1 = np.linspace(-1.0, 1.0, num_a1)
    s1 = step(np.zeros_like(np.asarray(a0, np.float64)), np.asarray(a0, np.float64))
    return gamma * np.max(reward(step(s1[:, None], a1[None, :])), axis=1)


def true_v1(s1: np.ndarray, num_a1: int = 2001) -> np.ndarray:
    """$V^*(s_1) = \\max_{a_1} r(\\operatorname{clip}(s_1 + a_1))$ (brute force)."""
    a1 = np.linspace(-1.0, 1.0, num_a1)
    return np.max(reward(step(np.asarray(s1, np.float64)[:, None], a1[None, :])), axis=1)


def optimal_return(num: int = 2001) -> float:
    """$\\max_{a_0} V^*(\\operatorname{clip}(a_0))$: the best achievable return."""
    return float(np.max(true_v1(np.linspace(-1.0, 1.0, num))))


def make_dataset(
    seed: int = 0, episodes: int = 5000, explore: float = 0.05
) -> tuple[Transitions, dict[str, np.ndarray]]:
    """The unbalanced offline data (module docstring).

    **Returns:** `(transitions, info)`, transitions ordered as all first steps then all second
    steps; `info` has per-episode `a0`, `a1`, `s2`, `reward`, `explorer` (bool: which
    behaviour).
    """
    rng = np.random.default_rng(seed)
    explorer = rng.random(episodes) < explore
    cautious = CAUTIOUS_MEAN + CAUTIOUS_STD * rng.standard_normal((episodes, 2))
    bold = EXPLORER_MEAN + EXPLORER_STD * rng.standard_normal((episodes, 2))
    a = np.clip(np.where(explorer[:, None], bold, cautious), -1.0, 1.0).astype(np.float32)
    s0 = np.zeros(episodes, np.float32)
    s1 = step(s0, a[:, 0]).astype(np.float32)
    s2 = step(s1, a[:, 1]).astype(np.float32)
    r = reward(s2).astype(np.float32)
    zeros, ones = np.zeros(episodes, np.float32), np.ones(episodes, np.float32)
    data = Transitions(
        observations=jnp.asarray(np.concatenate([obs(s0, 0), obs(s1, 1)])),
        actions=jnp.asarray(np.concatenate([a[:, :1], a[:, 1:]])),
        rewards=jnp.asarray(np.concatenate([zeros, r])),
        next_observations=jnp.asarray(np.concatenate([obs(s1, 1), obs(s2, 2)])),
        terminals=jnp.asarray(np.concatenate([zeros, ones])),
    )
    info = {"a0": a[:, 0], "a1": a[:, 1], "s2": s2, "reward": r, "explorer": explorer}
    return data, info


def make_configs(
    hidden: int = 64, num_critics: int = 10, alpha: float = 0.01, batch_size: int = 100
) -> dict[str, ERDPQEConfig]:
    """The three variants (module docstring)."""
    # NML with x0 clipping (the paper's AntMaze/Adroit setting): with T = 5, MLL-trained noise
    # predictions read as noise by the sampler put most samples on the box's edges (docs/toys.md).
    base = ERDPQEConfig(hidden=hidden, batch_size=batch_size, gamma=GAMMA, loss="nml", x0_clip=True)
    # For M = 2, mean - std/sqrt(2) (unbiased std) = min(Q1, Q2): `act` then picks by min.
    pair = dict(num_critics=2, q_aggregate="min", lcb_beta=1 / math.sqrt(2))
    return {
        "diffusion policy": dataclasses.replace(base, alpha=0.0, **pair),
        "+ entropy": dataclasses.replace(base, alpha=alpha, **pair),
        "+ entropy + LCB": dataclasses.replace(
            base, alpha=alpha, num_critics=num_critics, q_aggregate="lcb", lcb_beta=4.0
        ),
    }


@eqx.filter_jit
def _rollout(config, state, key, episodes: int):
    """Final rewards and states of `episodes` two-step episodes played with `ERDPQE.act`."""
    agent = ERDPQE(config)
    k0, k1 = jax.random.split(key)
    s0 = jnp.zeros((episodes,))
    a0 = agent.act(state, obs(s0, 0), k0)[:, 0]
    s1 = step(s0, a0)
    a1 = agent.act(state, obs(s1, 1), k1)[:, 0]
    s2 = step(s1, a1)
    return reward(s2), a0, s2


@eqx.filter_jit
def _q_curve(config, state, a_grid):
    """Ensemble mean and the actor's pessimistic aggregate of $Q(s_0 = 0, a)$, target critic."""
    o = obs(jnp.zeros_like(a_grid), 0)
    q = state.target_critic(o, a_grid[:, None])
    return jnp.mean(q, axis=0), aggregate_q(q, config.q_aggregate, config.lcb_beta), q


def evaluate(config, states, num_seeds: int, key, episodes: int, a_grid) -> dict:
    """Per seed: mean return, first actions, final states, and the Q curve at $s_0 = 0$."""
    out = {"returns": [], "a0": [], "s2": [], "q_mean": [], "q_pess": [], "q_lcb4": []}
    for i, k in enumerate(jax.random.split(key, num_seeds)):
        state = select_seed(states, i)
        r, a0, s2 = _rollout(config, state, k, episodes)
        mean, pess, q = _q_curve(config, state, jnp.asarray(a_grid, jnp.float32))
        out["returns"].append(float(jnp.mean(r)))
        out["a0"].append(np.asarray(a0))
        out["s2"].append(np.asarray(s2))
        out["q_mean"].append(np.asarray(mean))
        out["q_pess"].append(np.asarray(pess))
        # mean - 4 std for every variant, comparable across them (for M = 2 a loose bound).
        out["q_lcb4"].append(np.asarray(aggregate_q(q, "lcb", 4.0)))
    return {k: np.asarray(v) for k, v in out.items()}


def run(
    *,
    steps: int = 5000,
    seeds: int = 5,
    hidden: int = 64,
    num_critics: int = 10,
    alpha: float = 0.01,
    batch_size: int = 100,
    episodes: int = 1000,
    data_seed: int = 0,
    explore: float = 0.05,
    steps_per_call: int = 500,
    variants=VARIANTS,
    quiet: bool = False,
) -> dict:
    """Train every variant on `seeds` seeds at once and evaluate them (module docstring)."""
    data, info = make_dataset(data_seed, explore=explore)
    configs = make_configs(hidden, num_critics, alpha, batch_size)
    a_grid = np.linspace(-1.0, 1.0, 201)
    results = {
        "task": "two-step toy (ER-DP-QE Figure 1 style)",
        "settings": dict(
            steps=steps,
            seeds=seeds,
            hidden=hidden,
            num_critics=num_critics,
            alpha=alpha,
            batch_size=batch_size,
            episodes=episodes,
            data_seed=data_seed,
            explore=explore,
            gamma=GAMMA,
            bumps=BUMPS,
        ),
        "optimal_return": optimal_return(),
        "data": {
            "mean_return": float(np.mean(info["reward"])),
            "explorer_episodes": int(np.sum(info["explorer"])),
            "episodes_reaching_high_bump": int(np.sum(info["reward"] > 1.5)),
        },
        "a_grid": a_grid,
        "true_q0": true_q0(a_grid),
        "variants": {},
    }
    # Common random numbers: every variant starts from the same keys (same actor initialisation,
    # same batches, same evaluation draws), so the variants differ only in their configs.
    k_init, k_train, k_eval = jax.random.split(jax.random.key(1), 3)
    for name in variants:
        config = configs[name]
        timer = Timer()
        agent = ERDPQE(config)
        states = init_agents(agent, 2, 1, LOW, HIGH, k_init, num_seeds=seeds)
        states, metrics = train(
            agent,
            data,
            states,
            k_train,
            steps=steps,
            steps_per_call=min(steps_per_call, steps),
            label=name,
            seeds=seeds,
            quiet=quiet,
        )
        train_time = timer.as_dict()
        ev = evaluate(config, states, seeds, k_eval, episodes, a_grid)
        ev["return_mean"] = float(np.mean(ev["returns"]))
        ev["return_std"] = float(np.std(ev["returns"]))
        ev["train_time"] = train_time
        ev["config"] = config_dict(config)
        ev["final_metrics"] = {k: float(np.mean(v[:, -100:])) for k, v in metrics.items()}
        results["variants"][name] = ev
    return results


def plot(results: dict, path: pathlib.Path, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["variants"])
    colours = dict(zip(VARIANTS, ("tab:orange", "tab:blue", "tab:green"), strict=True))
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4.6 * (1 + len(names)), 4.2))
    ax = axes[0]
    s = np.linspace(-S_MAX, S_MAX, 401)
    ax.plot(s, reward(s), "k", lw=2, label="reward $r(s_2)$")
    bins = np.linspace(-S_MAX, S_MAX, 61)
    h, _ = np.histogram(info["s2"], bins=bins, density=True)
    ax.stairs(h, bins, color="0.6", fill=True, alpha=0.5, label="data $s_2$ (density)")
    for name in names:
        r = results["variants"][name]
        h, _ = np.histogram(np.concatenate(list(r["s2"])), bins=bins, density=True)
        ax.stairs(
            h,
            bins,
            color=colours.get(name),
            lw=1.5,
            label=f"{name}: {r['return_mean']:.2f} ± {r['return_std']:.2f}",
        )
    ax.set_xlabel("final state $s_2$")
    ax.set_title(
        f"reward, data and final states\n(return, mean ± std over seeds; "
        f"optimum {results['optimal_return']:.2f})",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    a = np.asarray(results["a_grid"])
    for ax, name in zip(axes[1:], names, strict=True):
        r = results["variants"][name]
        c = colours.get(name)
        pess_label = (
            "LCB $\\bar Q - 4\\sigma$"
            if r["config"]["q_aggregate"] == "lcb"
            else ("$\\min(Q_1, Q_2)$")
        )
        for i, (qm, qp) in enumerate(zip(r["q_mean"], r["q_pess"], strict=True)):
            ax.plot(a, qm, color=c, lw=1, alpha=0.8, label="ensemble mean" if i == 0 else None)
            ax.plot(a, qp, color=c, lw=1, ls="--", alpha=0.8, label=pess_label if i == 0 else None)
        ax.plot(a, results["true_q0"], "k", lw=2, label="true $Q^*(0, a_0)$")
        twin = ax.twinx()
        twin.hist(info["a0"], bins=np.linspace(-1, 1, 41), color="0.6", alpha=0.35)
        twin.set_yscale("log")
        twin.set_yticks([])
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set_xlabel("first action $a_0$ at $s_0 = 0$")
        ax.set_ylim(-1.0, 4.0)
        ax.set_title(
            f"{name}: Q(0, a), {len(r['q_mean'])} seeds\n(grey: data $a_0$, log scale)", fontsize=9
        )
        ax.legend(fontsize=7, loc="upper left")
    st = results["settings"]
    fig.suptitle(
        f"Two-step toy: {st['steps']} steps, {st['seeds']} seeds, "
        f"alpha={st['alpha']}, M={st['num_critics']}",
        fontsize=10,
    )
    save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/toy_two_step", help="output folder")
    p.add_argument("--steps", type=int, default=5000, help="gradient steps per seed")
    p.add_argument("--seeds", type=int, default=5, help="seeds trained together per variant")
    p.add_argument("--hidden", type=int, default=64, help="width of every network")
    p.add_argument("--num-critics", type=int, default=10, help="M of the LCB variant")
    p.add_argument("--alpha", type=float, default=0.01, help="entropy weight")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--episodes", type=int, default=1000, help="evaluation episodes per seed")
    p.add_argument("--explore", type=float, default=0.05, help="share of explorer episodes")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--steps-per-call", type=int, default=500, help="updates fused per call")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    timer = Timer()
    results = run(
        steps=args.steps,
        seeds=args.seeds,
        hidden=args.hidden,
        num_critics=args.num_critics,
        alpha=args.alpha,
        batch_size=args.batch_size,
        episodes=args.episodes,
        data_seed=args.data_seed,
        explore=args.explore,
        steps_per_call=args.steps_per_call,
        variants=tuple(args.variants),
    )
    results["total_time"] = timer.as_dict()
    _, info = make_dataset(args.data_seed, explore=args.explore)
    plot(results, out / "two_step.png", info)
    for r in results["variants"].values():
        for k in ("a0", "s2"):
            r.pop(k)
    write_json(out / "two_step.json", results)
    d = results["data"]
    print(
        f"\ndata: mean return {d['mean_return']:.3f}, {d['explorer_episodes']} explorer episodes, "
        f"{d['episodes_reaching_high_bump']} reach r > 1.5; optimum "
        f"{results['optimal_return']:.3f}"
    )
    print(f"{'variant':<20s} {'return mean ± std':>20s}   per seed")
    for name, r in results["variants"].items():
        per_seed = " ".join(f"{x:.2f}" for x in r["returns"])
        print(f"{name:<20s} {r['return_mean']:>11.3f} ± {r['return_std']:.3f}   {per_seed}")
    print(total_line(timer, out, "two_step.png", "two_step.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
