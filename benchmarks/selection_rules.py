"""A finished run's policy under other action-selection rules.

    python benchmarks/selection_rules.py RUN_DIR [--episodes 10] [--candidates 50]

Reads `RUN_DIR/checkpoint.eqx` (a run of `examples/d4rl_train.py` or `benchmarks/real_data.py`;
the dataset must be in the Minari store that run used: set `MINARI_DATASETS_PATH` to
`<work>/datasets` for a `real_data.py` run), rebuilds the agents of every seed from the
configuration stored in the checkpoint, and evaluates each seed's policy four ways on the same
episodes: the best of `--candidates` samples under the target critics' LCB (the rule ER-DP-QE
evaluates with at `eval_temperature=0`) from the online actor and from the EMA actor, and a single
sample of each (no critic). It also prints, on 3,000 dataset states, how far the policy's actions
are from the data's and how much the critics' members disagree: the measurements behind the
README's diagnosis of the late drift on the expert Pendulum data ("Real data recorded by
others"). Diagnosis only: nothing is written.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=10, help="episodes per rule and seed")
    p.add_argument("--candidates", type=int, default=50)
    args = p.parse_args(argv)

    from sdepolicy.app import (
        SdepolicyError,
        load_checkpoint,
        load_transitions,
        read_header,
        recover_env,
        run_episodes,
        transform_rewards,
    )
    from sdepolicy.rl import AGENTS, CONFIGS, aggregate_q, init_seeds, select_actions, select_seed

    path = args.run_dir / "checkpoint.eqx"
    try:
        if not path.exists():
            raise SdepolicyError(f"{path} does not exist: give the folder of a finished run.")
        header = read_header(path)
        desc = header.get("description") or {}
        if desc.get("algo") not in ("erdpqe", "diffusion-ql"):
            raise SdepolicyError(f"{path}: not an actor-critic run (algo {desc.get('algo')!r}).")
        algo, seeds = desc["algo"], desc["seeds"]
        ids, _, env_id, reward_transform = desc["data"][:4]
        config = CONFIGS[algo](**desc["config"])
        agent = AGENTS[algo](config)
        transitions, dataset = load_transitions(ids)
        transitions = transform_rewards(transitions, reward_transform)
        make_env = lambda: recover_env(dataset, env_id)
        env = make_env()
        low = np.asarray(env.action_space.low, np.float32)
        high = np.asarray(env.action_space.high, np.float32)
        env.close()
        keys = jnp.stack([jax.random.key(s) for s in seeds])
        init = lambda k: agent.init(transitions.obs_dim, transitions.action_dim, low, high, k)
        states = jax.tree.map(  # strong types, as the runner builds them
            lambda x: jnp.array(x, dtype=x.dtype) if getattr(x, "weak_type", False) else x,
            init_seeds(init, keys),
        )
        states, header = load_checkpoint(path, states, fingerprint=header["fingerprint"])
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"{args.run_dir.name}: {algo}, step {header['step']}, seeds {seeds}")
    idx = np.random.default_rng(0).choice(len(transitions), min(3000, len(transitions)), False)
    obs, act = transitions.observations[idx], transitions.actions[idx]
    beta = getattr(config, "lcb_beta", 4.0)
    for i, seed in enumerate(seeds):
        s = select_seed(states, i)
        rules = {
            "online best-of-N (LCB)": lambda o, k, a=s.actor: select_actions(
                a, s.target_critic, o, k, args.candidates, "lcb", beta, 0.0
            ),
            "EMA best-of-N (LCB)": lambda o, k, a=s.ema_actor: select_actions(
                a, s.target_critic, o, k, args.candidates, "lcb", beta, 0.0
            ),
            "online 1 sample": lambda o, k, a=s.actor: a.sample(o, k),
            "EMA 1 sample": lambda o, k, a=s.ema_actor: a.sample(o, k),
        }
        cells = []
        for name, rule in rules.items():
            f = jax.jit(rule)
            fn = lambda o, k, f=f: np.asarray(f(jnp.asarray(o, jnp.float32), k))
            r = run_episodes(make_env, fn, args.episodes, jax.random.key(5), seed=1_000_000)
            cells.append(f"{name} {float(np.mean(r)):.0f}")
        pa = s.actor.sample(obs, jax.random.key(1))
        qd, qp = s.critic(obs, act), s.critic(obs, pa)
        print(f"seed {seed}: " + ", ".join(cells))
        print(
            f"  on dataset states: mean |pi(s) - a| {float(jnp.abs(pa - act).mean()):.3f}; "
            f"mean Q data {float(qd.mean()):.2f}, policy {float(qp.mean()):.2f}; member std "
            f"data {float(qd.std(0, ddof=1).mean()):.3f}, policy "
            f"{float(qp.std(0, ddof=1).mean()):.3f}; LCB data "
            f"{float(aggregate_q(qd, 'lcb', beta).mean()):.2f}, policy "
            f"{float(aggregate_q(qp, 'lcb', beta).mean()):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
