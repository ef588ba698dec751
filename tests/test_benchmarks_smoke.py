"""Smoke tests of `benchmarks/`: every script's `main` runs with `--quick` on tiny shapes and
writes JSON with the expected keys and positive numbers; the FLOP counter is checked on a
known computation.

The three scripts run as separate processes started together (their time is XLA compilation,
mostly one core each), with XLA's backend optimisation turned down: these are plumbing checks,
not measurements.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
TINY = ["--hidden", "16"]
SCRIPTS = {
    "bench_update": ["--quick", *TINY, "--batch", "32"],
    "bench_eval": ["--quick", *TINY, "--critics", "4", "--candidates", "5"],
    "bench_seeds": ["--quick", *TINY, "--batch", "32"],
    # Imports a committed slice of a real file (tests/data) and trains diffusion BC a few steps
    # through the same runner as examples/d4rl_train.py (the agents have tests of their own).
    "real_data": ["--quick", "--algos", "bc", "--work", "real_data_work"],
    "bench_entropy": ["--quick"],
    "bench_default": ["--quick", "--parts"],
}
FAST_COMPILE = (
    "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), *args, "--out", str(out / f"{name}.json")],
            cwd=out,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in SCRIPTS.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            stdout, _ = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
        path = out / f"{name}.json"
        payload = json.loads(path.read_text()) if path.exists() else None
        results[name] = (proc.returncode, stdout, payload)
    return results


def _get(payload, name):
    code, stdout, data = payload[name]
    assert code == 0 and data is not None, f"{name} failed:\n{stdout[-4000:]}"
    assert "load average" in stdout  # the printed table names the machine's load
    meta = data["meta"]
    for key in ("cpu", "cpu_count", "jax", "loadavg_start", "loadavg_end", "wall_time_s"):
        assert key in meta
    return data


def _positive(x):
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_bench_update_quick(runs):
    data = _get(runs, "bench_update")
    assert _positive(data["matmul"]["square"]["flops_per_s"])
    for kind in ("batched", "grouped"):
        assert all(_positive(v["flops_per_s"]) for v in data["matmul"][kind].values()), kind
    # --quick: the optimised step and, for the before/after comparison, the straightforward one.
    rows = {r["variant"]: r for r in data["results"]}
    assert set(rows) == {"optimised", "straightforward"}
    for r in rows.values():
        assert r["config"] == "erdpqe-M2-T5" and r["hidden"] == 16 and r["batch"] == 32
        for key in ("steps_per_s", "s_per_step_median", "cpu_s_per_step", "first_call_s"):
            assert _positive(r["fused"][key]), key
        assert _positive(r["single"]["steps_per_s"])
        for key in (
            "compile_s",
            "fusion_speedup",
            "fusion_cpu_ratio",
            "achieved_flops_per_s",
            "achieved_flops_per_cpu_s",
            "roofline_batched",
            "roofline_batched_cpu",
            "roofline_square_cpu",
            "roofline_grouped",
            "roofline_best",
            "roofline_best_cpu",
        ):
            assert _positive(r[key]), key
        # The strict roofline divides by the fastest matmul measured.
        assert r["roofline_best"] <= min(r["roofline_batched"], r["roofline_square"]) + 1e-12
        flops = r["flops"]
        for key in ("xla_cost_analysis", "jaxpr_matmul", "analytic_matmul", "analytic_critic"):
            assert _positive(flops[key]), key
    # Both variants' rates use the same FLOP count (the work the maths needs).
    assert (
        rows["optimised"]["flops"]["jaxpr_matmul"]
        == rows["straightforward"]["flops"]["jaxpr_matmul"]
    )
    assert _positive(data["matmul"]["square"]["flops_per_cpu_s"])


def test_bench_eval_quick(runs):
    data = _get(runs, "bench_eval")
    (r,) = data["results"]
    assert r["env"] == "Pendulum-v1" and (r["obs_dim"], r["action_dim"]) == (3, 1)
    assert _positive(r["one_at_a_time"]["env_steps_per_s"])
    assert r["one_at_a_time"]["env_steps"] == 2 * 5  # 2 episodes of the 5-step cap
    (v,) = r["vectorised"]
    assert v["vectorised"]["env_steps"] == 4 * 5
    vec = v["vectorised"]
    for x in (vec["env_steps_per_s"], vec["env_steps_per_cpu_s"], v["speedup"], v["speedup_cpu"]):
        assert _positive(x)
    assert _positive(v["env_only_steps_per_s"])
    assert all(_positive(s) for s in r["act_compile_s"].values())
    assert _positive(r["act_matmul_flops_per_state"])
    assert _positive(vec["policy_flops_per_s"])


def test_bench_seeds_quick(runs):
    data = _get(runs, "bench_seeds")
    assert [r["strategy"] for r in data["results"]] == ["vmap", "sequential"]
    for r in data["results"]:
        assert r["num_seeds"] == 2 and r["num_critics"] == 2
        for part in ("one_seed", "many_seeds"):
            for key in ("s_per_call_median", "seed_steps_per_s", "init_s", "first_call_s"):
                assert _positive(r[part][key]), (part, key)
        for key in ("time_ratio", "throughput_gain", "cpu_time_ratio", "throughput_gain_cpu"):
            assert _positive(r[key]), key


def test_real_data_quick(runs):
    code, stdout, data = runs["real_data"]
    assert code == 0 and data is not None, f"real_data failed:\n{stdout[-4000:]}"
    (ds,) = data["datasets"].values()
    # The expert slice: three 200-step episodes, the last step of each without a successor.
    assert ds["episodes"] == 3 and ds["transitions"] == 597
    assert ds["ref"] == [-1229.0, -150.0] and ds["env_id"] == "Pendulum-v1"
    rows = {r["algo"]: r for r in data["results"]}
    assert set(rows) == {"bc"}
    for r in rows.values():
        assert r["steps"] == 10 and math.isfinite(r["last"]["mean"])
        assert r["best"]["mean"] >= r["last"]["mean"]
    assert data["table"][0].startswith("| dataset") and "pendulum-expert" in data["table"][2]
    assert "CPU cores" in stdout


def test_bench_entropy_quick(runs):
    data = _get(runs, "bench_entropy")
    (r,) = data["results"]
    assert set(r["rows"]) == {"reference", "likelihood"}
    for row in r["rows"].values():
        assert _positive(row["s_per_step_median"]) and _positive(row["cpu_s_per_step"])
    assert _positive(r["time_ratio"]) and _positive(r["cpu_ratio"])


def test_bench_default_quick(runs):
    data = _get(runs, "bench_default")
    assert [r["algo"] for r in data["agents"]] == ["bc", "erdpqe", "diffusion-ql"]
    for r in data["agents"]:
        assert _positive(r["updates_per_s"]) and _positive(r["cpu_s_per_update"])
    assert {p["part"] for p in data["parts"]} == {"update", "next_actions", "target_q"}
    assert all("error" not in p and _positive(p["s_per_call_median"]) for p in data["parts"])


def test_matmul_flop_count_multiplies_scans():
    sys.path.insert(0, str(BENCH))
    try:
        import _bench_common as bench
    finally:
        sys.path.remove(str(BENCH))

    def f(a, b):
        h = jnp.einsum("bi,moi->mbo", a, b)  # (5, 3, 7): 2 * 5 * 3 * 7 * 4 FLOPs
        return jax.lax.scan(lambda x, _: (x @ x, None), h[0, :, :3], None, length=6)[0]

    flops, has_while = bench.count_matmul_flops(f, jnp.ones((3, 4)), jnp.ones((5, 7, 4)))
    assert flops == 2 * 5 * 3 * 7 * 4 + 6 * 2 * 3 * 3 * 3
    assert not has_while
    spec = bench.AgentSpec("erdpqe", 64, 5)
    hand = bench.analytic_update_flops(spec)
    # docs/method.md §11: the 64-critic update is ~26 GFLOP, nearly all of it in the critics.
    assert 25e9 < hand["total"] < 28e9 and hand["critic"] > 0.95 * hand["total"]
