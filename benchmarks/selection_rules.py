"""A finished run's policy under other action-selection rules.

    python benchmarks/selection_rules.py RUN_DIR [--episodes 10]
    python benchmarks/selection_rules.py RUN_DIR --candidates 1 5 10 50 --std-temperatures 0.1 1

Reads `RUN_DIR/checkpoint.eqx` (a run of `examples/d4rl_train.py` or `benchmarks/real_data.py`;
the dataset must be in the Minari store that run used: set `MINARI_DATASETS_PATH` to
`<work>/datasets` for a `real_data.py` run), rebuilds the agents of every seed from the
configuration stored in the checkpoint, and evaluates each seed's policy four ways on the same
episodes: the agent's own evaluation rule (for ER-DP-QE at the defaults' `eval_temperature=0`, the
best of 50 samples under the target critics' LCB) with the online actor, as trained, and with the
EMA actor, and a single sample of each (no critic). It also prints, on 3,000 dataset states, how
far the policy's actions are from the data's and how much the critics' members disagree: the
measurements behind the README's diagnosis of the late drift on the expert Pendulum data ("Real
data recorded by others"). Diagnosis only: nothing is written.

With `--candidates N ...` it instead sweeps the size of the candidate pool: the agent's own rule
with `eval_candidates=N`, online and EMA actor; with `--std-temperatures c ...` it also draws,
with the EMA actor and the config's candidates, from a softmax over the LCB whose temperature is
`c` times the state's critic disagreement (the members' std averaged over its candidates), a
rule that is near argmax where candidates differ by more than the critics disagree and near one
sample where they do not. In these sweeps seed `i` is evaluated on its own initial states
(`seed=1_000_000 + 100 i`). They are the numbers of the README's table "How many candidates?".
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=pathlib.Path)
    p.add_argument("--episodes", type=int, default=10, help="episodes per rule and seed")
    p.add_argument("--candidates", type=int, nargs="+", help="sweep eval_candidates instead")
    p.add_argument(
        "--std-temperatures", type=float, nargs="+", default=(),
        help="also: softmax over the LCB at c x the critics' member std (EMA actor)",
    )  # fmt: skip
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
    from sdepolicy.rl import AGENTS, CONFIGS, aggregate_q, init_seeds, select_seed

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
        like = init_seeds(init, keys)  # only its structure is used: every leaf is replaced
        states, header = load_checkpoint(path, like, fingerprint=header["fingerprint"])
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"{args.run_dir.name}: {algo}, step {header['step']}, seeds {seeds}")
    if args.candidates or args.std_temperatures:
        _sweep(args, agent, config, states, seeds, make_env)
        return 0
    idx = np.random.default_rng(0).choice(len(transitions), min(3000, len(transitions)), False)
    obs, act = transitions.observations[idx], transitions.actions[idx]
    beta = getattr(config, "lcb_beta", 4.0)
    for i, seed in enumerate(seeds):
        s = select_seed(states, i)
        # The agent's own evaluation rule (its candidates, pessimism and temperature), with the
        # online actor as trained and with the EMA actor put in its place.
        with_ema = eqx.tree_at(lambda st: st.actor, s, s.ema_actor)
        rules = {
            "agent's rule, online actor": lambda o, k, st=s: agent.act(st, o, k),
            "agent's rule, EMA actor": lambda o, k, st=with_ema: agent.act(st, o, k),
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


def _sweep(args, agent, config, states, seeds, make_env) -> None:
    """The candidate-pool and std-temperature sweeps (module docstring): one line per rule, the
    mean return of each seed and their mean."""
    from sdepolicy.app import run_episodes
    from sdepolicy.rl import AGENTS, aggregate_q, select_seed

    algo = "erdpqe" if hasattr(config, "lcb_beta") else "diffusion-ql"
    beta = getattr(config, "lcb_beta", 4.0)

    def std_tempered(actor, critic, obs, key, c):
        n, pool = obs.shape[0], config.eval_candidates
        k_cand, k_pick = jax.random.split(key)
        rep = jnp.repeat(obs, pool, axis=0)
        cand = actor.sample(rep, k_cand)
        q = critic(rep, cand)
        lcb = aggregate_q(q, "lcb", beta).reshape(n, pool)
        sigma = q.std(0, ddof=1).reshape(n, pool).mean(1, keepdims=True)
        pick = jax.random.categorical(k_pick, lcb / (c * sigma), axis=-1)
        return jnp.take_along_axis(cand.reshape(n, pool, -1), pick[:, None, None], axis=1)[:, 0]

    rules = {}
    for n in args.candidates or ():
        swept = AGENTS[algo](dataclasses.replace(config, eval_candidates=n))
        for which in ("online", "ema"):
            rules[f"N={n:<3d} {which:6s}"] = lambda s, o, k, a=swept, w=which: a.act(
                s if w == "online" else eqx.tree_at(lambda x: x.actor, s, s.ema_actor), o, k
            )
    for c in args.std_temperatures:
        rules[f"std-tempered c={c:g} ema"] = lambda s, o, k, c=c: std_tempered(
            s.ema_actor, s.target_critic, o, k, c
        )
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
