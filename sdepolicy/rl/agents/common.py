r"""What the agents share: their state, optimisers, target-network rules and the TD target.

An agent is data (an `eqx.Module` of parameters, optimiser states, targets, a step counter and a
PRNG key) plus pure functions `init(config, ...)`, `update(config, state, batch)` and
`act(config, state, observations, key)`, with `config` a frozen dataclass (hashable, so it can
be a static argument of `jax.jit`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PyTree, UInt32

from ..._typing import PRNGKey, RealScalarLike
from ...policy import DiffusionPolicy
from ..critics import QEnsemble


class ActorCriticState(eqx.Module):
    r"""The state of an actor-critic diffusion agent (ER-DP-QE, Diffusion-QL).

    **Attributes:**

    - `actor`: the online diffusion policy (trained; samples evaluation candidates).
    - `ema_actor`: its exponential moving average (samples the TD targets' next actions).
    - `critic`, `target_critic`: the Q-ensemble and its Polyak average.
    - `actor_opt_state`, `critic_opt_state`: optax states (of the denoiser and the critic).
    - `step`: number of updates done so far.
    - `key`: the agent's own PRNG key (raw `uint32[2]`, so checkpoints serialise it as is).
    """

    actor: DiffusionPolicy
    ema_actor: DiffusionPolicy
    critic: QEnsemble
    target_critic: QEnsemble
    actor_opt_state: PyTree
    critic_opt_state: PyTree
    step: Int[Array, ""]
    key: UInt32[Array, "2"]


def raw_key(key: PRNGKey) -> UInt32[Array, "2"]:
    """A new-style key as its raw `uint32[2]` data (raw keys pass through)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def cosine_every_schedule(lr: float, every: int, t_max: int) -> optax.Schedule:
    r"""The reference codes' learning-rate decay as a function of the update count $n$:

    $$\text{lr}(n) = \text{lr}_0\,\tfrac12\bigl(1 + \cos(\pi \lfloor n / P \rfloor / T_\max)
    \bigr),$$

    PyTorch's `CosineAnnealingLR(T_max, eta_min=0)` stepped once every $P$ = `every` updates
    (both codes step it once per `train()` call, i.e. once per evaluation period;
    `docs/method.md §6.7`).

    **Arguments:**

    - `lr`: the initial learning rate $\text{lr}_0$.
    - `every`: updates per scheduler step $P$ (`eval_every_epochs * steps_per_epoch`).
    - `t_max`: the scheduler's `T_max` in scheduler steps (the reference: the task's epochs).

    **Returns:**

    An optax schedule `count -> lr`.
    """
    if every < 1 or t_max < 1:
        raise ValueError(
            f"cosine_every_schedule: every ({every}) and t_max ({t_max}) must be >= 1."
        )

    def schedule(count):
        k = (count // every).astype(jnp.float32)
        return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * k / t_max))

    return schedule


def make_optimizer(
    lr: float, grad_norm: float, decay: tuple[int, int] | None = None
) -> optax.GradientTransformation:
    r"""Adam after global-norm clipping to `grad_norm` (no clipping when `grad_norm <= 0`, as
    the reference code's `if grad_norm > 0`).

    With `decay = (every, t_max)` the learning rate follows [`cosine_every_schedule`][]. The
    schedule reads the update count kept in the optimiser state, so a run resumed from a
    checkpoint continues the same schedule.
    """
    adam = optax.adam(lr if decay is None else cosine_every_schedule(lr, *decay))
    return optax.chain(optax.clip_by_global_norm(grad_norm), adam) if grad_norm > 0 else adam


def lr_decay_of(config) -> tuple[int, int] | None:
    """`(lr_decay_every, lr_decay_t_max)` of an agent config when its `lr_decay` is on, else
    None: the `decay` argument of [`make_optimizer`][]."""
    if not getattr(config, "lr_decay", False):
        return None
    return (int(config.lr_decay_every), int(config.lr_decay_t_max))


def trainable(tree: PyTree) -> PyTree:
    """The arrays an optimiser updates: every floating array leaf."""
    return eqx.filter(tree, eqx.is_inexact_array)


def apply_gradients(
    optimizer: optax.GradientTransformation, module: PyTree, grads: PyTree, opt_state: PyTree
) -> tuple[PyTree, PyTree, Float[Array, ""]]:
    """One optimiser step on the floating arrays of `module`.

    **Returns:** `(module, opt_state, grad_norm)`, the last being the global norm of `grads`
    before any clipping (a diagnostic worth logging: it says how often clipping acts).
    """
    updates, opt_state = optimizer.update(grads, opt_state, trainable(module))
    return eqx.apply_updates(module, updates), opt_state, optax.tree.norm(grads)


def with_denoiser(policy: DiffusionPolicy, denoiser: PyTree) -> DiffusionPolicy:
    """`policy` with its denoiser replaced: the denoiser is the only trained part of a policy
    (the schedule and the action box are fixed), so gradients are taken with respect to it."""
    return eqx.tree_at(lambda p: p.denoiser, policy, denoiser)


def polyak(target: PyTree, online: PyTree, tau: RealScalarLike) -> PyTree:
    r"""$\bar\phi \leftarrow \tau\phi + (1 - \tau)\bar\phi$ on the floating arrays."""
    return jax.tree.map(
        lambda t, o: tau * o + (1 - tau) * t if eqx.is_inexact_array(t) else t, target, online
    )


def ema_update(
    ema: PyTree,
    online: PyTree,
    step: Int[Array, ""],
    decay: float,
    start: int,
    every: int,
) -> PyTree:
    r"""The EMA actor rule of the reference code's `step_ema`.

    On steps where `step % every == 0` and `step >= start`:
    $\bar\phi \leftarrow d\,\bar\phi + (1 - d)\,\phi$. Otherwise the EMA is unchanged; in
    particular before `start` it stays at its initial value (the initial actor), exactly as the
    reference code's `step_ema` returns early there, so the first `start` steps bootstrap from
    the initial actor's actions.
    """
    active = (step % every == 0) & (step >= start)
    # Separate weights for old and new (rather than ema + w (online - ema)) so "unchanged" is exact.
    keep = jnp.where(active, decay, 1.0)
    take = jnp.where(active, 1.0 - decay, 0.0)

    def mix(e, o):
        if not eqx.is_inexact_array(e):
            return e
        return keep.astype(e.dtype) * e + take.astype(e.dtype) * o

    return jax.tree.map(mix, ema, online)


def next_state_values(
    ema_actor: DiffusionPolicy,
    target_critic: QEnsemble,
    next_observations: Float[Array, "batch obs"],
    key: PRNGKey,
    max_q_backup: bool,
    max_q_samples: int,
) -> Float[Array, "members batch"]:
    r"""$\bar Q_m(s', a')$ per member with $a' \sim \pi_\text{EMA}(\cdot \mid s')$ (posterior
    sampler), or with max-Q backup $\max_{j \le N} \bar Q_m(s', a'_j)$ over $N$ = `max_q_samples`
    actions per $s'$, the max taken per member.
    """
    if not max_q_backup:
        return target_critic(next_observations, ema_actor.sample(next_observations, key))
    batch = next_observations.shape[0]
    # Row i*N + j is the j-th sample for s'_i (torch.repeat_interleave in the reference code).
    repeated = jnp.repeat(next_observations, max_q_samples, axis=0)
    q = target_critic(repeated, ema_actor.sample(repeated, key))
    return jnp.max(q.reshape(q.shape[0], batch, max_q_samples), axis=-1)


def td_targets(
    rewards: Float[Array, " batch"],
    terminals: Float[Array, " batch"],
    next_values: Float[Array, "*members batch"],
    gamma: RealScalarLike,
) -> Float[Array, "*members batch"]:
    r"""$y = r + \gamma (1 - \text{terminal})\,\bar Q(s', a')$, gradient stopped."""
    return jax.lax.stop_gradient(rewards + gamma * (1.0 - terminals) * next_values)


def finish_step(
    state: ActorCriticState,
    denoiser: PyTree,
    critic: QEnsemble,
    actor_opt_state: PyTree,
    critic_opt_state: PyTree,
    key: UInt32[Array, "2"],
    *,
    tau: float,
    ema_decay: float,
    ema_start: int,
    ema_every: int,
) -> ActorCriticState:
    """The end of an actor-critic update, shared by ER-DP-QE and Diffusion-QL: the new actor,
    the EMA actor's rule ([`ema_update`][]), the Polyak critic target, the step counter."""
    ema_denoiser = ema_update(
        state.ema_actor.denoiser, denoiser, state.step, ema_decay, ema_start, ema_every
    )
    return ActorCriticState(
        actor=with_denoiser(state.actor, denoiser),
        ema_actor=with_denoiser(state.ema_actor, ema_denoiser),
        critic=critic,
        target_critic=polyak(state.target_critic, critic, tau),
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        step=state.step + 1,
        key=key,
    )
