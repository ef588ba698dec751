r"""Diffusion-QL (Wang, Hunt, Zhou 2023; docs/method.md §7): a VP diffusion policy trained with noise
matching plus a Q term back-propagated through the full reverse chain, and two critics.

One update, in the reference code's order:

1. **Critics.** $y = r + \gamma(1 - \text{terminal})\min_j \bar Q_j(s', a')$, $a'$ from the EMA
   actor (max-Q backup: max over `max_q_samples` actions per critic, then the min); loss
   $\sum_j \operatorname{MSE}(Q_j(s, a), y)$.
2. **Actor**, against the freshly updated critics, with $a^0$ sampled by the *full* posterior
   chain (differentiable) and $(j, k)$ = (1, 2) or (2, 1) at random:
   $\mathcal L = \mathcal L_\text{nml} + \eta\,(-\operatorname{mean} Q_j(s, a^0) /
   \operatorname{sg}\operatorname{mean}|Q_k(s, a^0)|)$.
3. **EMA actor** every `ema_every` steps from `ema_start` on (before it: the initial actor, as
   the reference code's `step_ema`), then
4. **Polyak** critic targets, every step.

$\hat x_0$ is clipped to $[-1, 1]$ at every sampler step; the schedule is the VP one.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from ..._typing import PRNGKey
from ...policy import DiffusionPolicy
from ...sde import vp_schedule
from ..critics import QEnsemble
from ..selection import select_actions
from ..transitions import Transitions
from .common import (
    ActorCriticState,
    apply_gradients,
    finish_step,
    lr_decay_of,
    make_optimizer,
    next_state_values,
    raw_key,
    td_targets,
    trainable,
    with_denoiser,
)


@dataclasses.dataclass(frozen=True)
class DiffusionQLConfig:
    """Hyper-parameters of Diffusion-QL; defaults are its locomotion setting except `grad_norm`
    (the reference code's per-task table: 9 on the medium tasks).

    - `diffusion_steps`, `beta_min`, `beta_max`: the VP schedule (docs/method.md §2).
    - `eta`: weight of the Q term.
    - `actor_lr`, `critic_lr`, `grad_norm`: Adam learning rates and the global-norm clip.
    - `gamma`, `tau`: discount and Polyak rate.
    - `ema_decay`, `ema_start`, `ema_every`: the EMA actor's schedule.
    - `max_q_backup`, `max_q_samples`: max-Q backup and its number of next actions.
    - `batch_size`, `hidden`: batch size and width of every network; `critic_hidden`: the
        critics' width when it should differ (`None`: `hidden`).
    - `eval_candidates`: candidates sampled per state at evaluation; `eval_temperature`: the
        temperature of the softmax that picks one (1 in the reference codes, 0 = the best).
    - `lr_decay`, `lr_decay_every`, `lr_decay_t_max`: the reference codes' cosine learning-rate
        decay of both optimisers, stepped every `lr_decay_every` updates with `T_max` =
        `lr_decay_t_max` (`sdepolicy.rl.agents.common.cosine_every_schedule`).
    - `critic_backward`: how the Q-ensemble is differentiated, `"fused"` (the hand-written
        backward pass, faster) or `"autodiff"` (the straightforward code; same maths, see
        `sdepolicy.rl.critics`).
    """

    diffusion_steps: int = 5
    beta_min: float = 0.1
    beta_max: float = 10.0
    eta: float = 1.0
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    grad_norm: float = 9.0
    gamma: float = 0.99
    tau: float = 0.005
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5
    max_q_backup: bool = False
    max_q_samples: int = 10
    batch_size: int = 256
    hidden: int = 256
    critic_hidden: int | None = None
    eval_candidates: int = 50
    eval_temperature: float = 1.0
    critic_backward: str = "fused"
    # The reference codes' CosineAnnealingLR, stepped once per evaluation period (off by
    # default; the D4RL presets switch it on: docs/method.md §6.7).
    lr_decay: bool = False
    lr_decay_every: int = 50_000
    lr_decay_t_max: int = 2000

    def __post_init__(self):
        # Imported here so that this method stays the only part of the module that knows about
        # the user-facing checks (ConfigError is also a ValueError).
        from ..errors import ConfigError, check_config_fields

        if self.critic_backward not in ("fused", "autodiff"):
            raise ConfigError(
                "DiffusionQLConfig: critic_backward must be one of ('fused', 'autodiff'), got "
                f"{self.critic_backward!r}."
            )
        check_config_fields(self)
        if self.beta_min >= self.beta_max:
            raise ConfigError(
                f"DiffusionQLConfig: beta_min ({self.beta_min}) must be below beta_max "
                f"({self.beta_max})."
            )


def init(
    config: DiffusionQLConfig,
    obs_dim: int,
    action_dim: int,
    action_low: Float[ArrayLike, " act"],
    action_high: Float[ArrayLike, " act"],
    key: PRNGKey,
) -> ActorCriticState:
    """A fresh agent: VP diffusion policy with $\\hat x_0$ clipping (EMA = copy), two critics
    with PyTorch's default initialisation (target = copy), Adam states, step 0."""
    k_actor, k_critic, k_state = jax.random.split(key, 3)
    actor = DiffusionPolicy.create(
        obs_dim,
        action_dim,
        action_low,
        action_high,
        key=k_actor,
        schedule=vp_schedule(config.diffusion_steps, config.beta_min, config.beta_max),
        x0_clip=True,
        hidden=config.hidden,
    )
    critic = QEnsemble(
        obs_dim,
        action_dim,
        2,
        config.critic_hidden or config.hidden,
        init="default",
        key=k_critic,
        backward=config.critic_backward,
    )
    actor_opt = make_optimizer(config.actor_lr, config.grad_norm, lr_decay_of(config))
    critic_opt = make_optimizer(config.critic_lr, config.grad_norm, lr_decay_of(config))
    return ActorCriticState(
        actor=actor,
        ema_actor=actor,
        critic=critic,
        target_critic=critic,
        actor_opt_state=actor_opt.init(trainable(actor.denoiser)),
        critic_opt_state=critic_opt.init(trainable(critic)),
        step=jnp.zeros((), jnp.int32),
        key=raw_key(k_state),
    )


def actor_loss(
    config: DiffusionQLConfig,
    denoiser: PyTree,
    actor: DiffusionPolicy,
    critic: QEnsemble,
    batch: Transitions,
    key: PRNGKey,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """Noise matching plus the Q term through the full reverse chain (docs/method.md §7)."""
    actor = with_denoiser(actor, denoiser)
    k_bc, k_chain, k_coin = jax.random.split(key, 3)
    bc_loss, _ = actor.loss(batch.observations, batch.actions, k_bc, kind="nml")
    q = critic(batch.observations, actor.sample(batch.observations, k_chain))
    first = jax.random.bernoulli(k_coin)
    q_j = jnp.where(first, q[0], q[1])
    q_k = jnp.where(first, q[1], q[0])
    q_loss = -jnp.mean(q_j) / jax.lax.stop_gradient(jnp.mean(jnp.abs(q_k)))
    return bc_loss + config.eta * q_loss, {"bc_loss": bc_loss, "q_loss": q_loss}


def update(
    config: DiffusionQLConfig, state: ActorCriticState, batch: Transitions
) -> tuple[ActorCriticState, dict[str, Float[Array, ""]]]:
    """One Diffusion-QL update (module docstring); pure, `jit` it with `config` static.

    **Returns:** `(state, metrics)` with scalar metrics `critic_loss`, `actor_loss`, `bc_loss`,
    `q_loss`, `q_mean` (mean of $Q_j(s, a)$ over batch and both critics, before the critic
    step) and the gradients' global norms before clipping, `critic_grad_norm` and
    `actor_grad_norm`.
    """
    key, k_next, k_actor = jax.random.split(state.key, 3)

    next_values = next_state_values(
        state.ema_actor,
        state.target_critic,
        batch.next_observations,
        k_next,
        config.max_q_backup,
        config.max_q_samples,
    )
    # Clipped double Q: one target shared by both critics.
    targets = td_targets(batch.rewards, batch.terminals, jnp.min(next_values, axis=0), config.gamma)

    # F.mse_loss(q1, y) + F.mse_loss(q2, y) in the reference code: a sum over the two critics of
    # the mean over the batch, both regressing to the same target.
    c_loss, q_data, c_grads = state.critic.squared_error_and_grad(
        batch.observations, batch.actions, targets, 1.0 / batch.rewards.shape[0]
    )
    critic, critic_opt_state, c_norm = apply_gradients(
        make_optimizer(config.critic_lr, config.grad_norm, lr_decay_of(config)),
        state.critic,
        c_grads,
        state.critic_opt_state,
    )

    (a_loss, aux), a_grads = eqx.filter_value_and_grad(
        lambda d: actor_loss(config, d, state.actor, critic, batch, k_actor), has_aux=True
    )(state.actor.denoiser)
    denoiser, actor_opt_state, a_norm = apply_gradients(
        make_optimizer(config.actor_lr, config.grad_norm, lr_decay_of(config)),
        state.actor.denoiser,
        a_grads,
        state.actor_opt_state,
    )
    new_state = finish_step(
        state,
        denoiser,
        critic,
        actor_opt_state,
        critic_opt_state,
        key,
        tau=config.tau,
        ema_decay=config.ema_decay,
        ema_start=config.ema_start,
        ema_every=config.ema_every,
    )
    metrics = {
        "critic_loss": c_loss,
        "actor_loss": a_loss,
        **aux,
        "q_mean": jnp.mean(q_data),
        "critic_grad_norm": c_norm,
        "actor_grad_norm": a_norm,
    }
    return new_state, metrics


def act(
    config: DiffusionQLConfig,
    state: ActorCriticState,
    observations: Float[Array, "n obs"],
    key: PRNGKey,
) -> Float[Array, "n act"]:
    r"""Evaluation actions: `eval_candidates` samples per state from the online actor, one picked
    by softmax over $\min(\bar Q_1, \bar Q_2)$ of the target critics."""
    return select_actions(
        state.actor,
        state.target_critic,
        observations,
        key,
        num_candidates=config.eval_candidates,
        aggregate="min",
        temperature=config.eval_temperature,
    )
