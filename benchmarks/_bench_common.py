"""Shared helpers of the benchmark scripts: agents by name, a synthetic dataset, timing, FLOP
counting (XLA's cost analysis and a count from the matmul shapes of the jaxpr), matmul
throughput, machine information and JSON output.

Not part of the library: the scripts put this folder on `sys.path` and import it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import platform
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from sdepolicy.policy import mish, mish_and_slope
from sdepolicy.rl import Transitions
from sdepolicy.rl.agents import ERDPQE, DiffusionQL, DiffusionQLConfig, ERDPQEConfig

# Hopper's sizes (D4RL / Minari hopper-*-v2): 11-dimensional state, 3-dimensional action.
HOPPER_OBS, HOPPER_ACT = 11, 3


# --- agents ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One benchmark configuration: algorithm, ensemble size M, diffusion steps T, sizes."""

    algo: str  # "erdpqe" or "dql"
    num_critics: int
    diffusion_steps: int
    batch_size: int = 256
    hidden: int = 256
    obs_dim: int = HOPPER_OBS
    action_dim: int = HOPPER_ACT

    @property
    def name(self) -> str:
        if self.algo == "dql":
            return f"dql-T{self.diffusion_steps}"
        return f"erdpqe-M{self.num_critics}-T{self.diffusion_steps}"

    def config(self, **overrides):
        common = dict(
            diffusion_steps=self.diffusion_steps,
            batch_size=self.batch_size,
            hidden=self.hidden,
            **overrides,
        )
        if self.algo == "dql":
            return DiffusionQLConfig(**common)
        return ERDPQEConfig(num_critics=self.num_critics, **common)

    def agent(self, **overrides):
        """The agent of this configuration (`overrides`: config fields)."""
        config = self.config(**overrides)
        return DiffusionQL(config) if self.algo == "dql" else ERDPQE(config)

    def init(self, agent, key, activation=mish, **init_options):
        """A fresh state (`init_options`: `agent.init`'s, e.g. `critic_backward`)."""
        low = -np.ones(self.action_dim, np.float32)
        high = np.ones(self.action_dim, np.float32)
        return agent.init(
            self.obs_dim, self.action_dim, low, high, key, activation=activation, **init_options
        )


def parse_config_name(name: str, **sizes) -> AgentSpec:
    """`erdpqe-M64-T5` or `dql-T5` (Diffusion-QL always has two critics)."""
    m = re.fullmatch(r"erdpqe-M(\d+)-T(\d+)", name)
    if m:
        return AgentSpec("erdpqe", int(m.group(1)), int(m.group(2)), **sizes)
    m = re.fullmatch(r"dql-T(\d+)", name)
    if m:
        return AgentSpec("dql", 2, int(m.group(1)), **sizes)
    raise SystemExit(f"unknown configuration {name!r}: expected erdpqe-M<M>-T<T> or dql-T<T>")


def synthetic_dataset(n: int, obs_dim: int, action_dim: int, seed: int = 0) -> Transitions:
    """Random transitions of the right shapes (speed does not depend on the data's values)."""
    rng = np.random.default_rng(seed)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return Transitions(
        observations=f32(rng.normal(size=(n, obs_dim))),
        actions=f32(rng.uniform(-1, 1, size=(n, action_dim))),
        rewards=f32(rng.normal(size=n)),
        next_observations=f32(rng.normal(size=(n, obs_dim))),
        terminals=f32(rng.uniform(size=n) < 0.01),
    )


# --- timing ------------------------------------------------------------------------------------


def block(tree):
    return jax.block_until_ready(tree)


@dataclasses.dataclass
class Timing:
    """Durations of repeated calls, each doing `work` units (steps, env steps, ...)."""

    wall: list[float]
    cpu: list[float]
    work: int

    @property
    def median(self) -> float:
        return float(np.median(self.wall))

    def summary(self, unit: str = "step") -> dict[str, float]:
        per = np.asarray(self.wall) / self.work
        return {
            f"{unit}s_per_s": self.work / self.median,
            f"s_per_{unit}_median": float(np.median(per)),
            f"s_per_{unit}_min": float(np.min(per)),
            f"cpu_s_per_{unit}": float(np.sum(self.cpu) / (self.work * len(self.cpu))),
            "calls_timed": len(self.wall),
            f"{unit}s_per_call": self.work,
        }


def time_calls(
    call: Callable[[], Any], work: int, min_time: float, min_calls: int, max_calls: int = 10_000
) -> Timing:
    """Call `call()` (which must block until its work is done) until both `min_calls` calls and
    `min_time` seconds are reached. Wall and process CPU time of every call are kept: on a
    shared machine the CPU time per unit of work is the less contaminated of the two."""
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < max_calls and (
        len(wall) < min_calls or time.perf_counter() - start < min_time
    ):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(wall, cpu, work)


# --- FLOPs -------------------------------------------------------------------------------------


def xla_flops(compiled) -> float | None:
    """The `flops` entry of XLA's cost analysis of a compiled computation.

    jax 0.10 returns a dict on CPU (older versions a list with one dict per device). XLA's
    HloCostAnalysis counts a `while` body ONCE, whatever its trip count: `lax.scan`s inside the
    computation (the diffusion sampler's chain) are undercounted; `count_matmul_flops` below
    multiplies by the scan lengths.
    """
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def _sub_jaxprs(params) -> list:
    out = []
    for value in params.values():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, jex.ClosedJaxpr):
                out.append(v.jaxpr)
            elif isinstance(v, jex.Jaxpr):
                out.append(v)
    return out


def dot_general_flops(eqn) -> int:
    """2 x batch x contracted x free(lhs) x free(rhs) of one `dot_general`."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    ls, rs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    batch = math.prod(ls[i] for i in lb)
    contract = math.prod(ls[i] for i in lc)
    l_free = math.prod(d for i, d in enumerate(ls) if i not in lc and i not in lb)
    r_free = math.prod(d for i, d in enumerate(rs) if i not in rc and i not in rb)
    return 2 * batch * contract * l_free * r_free


def jaxpr_matmul_flops(jaxpr) -> tuple[int, bool]:
    """Matmul FLOPs of a jaxpr, from the `dot_general` shapes, scans multiplied by their length,
    the most expensive branch of a `cond`. Returns `(flops, has_while)`: a `while_loop` (unknown
    trip count) is counted once and flagged."""
    total, has_while = 0, False
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += dot_general_flops(eqn)
            continue
        subs = [jaxpr_matmul_flops(j) for j in _sub_jaxprs(eqn.params)]
        if not subs:
            continue
        has_while |= name == "while" or any(w for _, w in subs)
        if name == "cond":
            total += max(f for f, _ in subs)
        elif name == "scan":
            total += eqn.params["length"] * sum(f for f, _ in subs)
        else:
            total += sum(f for f, _ in subs)
    return total, has_while


def count_matmul_flops(fn: Callable, *args) -> tuple[int, bool]:
    """Matmul FLOPs of `fn(*args)` counted on its jaxpr (before XLA's simplifications)."""
    return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def mlp_forward_flops(sizes: Sequence[int]) -> int:
    """Matmul FLOPs of one MLP forward pass on one row."""
    return sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))


def analytic_update_flops(spec: AgentSpec, depth: int = 3, time_dim: int = 16) -> dict[str, int]:
    """Hand count of one update's matmul FLOPs from the layer shapes (docs/method.md §6), as a check of the
    jaxpr count. A backward pass costs two forwards (weight and input gradients) where both
    gradients are needed; one forward where only the input gradient is (the critic inside the
    actor loss) or only weight gradients (first layers, whose inputs are data).

    - critic forward, per row and member: `[s, a] -> hidden^depth -> 1`;
    - ER-DP-QE: target critic 1 fwd (batch rows), critic update fwd + bwd (~3 fwd), actor's Q
      term 2 fwd (forward + input gradient): ~6 critic forwards; denoiser: T forwards for the
      next actions (EMA actor), one forward + backward (~3) for the diffusion loss.
    - Diffusion-QL: the same critic terms with M = 2; denoiser: T forwards (EMA actor's next
      actions), the actor's full chain T forwards + backwards (~3T), the diffusion loss (~3).
    """
    B, M, T, h = spec.batch_size, spec.num_critics, spec.diffusion_steps, spec.hidden
    critic = mlp_forward_flops([spec.obs_dim + spec.action_dim] + [h] * depth + [1]) * M * B
    denoiser_row = mlp_forward_flops(
        [spec.action_dim + time_dim + spec.obs_dim] + [h] * depth + [spec.action_dim]
    ) + mlp_forward_flops([time_dim, 2 * time_dim, time_dim])
    den = denoiser_row * B
    if spec.algo == "dql":
        actor = T * den + 3 * T * den + 3 * den
    else:
        actor = T * den + 3 * den
    return {"critic": 6 * critic, "denoiser": actor, "total": 6 * critic + actor}


# --- matmul throughput ------------------------------------------------------------------------


def matmul_throughput(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], spec: str, min_time: float
) -> dict[str, Any]:
    """FLOP/s of a float32 `einsum(spec)` on this machine (the roofline's denominator)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, shape_a, jnp.float32)
    b = jax.random.normal(kb, shape_b, jnp.float32)
    f = jax.jit(lambda a, b: jnp.einsum(spec, a, b))
    compiled = f.lower(a, b).compile()
    flops = xla_flops(compiled)
    block(compiled(a, b))
    timing = time_calls(lambda: block(compiled(a, b)), 1, min_time, 3)
    best = float(np.min(timing.wall))
    return {
        "einsum": spec,
        "a": list(shape_a),
        "b": list(shape_b),
        "flops_per_call": flops,
        "flops_per_s": flops / timing.median,
        "flops_per_s_best": flops / best,
        # Per second of process CPU time (all threads): on a shared machine the wall-clock rate
        # depends on the other processes, this one much less (it is the rate per busy core).
        "flops_per_cpu_s": flops * len(timing.cpu) / sum(timing.cpu),
        "calls_timed": len(timing.wall),
    }


def batched_critic_matmul(members: int, batch: int, hidden: int, min_time: float):
    """A critic hidden layer of all members at once: `[M, batch, h] x [M, h, h]`, with the
    library's weight layout `(M, out, in)`."""
    return matmul_throughput(
        (members, batch, hidden), (members, hidden, hidden), "mbi,moi->mbo", min_time
    )


def grouped_critic_matmul(members: int, batch: int, hidden: int, min_time: float):
    """A critic hidden layer of ONE group of members, as the library's fused Q-ensemble issues it
    on this backend (`sdepolicy.rl._fused_critic.member_groups`): feature-major `[g, out, in] x
    [g, in, batch]`, a plain batched matmul (the group size `g` is recorded)."""
    from sdepolicy.rl._fused_critic import member_groups

    g = members // member_groups(members, hidden, batch)
    out = matmul_throughput((g, hidden, hidden), (g, hidden, batch), "moi,mib->mob", min_time)
    out["members_per_group"] = g
    return out


def square_matmul(n: int, min_time: float):
    return matmul_throughput((n, n), (n, n), "ij,jk->ik", min_time)


# --- the straightforward step (the "before" of the optimisation) ------------------------------


def mish_autodiff(x):
    """Mish's one-exponential formula differentiated by JAX through its expression (no
    closed-form derivative rule): the library's activation before its speed work. As both
    networks' `activation` with `critic_backward="autodiff"` (both `init` arguments), this is the
    straightforward update step that `tests/rl/test_fast_step.py` pins the optimised one to."""
    return mish_and_slope(x)[0]


# --- machine and output ------------------------------------------------------------------------


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import equinox

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": loadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def finish_meta(meta: dict[str, Any], t_start: float) -> dict[str, Any]:
    meta["loadavg_end"] = loadavg()
    meta["wall_time_s"] = time.perf_counter() - t_start
    # CPU seconds of this process (all threads) since it started: on an idle machine the wall
    # time is at most about this (compilation runs mostly on one core, the updates on all).
    meta["cpu_time_s"] = time.process_time()
    return meta


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def fmt_si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """A plain-text table; `columns` are (header, key) pairs, values already formatted."""
    cells = [[h for h, _ in columns]] + [[str(r.get(k, "")) for _, k in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def pct(wall: float, cpu: float) -> str:
    """`"45% (70%)"`: a wall-clock ratio and its CPU-time counterpart."""
    return f"{100 * wall:.0f}% ({100 * cpu:.0f}%)"


def machine_line(meta: dict[str, Any]) -> str:
    """`AMD EPYC, 2 cores, jax 0.10.2; load average ...`: the machine a table was measured on."""
    return f"{meta['cpu']}, {meta['cpu_count']} cores, jax {meta['jax']}; {load_note(meta)}"


def publish(payload: dict[str, Any], out: str | os.PathLike, report: Callable[[dict], None]):
    """Write `payload` to `out` as JSON, print its table with `report`, say where it went."""
    path = write_json(out, payload)
    report(payload)
    print(f"wrote {path}")
    return payload


def load_note(meta: dict[str, Any]) -> str:
    cores = meta.get("cpu_count") or 1
    start, end = meta.get("loadavg_start") or [0], meta.get("loadavg_end") or [0]
    note = f"load average (1 min) {start[0]} at start, {end[0]} at end, on {cores} cores"
    if max(start[0], end[0]) > 1.5 * cores:
        note += (
            ": a LOADED machine, the wall-clock numbers are pessimistic; the per-CPU-second "
            "numbers are the load-robust ones"
        )
    return note
