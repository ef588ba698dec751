r"""Behaviour cloning with a diffusion policy: the diffusion loss alone (`docs/method.md §4`),
with an EMA copy of the actor like the actor-critic agents. The baseline that every Q term is
measured against, and the policy the toy tasks compare to.
"""

from __future__ import annotations

import dataclasses

from ...policy import DiffusionPolicy, LossKind, ScheduleName
from .._errors import check_config_fields
from ._base import AbstractAgent, make_optimizer


@dataclasses.dataclass(frozen=True)
class BCConfig:
    r"""Hyper-parameters of diffusion behaviour cloning; the defaults are the official codes'
    `Diffusion_BC` (plain Adam: no gradient clipping, no learning-rate decay; it acts with the
    online actor, so the EMA copy kept here never changes what is reported;
    `docs/method.md §8.3`).

    - `diffusion_steps`, `schedule`: $T$ and the rate schedule of the policy's SDE.
    - `loss`: `"nml"` or `"mll"`; `x0_clip`: clip $\hat x_0$ in the sampler.
    - `lr`, `grad_norm`: Adam learning rate and the global-norm clip (0: none, the default).
    - `batch_size`, `hidden`: batch size and width of the denoiser.
    - `ema_decay`, `ema_start`, `ema_every`: the EMA actor's schedule.
    """

    diffusion_steps: int = 5
    schedule: ScheduleName = "cosine"
    loss: LossKind = "nml"
    x0_clip: bool = False
    lr: float = 3e-4
    grad_norm: float = 0.0
    batch_size: int = 256
    hidden: int = 256
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5

    def __post_init__(self):
        # The Literal fields' choices and the numeric ranges.
        check_config_fields(self)


class BC(AbstractAgent):
    """Diffusion behaviour cloning (module docstring): `BC(config)`, then `init`, `update` and
    `act`. What is its own: the diffusion loss alone as the actor loss, plain Adam, and one
    sample of the online actor to act."""

    config: BCConfig

    def __check_init__(self):
        if not isinstance(self.config, BCConfig):
            raise TypeError(f"BC needs a BCConfig, got {type(self.config).__name__}.")

    def make_actor(self, obs_dim, action_dim, action_low, action_high, *, key, activation):
        config = self.config
        return DiffusionPolicy.create(
            obs_dim,
            action_dim,
            action_low,
            action_high,
            key=key,
            schedule=config.schedule,
            num_steps=config.diffusion_steps,
            x0_clip=config.x0_clip,
            hidden=config.hidden,
            activation=activation,
        )

    def actor_optimizer(self):
        return make_optimizer(self.config.lr, self.config.grad_norm)

    def actor_loss(self, actor, critic, batch, key):
        """The diffusion loss (diagnostic `bc_loss`, the same number)."""
        loss = actor.loss(batch.observations, batch.actions, key, kind=self.config.loss)[0]
        return loss, {"bc_loss": loss}

    def act(self, state, observations, key):
        """One sample per state from the online actor (no critic to choose among candidates)."""
        return state.actor.sample(observations, key)
