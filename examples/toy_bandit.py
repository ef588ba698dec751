r"""The Diffusion-QL 2-D bandit (docs/method.md §10): can a diffusion policy pick the best of four
modes?

The task (Wang, Hunt, Zhou 2023, Sec. 4):

- one state, $s \equiv 0$ (a 1-D observation of zeros);
- 10,000 actions in $[-1, 1]^2$, 2,500 from each of four Gaussians with std 0.05 centred at
  $(-0.8, 0.8)$, $(-0.8, -0.8)$, $(0.8, 0.8)$, $(0.8, -0.8)$, clipped to the box;
- reward $r \sim \mathcal N(\mu, 0.5^2)$ with $\mu$ = 3.0, 0.0, 1.5, **5.0** for those modes
  (0.5 read as the standard deviation, NumPy's `normal(mu, 0.5)`);
- one-step episodes: `terminal = 1`, `next_obs = 0`, so the TD target is the reward and the
  critics regress onto it.

Three agents of `sdepolicy.rl.agents`, trained with the library's fused training
(`make_train_fn`), batch 100:

- **BC**: diffusion behaviour cloning (noise matching, VP schedule, $\hat x_0$ clipped): it
  should reproduce all four modes, about 25 % each;
- **Diffusion-QL**: VP schedule, two critics, $\eta = 2.5$, Q term through the full chain;
- **ER-DP-QE**: the same VP schedule and noise-matching loss (so only the Q and entropy terms
  differ from Diffusion-QL), $M = 10$ critics, LCB with $\beta = 4$, $\alpha = 0.01$ with the
  reference entropy estimator, $\eta = 2.5$.

The paper's bandit uses $T = 50$ and 100,000 steps; the default here is $T = 20$ and 5,000
steps (`--T`, `--steps`), what fits about three minutes of a 2-core CPU: a Diffusion-QL step
back-propagates through the whole chain, so its cost grows with $T$ (`docs/toys.md` has the
measured times). The width is 128 (`--hidden`), 3 hidden layers; both learning rates are Adam
$3\cdot 10^{-4}$.

Reported for each agent, on 1000 draws at $s = 0$: the fraction nearest each mode, the mean
true reward (the $\mu$ of the nearest mode) and the on-mode fraction (within 0.15, three data
std, of the nearest mode's centre), for the **policy samples** (the diffusion chain
alone, `actor.sample`) and for the **evaluation actions** (`act`: Diffusion-QL and ER-DP-QE pick
one of 50 candidates by softmax over their critics; BC's `act` is a policy sample).

    python examples/toy_bandit.py                       # runs/toy_bandit/{bandit.png,bandit.json}
    python examples/toy_bandit.py --T 50 --steps 3000 --out runs/bandit_t50
"""

from __future__ import annotations

import argparse
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

from sdepolicy.rl import Transitions
from sdepolicy.rl.agents import BC, ERDPQE, BCConfig, DiffusionQL, DiffusionQLConfig, ERDPQEConfig

MODES = np.array([[-0.8, 0.8], [-0.8, -0.8], [0.8, 0.8], [0.8, -0.8]], dtype=np.float32)
MODE_MEANS = np.array([3.0, 0.0, 1.5, 5.0], dtype=np.float32)
MODE_STD = 0.05
REWARD_STD = 0.5
BEST_MODE = int(np.argmax(MODE_MEANS))
LOW = -np.ones(2, np.float32)
HIGH = np.ones(2, np.float32)
ALGOS = ("bc", "diffusion-ql", "erdpqe")
LABELS = {"bc": "BC (diffusion)", "diffusion-ql": "Diffusion-QL", "erdpqe": "ER-DP-QE"}


def make_dataset(seed: int = 0, per_mode: int = 2500) -> tuple[Transitions, np.ndarray]:
    """The bandit's offline data: `per_mode` actions per mode, rewards, one-step episodes.

    **Returns:** `(transitions, mode_index)`, `mode_index[i]` the mode that generated row `i`.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(MODES)), per_mode)
    actions = MODES[labels] + MODE_STD * rng.standard_normal((labels.size, 2))
    actions = np.clip(actions, LOW, HIGH).astype(np.float32)
    rewards = (MODE_MEANS[labels] + REWARD_STD * rng.standard_normal(labels.size)).astype(
        np.float32
    )
    n = labels.size
    data = Transitions(
        observations=jnp.zeros((n, 1)),
        actions=jnp.asarray(actions),
        rewards=jnp.asarray(rewards),
        next_observations=jnp.zeros((n, 1)),
        terminals=jnp.ones((n,)),
    )
    return data, labels


def nearest_mode(actions: np.ndarray) -> np.ndarray:
    """Index of the mode nearest (Euclidean) to each action."""
    d = np.linalg.norm(np.asarray(actions)[:, None, :] - MODES[None], axis=-1)
    return np.argmin(d, axis=1)


def mode_fractions(actions: np.ndarray) -> np.ndarray:
    """Fraction of `actions` nearest each of the four modes."""
    return np.bincount(nearest_mode(actions), minlength=len(MODES)) / len(actions)


def on_mode_fraction(actions: np.ndarray, radius: float = 3 * MODE_STD) -> float:
    """Fraction of `actions` within `radius` (default 3 data std) of their nearest mode: how
    much of the policy lies on the data rather than between or beyond the modes."""
    d = np.linalg.norm(np.asarray(actions)[:, None, :] - MODES[None], axis=-1)
    return float(np.mean(np.min(d, axis=1) <= radius))


def true_reward(actions: np.ndarray) -> np.ndarray:
    """Expected reward of each action: $\\mu$ of its nearest mode."""
    return MODE_MEANS[nearest_mode(actions)]


def make_configs(T: int = 20, hidden: int = 128, num_critics: int = 10, eta: float = 2.5):
    """The three agents' classes and configs (module docstring)."""
    common = dict(diffusion_steps=T, hidden=hidden, batch_size=100)
    return {
        "bc": (BC, BCConfig(schedule="vp", x0_clip=True, loss="nml", lr=3e-4, **common)),
        "diffusion-ql": (DiffusionQL, DiffusionQLConfig(eta=eta, **common)),
        "erdpqe": (
            ERDPQE,
            ERDPQEConfig(
                schedule="vp",
                x0_clip=True,
                loss="nml",
                num_critics=num_critics,
                lcb_beta=4.0,
                alpha=0.01,
                eta=eta,
                **common,
            ),
        ),
    }


@eqx.filter_jit
def _sample(actor, obs, key):
    return actor.sample(obs, key)


@eqx.filter_jit
def _act(agent, state, obs, key):
    return agent.act(state, obs, key)


def evaluate(agent, state, key, num: int = 1000) -> dict:
    """Policy samples and evaluation actions at $s = 0$, with their mode fractions and rewards."""
    obs = jnp.zeros((num, 1))
    k_pol, k_act = jax.random.split(key)
    policy = np.asarray(_sample(state.actor, obs, k_pol))
    acts = np.asarray(_act(agent, state, obs, k_act))
    out = {"policy_samples": policy, "act_samples": acts}
    for name, a in (("policy", policy), ("act", acts)):
        out[f"{name}_mode_fractions"] = mode_fractions(a)
        out[f"{name}_mean_reward"] = float(np.mean(true_reward(a)))
        out[f"{name}_on_mode"] = on_mode_fraction(a)
    return out


def run(
    *,
    steps: int = 5000,
    T: int = 20,
    hidden: int = 128,
    num_critics: int = 10,
    eta: float = 2.5,
    seed: int = 0,
    num_eval: int = 1000,
    steps_per_call: int = 500,
    algos=ALGOS,
    quiet: bool = False,
) -> dict:
    """Train the agents in `algos` on the bandit and evaluate them (module docstring)."""
    data, labels = make_dataset(seed)
    configs = make_configs(T, hidden, num_critics, eta)
    key = jax.random.key(seed)
    results = {
        "task": "diffusion-ql 2-D bandit",
        "modes": MODES,
        "mode_means": MODE_MEANS,
        "settings": dict(
            steps=steps,
            T=T,
            hidden=hidden,
            num_critics=num_critics,
            eta=eta,
            seed=seed,
            num_eval=num_eval,
            batch_size=100,
        ),
        "data_mode_fractions": mode_fractions(np.asarray(data.actions)),
        "data_mean_reward": float(np.mean(true_reward(np.asarray(data.actions)))),
        "algos": {},
    }
    for name in algos:
        agent_class, config = configs[name]
        agent = agent_class(config)
        k_init, k_train, k_eval = jax.random.split(jax.random.fold_in(key, ALGOS.index(name)), 3)
        timer = Timer()
        state = init_agents(agent, 1, 2, LOW, HIGH, k_init)
        state, metrics = train(
            agent,
            data,
            state,
            k_train,
            steps=steps,
            steps_per_call=min(steps_per_call, steps),
            label=LABELS[name],
            quiet=quiet,
        )
        train_time = timer.as_dict()
        ev = evaluate(agent, state, k_eval, num_eval)
        ev["train_time"] = train_time
        ev["config"] = config_dict(config)
        ev["final_metrics"] = {k: float(np.mean(v[-100:])) for k, v in metrics.items()}
        results["algos"][name] = ev
    return results


def plot(results: dict, path: pathlib.Path, data_actions: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(results["algos"])
    colours = {"bc": "tab:blue", "diffusion-ql": "tab:orange", "erdpqe": "tab:green"}
    fig, axes = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 4.4), squeeze=False)
    for ax, name in zip(axes[0], algos, strict=True):
        r = results["algos"][name]
        ax.scatter(*data_actions.T, s=2, c="0.75", alpha=0.4, label="data", rasterized=True)
        ax.scatter(
            *np.asarray(r["policy_samples"]).T,
            s=4,
            c=colours.get(name, "tab:red"),
            alpha=0.6,
            label="policy samples",
            rasterized=True,
        )
        for (x, y), mu, f in zip(MODES, MODE_MEANS, r["policy_mode_fractions"], strict=True):
            ax.text(x, 0.68 * y, f"r={mu:g}: {100 * f:.0f}%", ha="center", va="center", fontsize=8)
        ax.set_title(
            f"{LABELS.get(name, name)}\nmean reward {r['policy_mean_reward']:.2f}"
            f" (act: {r['act_mean_reward']:.2f})",
            fontsize=10,
        )
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.set_aspect("equal")
        ax.set_xlabel("$a_1$")
        ax.set_ylabel("$a_2$")
        ax.legend(loc="center", fontsize=7, markerscale=3)
    s = results["settings"]
    fig.suptitle(
        f"2-D bandit: {s['num_eval']} policy samples per agent (T={s['T']}, "
        f"{s['steps']} steps, hidden {s['hidden']})",
        fontsize=11,
    )
    save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/toy_bandit", help="output folder")
    p.add_argument("--steps", type=int, default=5000, help="gradient steps per agent")
    p.add_argument("--T", type=int, default=20, help="diffusion steps (VP schedule)")
    p.add_argument("--hidden", type=int, default=128, help="width of every network")
    p.add_argument("--num-critics", type=int, default=10, help="ER-DP-QE's M")
    p.add_argument("--eta", type=float, default=2.5, help="weight of the Q term")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-eval", type=int, default=1000, help="actions drawn per agent")
    p.add_argument("--steps-per-call", type=int, default=500, help="updates fused per call")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    timer = Timer()
    results = run(
        steps=args.steps,
        T=args.T,
        hidden=args.hidden,
        num_critics=args.num_critics,
        eta=args.eta,
        seed=args.seed,
        num_eval=args.num_eval,
        steps_per_call=args.steps_per_call,
        algos=tuple(args.algos),
    )
    results["total_time"] = timer.as_dict()
    data, _ = make_dataset(args.seed)
    plot(results, out / "bandit.png", np.asarray(data.actions))
    samples = {
        n: {k: r.pop(k) for k in ("policy_samples", "act_samples")}
        for n, r in results["algos"].items()
    }
    write_json(out / "bandit.json", results)
    np.savez_compressed(
        out / "samples.npz", **{f"{n}_{k}": v for n, d in samples.items() for k, v in d.items()}
    )
    header = "mode (mu):".ljust(26) + "".join(
        f"({x:+.1f},{y:+.1f}) {mu:<4g}" for (x, y), mu in zip(MODES, MODE_MEANS, strict=True)
    )
    print("\n" + header + "  mean reward  on-mode")
    for name, r in results["algos"].items():
        for kind in ("policy", "act"):
            fr = "".join(f"{100 * f:>14.1f}%" for f in r[f"{kind}_mode_fractions"])
            print(
                f"{LABELS[name] + ' ' + kind:<26s}{fr}   {r[f'{kind}_mean_reward']:.3f}"
                f"        {100 * r[f'{kind}_on_mode']:.1f}%"
            )
    print(total_line(timer, out, "bandit.png", "bandit.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
