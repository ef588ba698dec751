r"""Behaviour cloning with a diffusion policy: the diffusion loss alone (`docs/method.md §4`),
with an EMA copy of the actor like the actor-critic agents. The baseline that every Q term is
measured against, and the policy the toy tasks compare to.
"""

from __future__ import annotations

import dataclasses

from ...policy import LossKind, ScheduleName
from .._options import option
from ._base import AbstractAgent, make_optimizer
from ._config import LEARNING_RATE, AgentConfig


@dataclasses.dataclass(frozen=True)
class BCConfig(AgentConfig):
    r"""Hyper-parameters of diffusion behaviour cloning: `AgentConfig`'s options, and these.

    `BCConfig()` is the official codes' `Diffusion_BC` (plain Adam: no gradient clipping, the
    default `grad_norm` 0, no learning-rate decay; it acts with the online actor, so the EMA copy
    kept here never changes what is reported; `docs/method.md §8.3`). The command line without
    `--task` runs it with the project's own defaults on top, `sdepolicy.app.PROJECT_DEFAULTS`.

    - `schedule`: the rate schedule of the policy's SDE.
    - `loss`: `"nml"` or `"mll"`; `x0_clip`: clip $\hat x_0$ in the sampler.
    - `lr`: the Adam learning rate.
    """

    schedule: ScheduleName = "cosine"
    loss: LossKind = "nml"
    x0_clip: bool = False
    lr: float = option(3e-4, LEARNING_RATE)


class BC(AbstractAgent):
    """Diffusion behaviour cloning (module docstring): `BC(config)`, then `init`, `update` and
    `act`. What is its own: the diffusion loss alone as the actor loss, plain Adam, and one
    sample of the online actor to act."""

    config: BCConfig
    config_class = BCConfig

    def actor_optimizer(self):
        return make_optimizer(self.config.lr, self.config.grad_norm)

    def actor_loss(self, actor, critic, batch, key):
        """The diffusion loss (diagnostic `bc_loss`, the same number)."""
        loss = actor.loss(batch.observations, batch.actions, key, kind=self.config.loss)[0]
        return loss, {"bc_loss": loss}

    def act(self, state, observations, key):
        """One sample per state from the online actor (no critic to choose among candidates)."""
        return state.actor.sample(observations, key)
