"""A finished run's policy under other action-selection rules.

    python benchmarks/selection_rules.py RUN_DIR [--episodes 10]
    python benchmarks/selection_rules.py RUN_DIR --episodes 0     # the dataset-state lines only
    python benchmarks/selection_rules.py RUN_DIR --candidates 1 5 10 50 --temperatures 0.3 1 3

Reads `RUN_DIR/checkpoint.eqx` (a run of `examples/d4rl_train.py` or `benchmarks/real_data.py`;
the dataset must be in the Minari store that run used: set `MINARI_DATASETS_PATH` to
`<work>/datasets` for a `real_data.py` run), rebuilds the agents of every seed from the
configuration stored in the checkpoint, and evaluates each seed's policy four ways on the same
episodes: the agent's own evaluation rule (its candidates, temperature and temperature scale)
with the online actor and with the EMA actor proposing the candidates, and a single sample of
each (no critic). It also prints, on 3,000 dataset states, how far the policy's actions are from
the data's and how much the critics' members disagree: the measurements behind the
diagnosis of the late drift on the expert Pendulum data (docs/results.md §2).
Diagnosis only: nothing is written.

With `--candidates N ...` it instead sweeps the size of the candidate pool: the best of `N`
candidates under the agent's own pessimism (`eval_temperature=0`), online and EMA actor; with
`--temperatures c ...` it also draws, with the config's candidates, from a softmax whose
temperature is `c` times the critics' disagreement about the state's candidates
(`eval_temperature=c, eval_temperature_scale="disagreement"`, `sdepolicy.rl.select_actions`),
online and EMA actor: near the best candidate where the candidates differ by more than the
critics disagree about them, near one sample where they do not. In these sweeps seed `i` is
evaluated on its own initial states (`seed=1_000_000 + 100 i`). They are the numbers of the
table of docs/results.md §2.7 ("How many candidates").
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=10,
                   help="episodes per rule and seed (0: only the dataset-state lines)")  # fmt: skip
    p.add_argument("--candidates", type=int, nargs="+", help="sweep eval_candidates instead")
    p.add_argument(
        "--temperatures", type=float, nargs="+", default=(),
        help="also: softmax at c x the critics' disagreement about the candidates",
    )  # fmt: skip
    args = p.parse_args(argv)

    from sdepolicy.app import (
        SdepolicyError,
        config_from_record,
        load_checkpoint,
        load_transitions,
        read_header,
        recover_env,
        run_episodes,
        transform_rewards,
    )
    from sdepolicy.rl import aggregate_q, init_seeds, make_agent, select_seed

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
        config = config_from_record(algo, desc["config"])  # any version's checkpoint
        agent = make_agent(config)
        transitions, dataset = load_transitions(ids)
        transitions = transform_rewards(transitions, reward_transform)
        make_env = lambda: recover_env(dataset, env_id)
        env = make_env()
        low = np.asarray(env.action_space.low, np.float32)
        high = np.asarray(env.action_space.high, np.float32)
        env.close()
        keys = jnp.stack([jax.random.key(s) for s in seeds])
        init = lambda k: agent.init(transitions.obs_dim, transitions.action_dim, low, high, k)
        like = init_seeds(init, keys)  # only its structure is used: every leaf is replaced
        states, header = load_checkpoint(path, like, fingerprint=header["fingerprint"])
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"{args.run_dir.name}: {algo}, step {header['step']}, seeds {seeds}")
    if args.candidates or args.temperatures:
        _sweep(args, algo, config, states, seeds, make_env)
        return 0
    idx = np.random.default_rng(0).choice(len(transitions), min(3000, len(transitions)), False)
    obs, act = transitions.observations[idx], transitions.actions[idx]
    beta = getattr(config, "lcb_beta", 4.0)
    # The agent's own evaluation rule (its candidates, pessimism and temperature), with the
    # online actor and with the EMA actor proposing the candidates.
    own = {w: make_agent(dataclasses.replace(config, eval_actor=w)) for w in _ACTORS}
    for i, seed in enumerate(seeds):
        s = select_seed(states, i)
        rules = {
            "agent's rule, online actor": lambda o, k, st=s: own["online"].act(st, o, k),
            "agent's rule, EMA actor": lambda o, k, st=s: own["ema"].act(st, o, k),
            "online 1 sample": lambda o, k, a=s.actor: a.sample(o, k),
            "EMA 1 sample": lambda o, k, a=s.ema_actor: a.sample(o, k),
        }
        cells = []
        for name, rule in rules.items() if args.episodes > 0 else ():
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


_ACTORS = ("online", "ema")


def _sweep(args, algo, config, states, seeds, make_env) -> None:
    """The candidate-pool and temperature sweeps (module docstring): one line per rule, the
    mean return of each seed and their mean."""
    from sdepolicy.app import run_episodes
    from sdepolicy.rl import make_agent, select_seed

    swept = {}
    for n in args.candidates or ():
        for w in _ACTORS:
            swept[f"N={n:<3d} {w:6s}"] = dict(eval_candidates=n, eval_temperature=0.0, eval_actor=w)
    for c in args.temperatures:
        for w in _ACTORS:
            swept[f"disagreement c={c:g} {w}"] = dict(
                eval_temperature=c, eval_temperature_scale="disagreement", eval_actor=w
            )
    rules = {
        name: make_agent(dataclasses.replace(config, **fields)).act
        for name, fields in swept.items()
    }
    for name, rule in rules.items():
        per_seed = []
        for i in range(len(seeds)):
            seed_state = select_seed(states, i)
            f = jax.jit(lambda o, k, s=seed_state, rule=rule: rule(s, o, k))
            fn = lambda o, k, f=f: np.asarray(f(jnp.asarray(o, jnp.float32), k))
            start = 1_000_000 + 100 * i
            r = run_episodes(make_env, fn, args.episodes, jax.random.key(5), seed=start)
            per_seed.append(float(np.mean(r)))
        cells = " ".join(f"{x:7.0f}" for x in per_seed)
        print(f"{name}: {cells}  mean {np.mean(per_seed):7.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
