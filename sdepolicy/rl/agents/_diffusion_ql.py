r"""Diffusion-QL (Wang, Hunt, Zhou 2023; docs/method.md §7): a VP diffusion policy trained with
noise matching plus a Q term back-propagated through the full reverse chain, and two critics.

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

import jax
import jax.numpy as jnp

from ...sde import vp_schedule
from .._errors import ConfigError
from .._options import Reals, option
from ._base import AbstractActorCritic
from ._config import GRAD_NORM, ActorCriticConfig


@dataclasses.dataclass(frozen=True)
class DiffusionQLConfig(ActorCriticConfig):
    """Hyper-parameters of Diffusion-QL: `ActorCriticConfig`'s and `AgentConfig`'s
    options, and these.

    `DiffusionQLConfig()` is Diffusion-QL's locomotion setting with `grad_norm` 9 (its code's
    per-task table: 9 on halfcheetah- and hopper-medium, 1 on walker2d-medium; the D4RL presets
    take each task's, docs/method.md §8.2). The command line without `--task` runs it with the
    project's own defaults on top, `sdepolicy.app.PROJECT_DEFAULTS` (docs/method.md §8.6).

    - `beta_min`, `beta_max`: the VP schedule of `diffusion_steps` steps (docs/method.md §2).
    - `grad_norm`: 9, see above.
    """

    beta_min: float = option(0.1, Reals(0.0, low_open=True))
    beta_max: float = option(10.0, Reals(0.0, low_open=True))
    grad_norm: float = option(9.0, GRAD_NORM)

    def __post_init__(self):
        super().__post_init__()  # every field against its declaration
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
    config_class = DiffusionQLConfig

    def actor_schedule(self):
        r"""The VP schedule, with $\hat x_0$ clipped at every sampler step."""
        config = self.config
        return vp_schedule(config.diffusion_steps, config.beta_min, config.beta_max), True

    def critic_ensemble(self):
        return 2, "default"

    def bootstrap(self, next_values):
        r"""Clipped double Q: $\min_j \bar Q_j(s', a')$, one target shared by both critics."""
        return jnp.min(next_values, axis=0)

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
