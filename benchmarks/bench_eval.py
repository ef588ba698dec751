"""Evaluation speed: environment steps/s of the vectorised evaluation against one environment at
a time, with ER-DP-QE's action selection (M = 64 critics, 50 candidates per state).

- **vectorised**: `sdepolicy.app.run_episodes`: N episodes stepped together, one
  jitted, batched action selection for all N states per environment step;
- **one at a time**: `run_episodes_one_at_a_time`: one environment, one episode after another,
  one jitted action selection (batch 1) per step.

Hopper-v5 runs with `terminate_when_unhealthy=False` (see `ENV_KWARGS`): an untrained policy
falls within a few dozen steps, and with termination the run would measure how fast it falls
rather than throughput; without it every episode lasts the cap. `--terminate` keeps the default
termination (`run_episodes` stops stepping each environment when its own episode ends).

The agent is untrained (speed does not depend on training); episodes are short
(`--max-episode-steps`, default 50) so the run is fast. Steps are counted per episode up to its
end (termination or time limit): the vectorised loop keeps stepping environments whose episode
has ended until all have, and those steps are not counted. Also reported: the environment alone
(random actions, no policy), the ceiling of either loop. Compilation is excluded (warm-up calls
per batch shape, timed separately).

Run: `python benchmarks/bench_eval.py` (Pendulum-v1 and Hopper-v5), `--quick` for a smoke test.
Writes JSON to `--out` (default runs/bench/eval.json).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import _bench_common as bench  # noqa: E402
import gymnasium as gym  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from sdepolicy.app import flatten_observation, run_episodes  # noqa: E402
from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig  # noqa: E402


class StepCounter:
    """Counts environment steps of episodes still running (shared by all environments)."""

    def __init__(self):
        self.steps = 0


class CountSteps(gym.Wrapper):
    def __init__(self, env, counter: StepCounter):
        super().__init__(env)
        self.counter, self.running = counter, False

    def reset(self, **kwargs):
        self.running = True
        return self.env.reset(**kwargs)

    def step(self, action):
        out = self.env.step(action)
        if self.running:
            self.counter.steps += 1
            self.running = not (out[2] or out[3])
        return out


# An untrained policy makes Hopper fall (unhealthy termination) within a few dozen steps, at
# different steps in different episodes; with its unhealthy-termination switched off every
# episode lasts exactly `max_episode_steps` in both loops (the same work for both, so the steps/s
# comparison is fair). `--terminate` restores the default.
ENV_KWARGS = {"Hopper-v5": {"terminate_when_unhealthy": False}}


def run_episodes_one_at_a_time(
    make_env,
    act,
    num_episodes: int,
    key,
    *,
    seed: int = 0,
) -> np.ndarray:
    """The baseline the vectorised evaluation (`sdepolicy.app.run_episodes`) is measured
    against: one environment, one episode after another, one action per call."""
    env = make_env()
    try:
        returns = np.zeros(num_episodes)
        for i in range(num_episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                key, sub = jax.random.split(key)
                batch = jax.tree.map(lambda v: np.asarray(v)[None], obs)
                action = np.asarray(act(flatten_observation(batch, batch_ndim=1), sub))[0]
                action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[i] += reward
                done = terminated or truncated
        return returns
    finally:
        env.close()


def env_factory(env_id: str, max_steps: int, counter: StepCounter | None = None, **kwargs):
    def make():
        env = gym.make(env_id, max_episode_steps=max_steps, **kwargs)
        return env if counter is None else CountSteps(env, counter)

    return make


def make_act(agent, state):
    """`(observations[n, obs], key) -> actions[n, act]` for the evaluation loops (one compiled
    function per batch shape)."""
    act = jax.jit(lambda st, obs, k: agent.act(st, obs, k))
    return lambda obs, key: np.asarray(act(state, np.asarray(obs, np.float32), key))


def env_only_steps_per_s(
    env_id: str, num_envs: int, max_steps: int, min_time: float, env_kwargs: dict
) -> float:
    """Random actions through a `SyncVectorEnv` of `num_envs` environments (no policy)."""
    envs = gym.vector.SyncVectorEnv([env_factory(env_id, max_steps, **env_kwargs)] * num_envs)
    try:
        envs.reset(seed=0)
        envs.action_space.seed(0)
        steps, t0 = 0, time.perf_counter()
        while steps < 100 * num_envs or time.perf_counter() - t0 < min_time:
            envs.step(envs.action_space.sample())
            steps += num_envs
        return steps / (time.perf_counter() - t0)
    finally:
        envs.close()


def bench_env(env_id: str, args) -> dict:
    env_kwargs = {} if args.terminate else ENV_KWARGS.get(env_id, {})
    probe = gym.make(env_id, **env_kwargs)
    obs_dim = int(np.prod(probe.observation_space.shape))
    action_dim = int(np.prod(probe.action_space.shape))
    low = np.asarray(probe.action_space.low, np.float32)
    high = np.asarray(probe.action_space.high, np.float32)
    probe.close()

    config = ERDPQEConfig(
        num_critics=args.critics,
        eval_candidates=args.candidates,
        diffusion_steps=args.diffusion_steps,
        hidden=args.hidden,
    )
    agent = ERDPQE(config)
    state = bench.block(agent.init(obs_dim, action_dim, low, high, jax.random.key(0)))
    act = make_act(agent, state)

    # Matmul FLOPs of selecting one state's action (T denoiser calls on each of the candidates,
    # then M critics on each candidate): the work per environment step, whatever the loop.
    flops_per_state, _ = bench.count_matmul_flops(
        lambda st, obs, k: agent.act(st, obs, k),
        state,
        jax.numpy.zeros((1, obs_dim), jax.numpy.float32),
        jax.random.key(0),
    )

    compile_s = {}
    for n in sorted({1, *args.episodes}):
        t0 = time.perf_counter()
        act(np.zeros((n, obs_dim), np.float32), jax.random.key(0))
        compile_s[str(n)] = time.perf_counter() - t0

    counter = StepCounter()
    make_env = env_factory(env_id, args.max_episode_steps, counter, **env_kwargs)

    def measure(run, *run_args):
        counter.steps = 0
        c0, t0 = time.process_time(), time.perf_counter()
        run(make_env, act, *run_args)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "env_steps": counter.steps,
            "wall_s": wall,
            "cpu_s": cpu,
            "env_steps_per_s": counter.steps / wall,
            "env_steps_per_cpu_s": counter.steps / cpu,
            "policy_flops_per_s": flops_per_state * counter.steps / wall,
        }

    rows = []
    one = measure(run_episodes_one_at_a_time, args.one_episodes, jax.random.key(1))
    for n in args.episodes:
        vec = measure(run_episodes, n, jax.random.key(2))
        rows.append(
            {
                "episodes": n,
                "vectorised": vec,
                "env_only_steps_per_s": env_only_steps_per_s(
                    env_id, n, args.max_episode_steps, args.env_time, env_kwargs
                ),
                "speedup": vec["env_steps_per_s"] / one["env_steps_per_s"],
                "speedup_cpu": vec["env_steps_per_cpu_s"] / one["env_steps_per_cpu_s"],
            }
        )
    return {
        "env": env_id,
        "env_kwargs": env_kwargs,
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "num_critics": args.critics,
        "candidates": args.candidates,
        "diffusion_steps": args.diffusion_steps,
        "hidden": args.hidden,
        "max_episode_steps": args.max_episode_steps,
        "act_matmul_flops_per_state": flops_per_state,
        "act_compile_s": compile_s,
        "one_at_a_time": {
            "episodes": args.one_episodes,
            **one,
            "env_only_steps_per_s": env_only_steps_per_s(
                env_id, 1, args.max_episode_steps, args.env_time, env_kwargs
            ),
        },
        "vectorised": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="Pendulum-v1,Hopper-v5")
    parser.add_argument("--quick", action="store_true", help="Pendulum only, tiny episodes")
    parser.add_argument("--out", default="runs/bench/eval.json")
    parser.add_argument("--critics", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--diffusion-steps", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--episodes", default=None, help="N of the vectorised runs, e.g. 10,50")
    parser.add_argument("--one-episodes", type=int, default=None, help="episodes run one at a time")
    parser.add_argument("--max-episode-steps", type=int, default=None)
    parser.add_argument("--env-time", type=float, default=None, help="s timing the bare env")
    parser.add_argument(
        "--terminate",
        action="store_true",
        help="keep Hopper's early termination (run_episodes then fails in gymnasium 1.4)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if quick and args.envs == parser.get_default("envs"):
        args.envs = "Pendulum-v1"
    args.episodes = [int(x) for x in (args.episodes or ("4" if quick else "10,50")).split(",")]
    args.one_episodes = args.one_episodes or (2 if quick else 10)
    args.max_episode_steps = args.max_episode_steps or (5 if quick else 50)
    args.env_time = args.env_time if args.env_time is not None else (0.05 if quick else 1.0)

    t_start = time.perf_counter()
    meta = bench.machine_info()
    meta["argv"] = sys.argv[1:] if argv is None else list(argv)
    results = []
    for env_id in args.envs.split(","):
        print(f"[bench_eval] {env_id} ...", flush=True)
        try:
            results.append(bench_env(env_id.strip(), args))
        except (gym.error.Error, ImportError) as err:  # e.g. mujoco missing: keep the others
            print(f"[bench_eval] skipped {env_id}: {err}")
            results.append({"env": env_id, "skipped": str(err)})
    payload = {"meta": bench.finish_meta(meta, t_start), "results": results}
    return bench.publish(payload, args.out, report)


def report(payload: dict) -> None:
    meta = payload["meta"]
    print(f"\n{bench.machine_line(meta)}\n")
    rows = []
    for r in payload["results"]:
        if "skipped" in r:
            continue
        one = r["one_at_a_time"]
        rows.append(
            {
                "env": r["env"],
                "mode": f"one at a time ({one['episodes']} ep.)",
                "steps": one["env_steps"],
                "sps": f"{one['env_steps_per_s']:.1f}",
                "spc": f"{one['env_steps_per_cpu_s']:.1f}",
                "bare": f"{one['env_only_steps_per_s']:.0f}",
                "fps": bench.fmt_si(one["policy_flops_per_s"], "FLOP/s"),
                "x": "1",
            }
        )
        for v in r["vectorised"]:
            rows.append(
                {
                    "env": r["env"],
                    "mode": f"vectorised, N={v['episodes']}",
                    "steps": v["vectorised"]["env_steps"],
                    "sps": f"{v['vectorised']['env_steps_per_s']:.1f}",
                    "spc": f"{v['vectorised']['env_steps_per_cpu_s']:.1f}",
                    "bare": f"{v['env_only_steps_per_s']:.0f}",
                    "fps": bench.fmt_si(v["vectorised"]["policy_flops_per_s"], "FLOP/s"),
                    "x": f"{v['speedup']:.1f} ({v['speedup_cpu']:.1f})",
                }
            )
    r0 = next((r for r in payload["results"] if "skipped" not in r), None)
    if r0:
        print(
            f"ER-DP-QE action selection: M={r0['num_critics']}, {r0['candidates']} candidates, "
            f"T={r0['diffusion_steps']}, hidden {r0['hidden']}; "
            f"episodes capped at {r0['max_episode_steps']} steps; "
            f"{bench.fmt_si(r0['act_matmul_flops_per_state'], 'FLOP')} of matmuls per state "
            "(policy FLOP/s: that x env steps/s)"
        )
        for r in payload["results"]:
            if r.get("env_kwargs"):
                print(f"{r['env']} made with {r['env_kwargs']} (see ENV_KWARGS in the script)")
    bench.print_table(
        rows,
        [
            ("env", "env"),
            ("mode", "mode"),
            ("env steps", "steps"),
            ("env steps/s", "sps"),
            ("env steps/CPU-s", "spc"),
            ("speedup (CPU)", "x"),
            ("policy FLOP/s", "fps"),
            ("bare env steps/s", "bare"),
        ],
    )


if __name__ == "__main__":
    main()
