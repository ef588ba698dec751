r"""ER-DP-QE: the entropy-regularised diffusion policy with a Q-ensemble (docs/method.md §5, §6).

What is ER-DP-QE's own (the rest of the update, the EMA actor and the Polyak target, is every
agent's: `sdepolicy/rl/agents/_base.py`):

1. **Critic.** Per member $m$, $y_m = r + \gamma(1 - \text{terminal})\,\bar Q_m(s', a')$ with
   $a'$ from the EMA actor's posterior sampler (max-Q backup: the max over `max_q_samples`
   actions, per member); no min or LCB in the target. Loss: MSE over batch $\times$ members
   (options: plus EDAC's diversity term, `critic_diversity`; plus a CQL-style penalty on the
   actor's own actions, `critic_conservatism`).
2. **Actor**, against the freshly updated critic:

   $$\mathcal L = \mathcal L_\text{bc} + \eta\,\frac{-\operatorname{mean} Q_\text{lcb}(s,
   \operatorname{clip}\hat a_0)}{\operatorname{sg}\operatorname{mean}|Q_m(s,
   \operatorname{clip}\hat a_0)|} + \alpha\,\frac{-\operatorname{mean} H}{\operatorname{sg}
   \operatorname{mean}|H|},$$

   with $\hat a_0$ the denoiser's one-step prediction from the diffusion loss (the chain is not
   run) and $H \approx -\log\pi(\hat a_0 \mid s)$ the selected entropy estimator.
3. **Acting**: candidates from the online actor, one picked by softmax over the target critic's
   LCB (docs/method.md §6.5).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ...policy import DiffusionPolicy, EntropyName, LossKind, ScheduleName
from .._critics import QEnsemble, action_gradient_similarity
from .._errors import ConfigError, check_config_fields
from .._pessimism import Aggregate, aggregate_q
from .._selection import Critic, TemperatureScale
from ._base import (
    CRITIC_BACKWARDS,
    AbstractActorCritic,
    CriticBackwardName,
    next_state_values,
    td_targets,
)


@dataclasses.dataclass(frozen=True)
class ERDPQEConfig:
    r"""Hyper-parameters of ER-DP-QE; defaults are the paper's locomotion setting
    (docs/method.md §6, §8).

    - `diffusion_steps`, `schedule`: $T$ and the rate schedule of the policy's SDE.
    - `num_critics`, `lcb_beta`, `q_aggregate`: $M$, $\beta$ and the actor's pessimism
        (`"lcb"` or `"min"`).
    - `alpha`, `eta`: weights of the entropy and Q terms; `entropy`: `"reference"`, `"paper"`
        or `"likelihood"` (the policy's own entropy, `sdepolicy.policy.policy_entropy`).
    - `loss`: the diffusion loss, `"mll"` or `"nml"`; `x0_clip`: clip $\hat x_0$ in the sampler.
    - `max_q_backup`, `max_q_samples`: max-Q backup and its number of next actions.
    - `target_aggregate`: how the TD target reads the target ensemble: `"member"` (each
        critic bootstraps from its own target, the reference code), or one shared pessimistic
        target for all members, `"min"` over members or `"lcb"` (mean − `lcb_beta` · std).
    - `q_weighting`: per-sample weights of the actor's Q term by diffusion step,
        `"uniform"` (the reference) or `"jacobian"` ([`q_step_weights`][]).
    - `q_scale`: what the actor's Q term is divided by, `"abs"` (mean |Q| over members and
        batch, the reference) or `"disagreement"` (the mean over the batch of the members'
        std at each sample: docs/method.md §5.7).
    - `critic_diversity`: weight of EDAC's ensemble-diversity term in the critics' loss
        (`sdepolicy.rl.action_gradient_similarity`); 0, the reference, leaves it out.
    - `critic_conservatism`: weight $c$ of a CQL-style term in the critics' loss,
        $c\,\operatorname{mean}_{m,i}\max(Q_m(s_i, a^\pi_i) - Q_m(s_i, a_i), 0)$ with $a^\pi_i$ a
        posterior sample of the online actor at the data's state (gradient stopped): it lowers
        the critics at the actor's actions against the data's (docs/method.md §6.2); 0, the
        reference, leaves it out.
    - `actor_lr`, `critic_lr`, `grad_norm`: Adam learning rates and the global-norm clip.
    - `gamma`, `tau`: discount and Polyak rate.
    - `ema_decay`, `ema_start`, `ema_every`: the EMA actor's schedule.
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
    schedule: ScheduleName = "cosine"
    num_critics: int = 64
    lcb_beta: float = 4.0
    q_aggregate: Aggregate = "lcb"
    alpha: float = 0.01
    eta: float = 1.0
    entropy: EntropyName = "reference"
    loss: LossKind = "mll"
    x0_clip: bool = False
    max_q_backup: bool = False
    max_q_samples: int = 10
    target_aggregate: Literal["member", "min", "lcb"] = "member"
    q_weighting: Literal["uniform", "jacobian"] = "uniform"
    q_scale: Literal["abs", "disagreement"] = "abs"
    critic_diversity: float = 0.0
    critic_conservatism: float = 0.0
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    grad_norm: float = 4.0
    gamma: float = 0.99
    tau: float = 0.005
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5
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
        # Options that read the members' spread need at least two of them (option -> hint).
        needs_two = {
            "q_aggregate=lcb": (self.q_aggregate == "lcb", "; use q_aggregate=min for one critic"),
            "q_scale=disagreement": (self.q_scale == "disagreement", ""),
            "eval_temperature_scale=disagreement": (
                self.eval_temperature_scale == "disagreement",
                "",
            ),
        }
        for option, (used, hint) in needs_two.items():
            if used and self.num_critics < 2:
                raise ConfigError(
                    f"ERDPQEConfig: {option} needs num_critics >= 2 (the std over the members "
                    f"of one critic is undefined), got {self.num_critics}{hint}."
                )
        # The reference entropy estimator needs T >= 3 steps, the paper's T >= 2.
        least = {"reference": 3, "paper": 2}.get(self.entropy, 1)
        if self.diffusion_steps < least:
            raise ConfigError(
                f"ERDPQEConfig: entropy={self.entropy!r} needs diffusion_steps >= {least}, "
                f"got {self.diffusion_steps}."
            )


class ERDPQE(AbstractActorCritic):
    r"""ER-DP-QE (module docstring): `ERDPQE(config)`, then `init`, `update` and `act`.

    What is its own: $M$ EDAC-initialised critics each bootstrapping from its own target (or
    one shared pessimistic target), the MSE over batch $\times$ members, the actor loss of
    docs/method.md §5.4 on the one-step prediction $\hat a_0$, and evaluation by softmax over
    the target critic's LCB.
    """

    config: ERDPQEConfig

    def __check_init__(self):
        if not isinstance(self.config, ERDPQEConfig):
            raise TypeError(f"ERDPQE needs an ERDPQEConfig, got {type(self.config).__name__}.")

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

    def make_critic(self, obs_dim, action_dim, *, key, activation):
        config = self.config
        return QEnsemble(
            obs_dim,
            action_dim,
            config.num_critics,
            config.critic_hidden or config.hidden,
            init="edac",
            key=key,
            activation=activation,
            backward=CRITIC_BACKWARDS[config.critic_backward],
        )

    def critic_targets(self, state, batch, key):
        r"""Per member $y_m = r + \gamma(1 - \text{terminal})\,\bar Q_m(s', a')$; with
        `target_aggregate` `"min"` or `"lcb"`, one shared pessimistic $\bar Q(s', a')$."""
        config = self.config
        next_q = next_state_values(
            state.ema_actor,
            state.target_critic,
            batch.next_observations,
            key,
            config.max_q_backup,
            config.max_q_samples,
        )
        if config.target_aggregate != "member":
            shared = aggregate_q(next_q, config.target_aggregate, config.lcb_beta)
            next_q = jnp.broadcast_to(shared[None], next_q.shape)
        return td_targets(batch.rewards, batch.terminals, next_q, config.gamma)

    def critic_penalty_context(self, state, batch, key):
        """The online actor's posterior samples at the data's states (gradient stopped) when
        `critic_conservatism` is not 0; None otherwise (nothing is sampled)."""
        if self.config.critic_conservatism == 0:
            return None
        return jax.lax.stop_gradient(state.actor.sample(batch.observations, key))

    def critic_penalty(self, critic, batch, context):
        """`critic_diversity` times EDAC's diversity measure at the data's (s, a), logged as
        `critic_grad_similarity` (in [-M/(M - 1), M]), plus `critic_conservatism` times the mean
        excess $\max(Q_m(s, a^\pi) - Q_m(s, a), 0)$ (the mean gap, unclipped, is logged as
        `critic_policy_gap`), each when its weight is not 0."""
        config = self.config
        penalty, diagnostics = super().critic_penalty(critic, batch, context)
        if config.critic_diversity != 0:
            sim = action_gradient_similarity(critic, batch.observations, batch.actions)
            penalty = penalty + config.critic_diversity * sim
            diagnostics = diagnostics | {"critic_grad_similarity": sim}
        if config.critic_conservatism != 0:
            gap, excess = policy_data_gap(critic, batch.observations, batch.actions, context)
            penalty = penalty + config.critic_conservatism * excess
            diagnostics = diagnostics | {"critic_policy_gap": gap}
        return penalty, diagnostics

    def critic_loss(self, squared_errors):
        r"""MSE over batch $\times$ members to the per-member targets."""
        return jnp.mean(squared_errors)

    def actor_loss(self, actor, critic, batch, key):
        """The actor loss of docs/method.md §5.4 (module docstring); diagnostics `bc_loss`,
        `q_loss` and `entropy` (the mean estimate over the batch)."""
        config = self.config
        k_bc, k_ent = jax.random.split(key)
        pred = actor.loss_and_prediction(batch.observations, batch.actions, k_bc, config.loss)
        # The Q term sees the clipped prediction, in the environment's box (the critic's input).
        q = critic(batch.observations, pred.action)
        q_pess = aggregate_q(q, config.q_aggregate, config.lcb_beta)
        q_loss = -jnp.mean(q_step_weights(actor, pred.steps, config.q_weighting) * q_pess)
        q_scale = jax.lax.stop_gradient(q_term_scale(q, config.q_scale))
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


def policy_data_gap(
    critic: Critic,
    observations: Float[Array, "batch obs"],
    data_actions: Float[Array, "batch act"],
    policy_actions: Float[Array, "batch act"],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""How much higher the critics rate the actor's actions than the data's at the data's
    states, with $d_{mi} = Q_m(s_i, a^\pi_i) - Q_m(s_i, a_i)$: `(mean d, mean max(d, 0))`.

    The first is the diagnostic (positive where the critics favour actions they have no data
    for); the second, differentiable in the critic, is the penalty of `critic_conservatism`
    (CQL's regulariser with the actor as the proposal, clipped at 0 so that it stops pushing
    once the critics no longer prefer the actor's action: docs/method.md §6.2).
    """
    gap = critic(observations, policy_actions) - critic(observations, data_actions)
    return jnp.mean(gap), jnp.mean(jnp.maximum(gap, 0.0))


def q_term_scale(q: Float[Array, "members batch"], how: str) -> Float[Array, ""]:
    r"""The positive number the actor's Q term is divided by (before `stop_gradient`).

    - `"abs"`: $\operatorname{mean}_{m,i} |Q_m(s_i, \hat a_i)|$ (the reference codes,
      TD3+BC's $\lambda$): invariant to the rewards' scale, not to their offset.
    - `"disagreement"`: $\operatorname{mean}_i \operatorname{std}_m Q_m(s_i, \hat a_i)$, the
      critics' disagreement: invariant to both, so the Q term is counted in units of what the
      critics are unsure about (docs/method.md §5.7). Floored at $10^{-6}$ of the first, so
      that identical members do not divide by zero.
    """
    mean_abs = jnp.mean(jnp.abs(q))
    if how == "abs":
        return mean_abs
    spread = jnp.mean(jnp.std(q, axis=0, ddof=1))
    return jnp.maximum(spread, 1e-6 * mean_abs + jnp.finfo(q.dtype).tiny)


def q_step_weights(
    actor: DiffusionPolicy, steps: Int[Array, " batch"], weighting: str
) -> Float[Array, " batch"]:
    r"""Per-sample weights of the actor's Q term, by the sample's diffusion step $t = k + 1$.

    - `"uniform"`: 1 (the reference code).
    - `"jacobian"`: $w_t = e^{-\Theta_t} / \sqrt{v_t}$, the inverse of
      $|\partial \hat x_0 / \partial \hat\varepsilon| = \sqrt{v_t}\,e^{\Theta_t}$, so that the
      Q term pushes the network's output by $\partial Q / \partial a$ at every step (as if it
      predicted the action), instead of up to $e^{\Theta_T} = 10^3$ times harder at the noisiest
      steps of the T = 5 cosine grid, where $\hat x_0$ is an extrapolation (docs/method.md §5).
    """
    if weighting == "uniform":
        return jnp.ones(steps.shape, jnp.float32)
    return jax.lax.stop_gradient(actor.x0_gain_inverse(steps))
