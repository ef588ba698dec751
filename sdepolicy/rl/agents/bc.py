r"""Behaviour cloning with a diffusion policy: the diffusion loss alone (`docs/method.md §4`),
with an EMA copy of the actor like the actor-critic agents. The baseline that every Q term is
measured against, and the policy the toy tasks compare to.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PyTree, UInt32

from ..._typing import PRNGKey
from ...policy import DiffusionPolicy
from ..transitions import Transitions
from .common import apply_gradients, ema_update, make_optimizer, raw_key, trainable, with_denoiser


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Hyper-parameters of diffusion behaviour cloning; the defaults are the official codes'
    `Diffusion_BC` (plain Adam: no gradient clipping, no learning-rate decay; it acts with the
    online actor, so the EMA copy kept here never changes what is reported;
    `docs/method.md §8.3`).

    - `diffusion_steps`, `schedule`: $T$ and the rate schedule of the policy's SDE.
    - `loss`: `"nml"` or `"mll"`; `x0_clip`: clip $\\hat x_0$ in the sampler.
    - `lr`, `grad_norm`: Adam learning rate and the global-norm clip (0: none, the default).
    - `batch_size`, `hidden`: batch size and width of the denoiser.
    - `ema_decay`, `ema_start`, `ema_every`: the EMA actor's schedule.
    """

    diffusion_steps: int = 5
    schedule: str = "cosine"
    loss: str = "nml"
    x0_clip: bool = False
    lr: float = 3e-4
    grad_norm: float = 0.0
    batch_size: int = 256
    hidden: int = 256
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5

    def __post_init__(self):
        # Imported here so that this method stays the only part of the module that knows about
        # the user-facing checks (ConfigError is also a ValueError).
        from ...policy.diffusion_policy import SCHEDULES
        from ..errors import ConfigError, check_config_fields

        if self.loss not in ("mll", "nml"):
            raise ConfigError(f"BCConfig: loss must be 'mll' or 'nml', got {self.loss!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"BCConfig: schedule must be one of {tuple(SCHEDULES)}, got {self.schedule!r}."
            )
        check_config_fields(self)


class BCState(eqx.Module):
    """The state of a behaviour-cloning agent: actor, its EMA, the optax state, the step count
    and the agent's raw PRNG key."""

    actor: DiffusionPolicy
    ema_actor: DiffusionPolicy
    opt_state: PyTree
    step: Int[Array, ""]
    key: UInt32[Array, "2"]


def init(
    config: BCConfig,
    obs_dim: int,
    action_dim: int,
    action_low: Float[ArrayLike, " act"],
    action_high: Float[ArrayLike, " act"],
    key: PRNGKey,
) -> BCState:
    """A fresh agent: random actor, EMA = copy, Adam state, step 0."""
    k_actor, k_state = jax.random.split(key)
    actor = DiffusionPolicy.create(
        obs_dim,
        action_dim,
        action_low,
        action_high,
        key=k_actor,
        schedule=config.schedule,
        num_steps=config.diffusion_steps,
        x0_clip=config.x0_clip,
        hidden=config.hidden,
    )
    opt = make_optimizer(config.lr, config.grad_norm)
    return BCState(
        actor=actor,
        ema_actor=actor,
        opt_state=opt.init(trainable(actor.denoiser)),
        step=jnp.zeros((), jnp.int32),
        key=raw_key(k_state),
    )


def update(
    config: BCConfig, state: BCState, batch: Transitions
) -> tuple[BCState, dict[str, Float[Array, ""]]]:
    """One step on the diffusion loss, then the EMA rule. Metrics: `bc_loss` (= `actor_loss`)
    and `actor_grad_norm` (before clipping)."""
    key, k_loss = jax.random.split(state.key)

    def loss_fn(denoiser):
        actor = with_denoiser(state.actor, denoiser)
        return actor.loss(batch.observations, batch.actions, k_loss, kind=config.loss)[0]

    loss, grads = eqx.filter_value_and_grad(loss_fn)(state.actor.denoiser)
    denoiser, opt_state, a_norm = apply_gradients(
        make_optimizer(config.lr, config.grad_norm), state.actor.denoiser, grads, state.opt_state
    )
    ema_denoiser = ema_update(
        state.ema_actor.denoiser,
        denoiser,
        state.step,
        config.ema_decay,
        config.ema_start,
        config.ema_every,
    )
    new_state = BCState(
        actor=with_denoiser(state.actor, denoiser),
        ema_actor=with_denoiser(state.ema_actor, ema_denoiser),
        opt_state=opt_state,
        step=state.step + 1,
        key=key,
    )
    return new_state, {"bc_loss": loss, "actor_loss": loss, "actor_grad_norm": a_norm}


def act(
    config: BCConfig, state: BCState, observations: Float[Array, "n obs"], key: PRNGKey
) -> Float[Array, "n act"]:
    """One sample per state from the online actor (no critic to choose among candidates)."""
    return state.actor.sample(observations, key)
