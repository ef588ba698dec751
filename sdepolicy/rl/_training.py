r"""Fused training: $K$ agent updates per compiled call, and many seeds in one process.

The dataset lives on device and is an *argument* of the compiled function (not a constant baked
into it), so a dataset of the same shapes and dtypes reuses the compiled code. Batches are drawn
with `jax.random` inside the `lax.scan`, so no Python loop touches a step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Key, PyTree, UInt32

from .._typing import PRNGKey
from ._transitions import Transitions

#: One pure agent update: ``(state, batch) -> (state, metrics)`` with scalar metrics.
#: A batch of PRNG keys with a leading seed axis, new-style or raw.
PRNGKeys = Key[Array, " seeds"] | UInt32[Array, "seeds 2"]

UpdateFn = Callable[[Any, Transitions], tuple[Any, dict[str, Float[Array, ""]]]]


def _fused_steps(update_fn, batch_size, num_steps, dataset, state, key):
    def body(state, k):
        return update_fn(state, dataset.sample(k, batch_size))

    return jax.lax.scan(body, state, jax.random.split(key, num_steps))


# Module-level compiled functions: `update_fn`, `batch_size` and `num_steps` are static (hashed),
# the dataset, the state and the key are traced, so every call with the same update function and
# array shapes hits the same compilation cache whichever `make_train_fn` built the caller.
_fused_single = eqx.filter_jit(_fused_steps)


@eqx.filter_jit
def _fused_seeds(update_fn, batch_size, num_steps, dataset, states, keys):
    if keys.shape[0] == 1:
        # One seed: no seed axis in the matmuls. Batched over an axis of size 1, XLA's CPU
        # backend picks batched kernels that are markedly slower for the same numbers
        # (benchmarks/README.md, the default-size update).
        return _fused_seeds_sequential(update_fn, batch_size, num_steps, dataset, states, keys)
    run = lambda state, key: _fused_steps(update_fn, batch_size, num_steps, dataset, state, key)
    return eqx.filter_vmap(run)(states, keys)


@eqx.filter_jit
def _fused_seeds_sequential(update_fn, batch_size, num_steps, dataset, states, keys):
    dynamic, static = eqx.partition(states, eqx.is_array)

    def one(args):
        state, metrics = _fused_steps(
            update_fn, batch_size, num_steps, dataset, eqx.combine(args[0], static), args[1]
        )
        return eqx.filter(state, eqx.is_array), metrics

    dynamic, metrics = jax.lax.map(one, (dynamic, keys))
    return eqx.combine(dynamic, static), metrics


#: How the seeds of one compiled call share it (see `make_seeds_train_fn`).
SeedStrategy = Literal["vmap", "sequential"]
SEED_STRATEGIES = {"vmap": _fused_seeds, "sequential": _fused_seeds_sequential}


def make_train_fn(
    update_fn: UpdateFn, dataset: Transitions, batch_size: int, steps_per_call: int
) -> Callable[[PyTree, PRNGKey], tuple[PyTree, dict[str, Float[Array, " steps"]]]]:
    r"""A compiled `(state, key) -> (state, metrics)` running `steps_per_call` updates per call
    on batches of `batch_size` drawn from `dataset`, as one `lax.scan`.

    **Arguments:**

    - `update_fn`: a pure update `(state, batch) -> (state, metrics)`, e.g.
        `ERDPQE(config).update`. It is a static argument of the compiled function (hashed; an
        agent's bound `update` equals that of any agent of the same class and config).
    - `dataset`: the whole dataset, on device. It is passed to the compiled code as an
        argument, so repeated calls (and other train functions built on same-shaped datasets
        with the same `update_fn`) never retrace.
    - `batch_size`, `steps_per_call`: batch size and number of fused updates $K$.

    The returned function takes the agent state and a PRNG key for batch sampling (the agent's
    own randomness lives in its state), and returns `(state, metrics)` with every metric
    stacked over the $K$ steps.
    """

    def train(state: PyTree, key: PRNGKey):
        return _fused_single(update_fn, batch_size, steps_per_call, dataset, state, key)

    return train


def init_seeds(init_fn: Callable[[PRNGKey], PyTree], keys: PRNGKeys) -> PyTree:
    r"""Initialise one agent per key and stack them: every array of the result gets a leading
    seed axis of size `len(keys)`; non-array leaves (static configuration) must agree and are
    shared.

    Seed `i` is exactly `init_fn(keys[i])`. The seeds are built one after the other and then
    stacked rather than under `vmap`: initialisation is cheap once its operations are compiled
    for the first seed, while a vmapped initialisation recompiles every batched operation (on
    CPU, seconds per random-number kernel), and `init_fn`'s value checks stay concrete.

    **Arguments:**

    - `init_fn`: `key -> state`, e.g. `lambda k: agent.init(obs_dim, act_dim, lo, hi, k)`.
    - `keys`: a batch of PRNG keys (`jax.random.split(key, num_seeds)`).
    """
    states = [init_fn(keys[i]) for i in range(keys.shape[0])]
    for i, other in enumerate(states[1:], start=1):
        if jax.tree.structure(other) != jax.tree.structure(states[0]):
            raise ValueError(f"init_seeds: seed {i}'s state differs in structure from seed 0's.")
    return jax.tree.map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *states)


def make_seeds_train_fn(
    update_fn: UpdateFn,
    dataset: Transitions,
    batch_size: int,
    steps_per_call: int,
    strategy: str = "vmap",
) -> Callable[[PyTree, PRNGKeys], tuple[PyTree, dict[str, Float[Array, "seeds steps"]]]]:
    r"""Like `make_train_fn` for states stacked over seeds (see `init_seeds`).

    The returned `(states, keys) -> (states, metrics)` takes one batch-sampling key per seed
    (`keys` has a leading seed axis) and returns metrics of shape `(seeds, steps_per_call)`. All
    seeds share the dataset; each draws its own batches.

    `strategy` says how the seeds share one compiled call: `"vmap"` (default) batches them, so
    every matmul carries a seed axis: the better choice on a GPU, and on a CPU for networks too
    small to keep the cores busy alone; `"sequential"` runs them one after the other inside the
    call (a `lax.map`): on a CPU whose cores one seed already saturates (hidden 256 and more),
    this keeps each seed's working set in cache, where the batched version slows down
    (`benchmarks/bench_seeds.py` measures both). Both give the same results (up to float
    rounding). A single seed is never batched, whatever the strategy.
    """
    if strategy not in SEED_STRATEGIES:
        raise ValueError(
            f"make_seeds_train_fn: strategy must be one of {sorted(SEED_STRATEGIES)}, "
            f"got {strategy!r}."
        )
    fused = SEED_STRATEGIES[strategy]

    def train(states: PyTree, keys: PRNGKeys):
        return fused(update_fn, batch_size, steps_per_call, dataset, states, keys)

    return train


def _finite_groups(states: PyTree) -> dict[str, Bool[Array, " seeds"]]:
    """Per top-level part of the state (`actor`, `critic`, ... of an `eqx.Module`), whether every
    floating number of each seed is finite."""
    if dataclasses.is_dataclass(states):
        parts = {f.name: getattr(states, f.name) for f in dataclasses.fields(states)}
    else:
        parts = {"state": states}
    out = {}
    for name, part in parts.items():
        leaves = [
            x
            for x in jax.tree.leaves(eqx.filter(part, eqx.is_inexact_array))
            if x.ndim >= 1  # the seed axis
        ]
        if leaves:
            per_leaf = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]
            out[name] = jnp.all(jnp.stack(per_leaf), axis=0)
    return out


def finite_report(
    states: PyTree, metrics: dict[str, Float[Array, "seeds steps"]]
) -> dict[str, Any]:
    r"""Where a chunk of training went non-finite, per seed, from its metrics and its final
    state: one reduction over the metrics and one over the parameters, cheap next to the chunk.

    **Arguments:**

    - `states`: the states stacked over seeds, at the end of the chunk.
    - `metrics`: the chunk's metrics, each of shape `(seeds, steps)`.

    **Returns:** a dict with `first_bad` (int32 `[seeds]`: the index within the chunk of the
    first step with a NaN or infinite metric, $-1$ if none), `metrics` (metric name → bool
    `[seeds]`, non-finite somewhere in the chunk) and `params` (state part → bool `[seeds]`,
    every floating number finite at the chunk's end).
    """
    ok_steps = jnp.all(jnp.stack([jnp.isfinite(m) for m in metrics.values()]), axis=0)
    first_bad = jnp.where(
        jnp.all(ok_steps, axis=1), -1, jnp.argmin(ok_steps, axis=1).astype(jnp.int32)
    )
    return {
        "first_bad": first_bad.astype(jnp.int32),
        "metrics": {k: ~jnp.all(jnp.isfinite(m), axis=1) for k, m in metrics.items()},
        "params": _finite_groups(states),
    }


@eqx.filter_jit
def _fused_seeds_checked(strategy, update_fn, batch_size, num_steps, dataset, states, keys):
    # The report is computed inside the same compiled call, so it costs no extra dispatch and
    # no transfer of the parameters to the host.
    states, metrics = SEED_STRATEGIES[strategy](
        update_fn, batch_size, num_steps, dataset, states, keys
    )
    return states, metrics, finite_report(states, metrics)


def make_checked_seeds_train_fn(
    update_fn: UpdateFn,
    dataset: Transitions,
    batch_size: int,
    steps_per_call: int,
    strategy: str = "vmap",
) -> Callable[[PyTree, PRNGKeys], tuple[PyTree, dict[str, Float[Array, "seeds steps"]], dict]]:
    r"""`make_seeds_train_fn` whose compiled call also returns the chunk's
    `finite_report`: `(states, keys) -> (states, metrics, report)`.

    The training run uses it to stop at the first chunk in which a loss, a Q value or a
    parameter became NaN or infinite, before that state is saved or evaluated.
    """
    if strategy not in SEED_STRATEGIES:
        raise ValueError(
            f"make_checked_seeds_train_fn: strategy must be one of {sorted(SEED_STRATEGIES)}, "
            f"got {strategy!r}."
        )

    def train(states: PyTree, keys: PRNGKeys):
        return _fused_seeds_checked(
            strategy, update_fn, batch_size, steps_per_call, dataset, states, keys
        )

    return train


def select_seed(states: PyTree, index: int) -> PyTree:
    """One seed's state out of states stacked by `init_seeds` (arrays sliced, the rest
    shared)."""
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, states)
