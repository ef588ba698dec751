r"""Diffusion-QL (Wang, Hunt, Zhou 2023; docs/method.md §7): a VP diffusion policy trained with noise
matching plus a Q term back-propagated through the full reverse chain, and two critics.

What is Diffusion-QL's own (the rest of the update, the EMA actor and the Polyak targets, is
every agent's: `sdepolicy/rl/agents/_base.py`):

1. **Critics.** $y = r + \gamma(1 - \text{terminal})\min_j \bar Q_j(s', a')$, $a'$ from the EMA
   actor (max-Q backup: max over `max_q_samples` actions per critic, then the min); loss
   $\sum_j \operatorname{MSE}(Q_j(s, a), y)$.
2. **Actor**, against the freshly updated critics, with $a^0$ sampled by the *full* posterior
   chain (differentiable) and $(j, k)$ = (1, 2) or (2, 1) at random:
   $\mathcal L = \mathcal L_\text{nml} + \eta\,(-\operatorname{mean} Q_j(s, a^0) /
   \operatorname{sg}\operatorname{mean}|Q_k(s, a^0)|)$.
3. **Acting**: candidates from the online actor, one picked by softmax over
   $\min(\bar Q_1, \bar Q_2)$.

$\hat x_0$ is clipped to $[-1, 1]$ at every sampler step; the schedule is the VP one.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from ...policy import DiffusionPolicy
from ...sde import vp_schedule
from .._critics import QEnsemble
from .._errors import ConfigError, check_config_fields
from .._selection import TemperatureScale
from ._base import (
    CRITIC_BACKWARDS,
    AbstractActorCritic,
    CriticBackwardName,
    next_state_values,
    td_targets,
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
        temperature of the softmax that picks one (1 in the reference codes, 0 = the best);
        `eval_temperature_scale`: `"absolute"` (the reference codes) or `"disagreement"`
        (in units of the critics' disagreement about the candidates at that state:
        `sdepolicy.rl.select_actions`); `eval_actor`: which actor proposes the candidates,
        `"online"` (the reference codes) or `"ema"`.
    - `lr_decay`, `lr_decay_every`, `lr_decay_t_max`: the reference codes' cosine learning-rate
        decay of both optimisers, stepped every `lr_decay_every` updates with `T_max` =
        `lr_decay_t_max` (`cosine_every_schedule` in `sdepolicy/rl/agents/_base.py`).
    - `critic_backward`: how the Q-ensemble is differentiated, `"fused"` (the hand-written
        backward pass, faster) or `"autodiff"` (the straightforward code; same maths, see
        `sdepolicy.rl.FusedBackward`).
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
    eval_temperature_scale: TemperatureScale = "absolute"
    eval_actor: Literal["online", "ema"] = "online"
    critic_backward: CriticBackwardName = "fused"
    # The reference codes' CosineAnnealingLR, stepped once per evaluation period (off by
    # default; the D4RL presets switch it on: docs/method.md §6.7).
    lr_decay: bool = False
    lr_decay_every: int = 50_000
    lr_decay_t_max: int = 2000

    def __post_init__(self):
        # The Literal fields' choices and the numeric ranges, then what couples fields.
        check_config_fields(self)
        if self.beta_min >= self.beta_max:
            raise ConfigError(
                f"DiffusionQLConfig: beta_min ({self.beta_min}) must be below beta_max "
                f"({self.beta_max})."
            )


class DiffusionQL(AbstractActorCritic):
    r"""Diffusion-QL (module docstring): `DiffusionQL(config)`, then `init`, `update` and `act`.

    What is its own: a VP policy with $\hat x_0$ clipping, two critics with PyTorch's default
    initialisation and the clipped double-Q target, the sum of the two critics' MSEs, the Q term
    through the full reverse chain, and evaluation by softmax over $\min(\bar Q_1, \bar Q_2)$.
    """

    config: DiffusionQLConfig

    def __check_init__(self):
        if not isinstance(self.config, DiffusionQLConfig):
            raise TypeError(
                f"DiffusionQL needs a DiffusionQLConfig, got {type(self.config).__name__}."
            )

    def make_actor(self, obs_dim, action_dim, action_low, action_high, *, key, activation):
        config = self.config
        return DiffusionPolicy.create(
            obs_dim,
            action_dim,
            action_low,
            action_high,
            key=key,
            schedule=vp_schedule(config.diffusion_steps, config.beta_min, config.beta_max),
            x0_clip=True,
            hidden=config.hidden,
            activation=activation,
        )

    def make_critic(self, obs_dim, action_dim, *, key, activation):
        config = self.config
        return QEnsemble(
            obs_dim,
            action_dim,
            2,
            config.critic_hidden or config.hidden,
            init="default",
            key=key,
            activation=activation,
            backward=CRITIC_BACKWARDS[config.critic_backward],
        )

    def critic_targets(self, state, batch, key):
        r"""Clipped double Q: one target $r + \gamma(1 - \text{terminal})\min_j \bar Q_j(s',
        a')$ shared by both critics."""
        config = self.config
        next_q = next_state_values(
            state.ema_actor,
            state.target_critic,
            batch.next_observations,
            key,
            config.max_q_backup,
            config.max_q_samples,
        )
        return td_targets(batch.rewards, batch.terminals, jnp.min(next_q, axis=0), config.gamma)

    def critic_loss(self, squared_errors):
        """`F.mse_loss(q1, y) + F.mse_loss(q2, y)` in the reference code: the sum over the two
        critics of the mean over the batch."""
        return jnp.sum(jnp.mean(squared_errors, axis=1))

    def actor_loss(self, actor, critic, batch, key):
        """Noise matching plus the Q term through the full reverse chain (docs/method.md §7);
        diagnostics `bc_loss` and `q_loss`."""
        k_bc, k_chain, k_coin = jax.random.split(key, 3)
        bc_loss, _ = actor.loss(batch.observations, batch.actions, k_bc, kind="nml")
        q = critic(batch.observations, actor.sample(batch.observations, k_chain))
        first = jax.random.bernoulli(k_coin)
        q_j = jnp.where(first, q[0], q[1])
        q_k = jnp.where(first, q[1], q[0])
        q_loss = -jnp.mean(q_j) / jax.lax.stop_gradient(jnp.mean(jnp.abs(q_k)))
        return bc_loss + self.config.eta * q_loss, {"bc_loss": bc_loss, "q_loss": q_loss}

    def eval_aggregate(self):
        r"""$\min(\bar Q_1, \bar Q_2)$ of the target critics, as the reference code evaluates."""
        return "min", 0.0
