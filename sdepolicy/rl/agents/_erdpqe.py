r"""ER-DP-QE: the entropy-regularised diffusion policy with a Q-ensemble (docs/method.md §5, §6).

What is ER-DP-QE's own (the rest of the update, the EMA actor and the Polyak target, is every
agent's: `sdepolicy/rl/agents/_base.py`):

1. **Critic.** Per member $m$, $y_m = r + \gamma(1 - \text{terminal})\,\bar Q_m(s', a')$ with
   $a'$ from the EMA actor's posterior sampler (max-Q backup: the max over `max_q_samples`
   actions, per member); no min or LCB in the target. Loss: MSE over batch $\times$ members.
2. **Actor**, against the freshly updated critic:

   $$\mathcal L = \mathcal L_\text{bc} + \eta\,\frac{-\operatorname{mean} Q_\text{lcb}(s,
   \operatorname{clip}\hat a_0)}{\operatorname{sg}\operatorname{mean}|Q_m(s,
   \operatorname{clip}\hat a_0)|} + \alpha\,\frac{-\operatorname{mean} H}{\operatorname{sg}
   \operatorname{mean}|H|},$$

   with $\hat a_0$ the denoiser's one-step prediction from the diffusion loss (the chain is not
   run) and $H \approx -\log\pi(\hat a_0 \mid s)$ the selected entropy estimator.
3. **Acting**: candidates from the online actor, one picked by softmax over the target critic's
   LCB (docs/method.md §6.5).

Options that were measured and not adopted (a shared pessimistic TD target, the Q term over the
critics' disagreement, EDAC's diversity term, a CQL-style penalty) are not here: they extend this
agent in `sdepolicy.rl.experimental`, with their measurements.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ...policy import DiffusionPolicy, EntropyName, LossKind, ScheduleName
from .._errors import ConfigError
from .._options import Ints, Reals, option
from .._pessimism import Aggregate, aggregate_q
from ._base import AbstractActorCritic
from ._config import GRAD_NORM, ActorCriticConfig


@dataclasses.dataclass(frozen=True)
class ERDPQEConfig(ActorCriticConfig):
    r"""Hyper-parameters of ER-DP-QE: `ActorCriticConfig`'s and `AgentConfig`'s
    options, and these.

    `ERDPQEConfig()` is the paper's locomotion setting (docs/method.md §6, §8.1), what the D4RL
    presets start from. The command line without `--task` (the embedded task, every `--dataset`
    run) runs it with the project's own defaults on top, `sdepolicy.app.PROJECT_DEFAULTS`
    (docs/method.md §8.6): `sdepolicy.app.get_preset("pendulum-mixed").config("erdpqe")`.

    - `schedule`: the rate schedule of the policy's SDE.
    - `num_critics`, `lcb_beta`, `q_aggregate`: $M$, $\beta$ and the actor's pessimism
        (`"lcb"` or `"min"`).
    - `alpha`: weight of the entropy term; `entropy`: `"reference"`, `"paper"` or
        `"likelihood"` (the policy's own entropy, `sdepolicy.policy.policy_entropy`).
    - `loss`: the diffusion loss, `"mll"` or `"nml"`; `x0_clip`: clip $\hat x_0$ in the sampler.
    - `q_weighting`: per-sample weights of the actor's Q term by diffusion step,
        `"uniform"` (the reference) or `"x0_gain_inverse"` (`q_step_weights`; its old
        spelling `"jacobian"` is refused with a message naming the new one).
    - `grad_norm`: 4, the reference's.
    """

    schedule: ScheduleName = "cosine"
    num_critics: int = option(64, Ints(1, 1024))
    lcb_beta: float = option(4.0, Reals(0.0))
    q_aggregate: Aggregate = "lcb"
    alpha: float = option(0.01, Reals(0.0))
    entropy: EntropyName = "reference"
    loss: LossKind = "mll"
    x0_clip: bool = False
    q_weighting: Literal["uniform", "x0_gain_inverse"] = option(
        "uniform", renamed={"jacobian": "x0_gain_inverse"}
    )
    grad_norm: float = option(4.0, GRAD_NORM)

    def needs_two_critics(self) -> dict[str, tuple[bool, str]]:
        """The options in use that read the members' spread, which one critic does not have:
        `{option: (in use, hint)}`."""
        return {
            "q_aggregate=lcb": (self.q_aggregate == "lcb", "; use q_aggregate=min for one critic"),
            "eval_temperature_scale=disagreement": (
                self.eval_temperature_scale == "disagreement",
                "",
            ),
        }

    def __post_init__(self):
        super().__post_init__()  # every field against its declaration
        for option_, (used, hint) in self.needs_two_critics().items():
            if used and self.num_critics < 2:
                raise ConfigError(
                    f"{type(self).__name__}: {option_} needs num_critics >= 2 (the std over the "
                    f"members of one critic is undefined), got {self.num_critics}{hint}."
                )
        # The reference entropy estimator needs T >= 3 steps, the paper's T >= 2.
        least = {"reference": 3, "paper": 2}.get(self.entropy, 1)
        if self.diffusion_steps < least:
            raise ConfigError(
                f"{type(self).__name__}: entropy={self.entropy!r} needs diffusion_steps >= "
                f"{least}, got {self.diffusion_steps}."
            )


class ERDPQE(AbstractActorCritic):
    r"""ER-DP-QE (module docstring): `ERDPQE(config)`, then `init`, `update` and `act`.

    What is its own: $M$ EDAC-initialised critics each bootstrapping from its own target, the
    MSE over batch $\times$ members, the actor loss of docs/method.md §5.4 on the one-step
    prediction $\hat a_0$, and evaluation by softmax over the target critic's LCB.
    """

    config: ERDPQEConfig
    config_class = ERDPQEConfig

    def critic_ensemble(self):
        return self.config.num_critics, "edac"

    def bootstrap(self, next_values):
        r"""Each member's own $\bar Q_m(s', a')$ (the reference code)."""
        return next_values

    def critic_loss(self, squared_errors):
        r"""MSE over batch $\times$ members to the per-member targets."""
        return jnp.mean(squared_errors)

    def q_term_scale(self, q: Float[Array, "members batch"]) -> Float[Array, ""]:
        r"""What the actor's Q term is divided by (before `stop_gradient`):
        $\operatorname{mean}_{m,i} |Q_m(s_i, \hat a_i)|$, the reference codes' (TD3+BC's
        $\lambda$), invariant to the rewards' scale, not to their offset."""
        return jnp.mean(jnp.abs(q))

    def actor_loss(self, actor, critic, batch, key):
        """The actor loss of docs/method.md §5.4 (module docstring); diagnostics `bc_loss`,
        `q_loss`, `entropy` (the mean estimate over the batch) and `q_term_scale`."""
        config = self.config
        k_bc, k_ent = jax.random.split(key)
        pred = actor.loss_and_prediction(batch.observations, batch.actions, k_bc, config.loss)
        # The Q term sees the clipped prediction, in the environment's box (the critic's input).
        q = critic(batch.observations, pred.action)
        q_pess = aggregate_q(q, config.q_aggregate, config.lcb_beta)
        q_loss = -jnp.mean(q_step_weights(actor, pred.steps, config.q_weighting) * q_pess)
        q_scale = jax.lax.stop_gradient(self.q_term_scale(q))
        q_loss = q_loss / q_scale
        # The entropy estimate sees the unclipped prediction, as the reference code does.
        h = actor.entropy(config.entropy, batch.observations, pred.x0, k_ent)
        if config.entropy == "likelihood":
            # A differential entropy may be ~0 or negative, so the policy's own entropy is
            # scaled per action dimension instead of by mean|H| (proofs/entropy_likelihood.md §4).
            scale = actor.action_dim
        else:
            scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(h)))
        ent_loss = -jnp.mean(h) / scale
        loss = pred.loss + config.eta * q_loss + config.alpha * ent_loss
        diagnostics = {"bc_loss": pred.loss, "q_loss": q_loss, "entropy": jnp.mean(h)}
        return loss, diagnostics | {"q_term_scale": q_scale}

    def eval_aggregate(self):
        """The target critics' LCB with the config's β, as the reference code evaluates
        (whatever `q_aggregate` the actor trained with)."""
        return "lcb", self.config.lcb_beta


def q_step_weights(
    actor: DiffusionPolicy, steps: Int[Array, " batch"], weighting: str
) -> Float[Array, " batch"]:
    r"""Per-sample weights of the actor's Q term, by the sample's diffusion step $t = k + 1$.

    - `"uniform"`: 1 (the reference code).
    - `"x0_gain_inverse"`: $w_t = e^{-\Theta_t} / \sqrt{v_t}$
      (`DiffusionPolicy.x0_gain_inverse`), the inverse of
      $|\partial \hat x_0 / \partial \hat\varepsilon| = \sqrt{v_t}\,e^{\Theta_t}$, so that the
      Q term pushes the network's output by $\partial Q / \partial a$ at every step (as if it
      predicted the action), instead of up to $e^{\Theta_T} = 10^3$ times harder at the noisiest
      steps of the T = 5 cosine grid, where $\hat x_0$ is an extrapolation (docs/method.md §5).
    """
    if weighting == "uniform":
        return jnp.ones(steps.shape, jnp.float32)
    return jax.lax.stop_gradient(actor.x0_gain_inverse(steps))
