r"""Experimental: options that were measured and not adopted, kept with their measurements.

Like `optax.contrib`, nothing here is part of the configs a user meets: `ERDPQEConfig` does not
have these options, no preset uses them, and their defaults leave the algorithm unchanged
(`ERDPQEExperimental(ERDPQEExperimentalConfig())` trains exactly as
`ERDPQE(ERDPQEConfig())`: tested). They stay so that their measurements can be repeated and
built on. Each lost to the defaults where it was measured:

- `target_aggregate`, one shared pessimistic TD target for all critics: docs/method.md §6.2,
  docs/results.md §2, §2.3 and §2.6;
- `q_scale`, the Q term over the critics' disagreement instead of mean |Q|: docs/method.md
  §5.7, docs/results.md §2.3;
- `critic_diversity`, EDAC's ensemble-diversity term in the critics' loss: docs/method.md §6.1
  and §8.6, docs/results.md §2.2 and §2.3;
- `critic_conservatism`, a CQL-style penalty on the actor's own actions: docs/method.md §6.2,
  docs/results.md §2.4.

From Python: `ERDPQEExperimental(ERDPQEExperimentalConfig(critic_conservatism=1.0))` (or
`sdepolicy.rl.make_agent(config)`). On the command line the same names work with `--set`
(`--set critic_conservatism=1`): an ER-DP-QE run given one of them runs this agent, and its
summary's config lists the options.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._critics import action_gradient_similarity
from ._options import Reals, option
from ._pessimism import aggregate_q
from ._selection import Critic
from .agents._erdpqe import ERDPQE, ERDPQEConfig


@dataclasses.dataclass(frozen=True)
class ERDPQEExperimentalConfig(ERDPQEConfig):
    r"""`ERDPQEConfig` with the experimental options (module docstring); each default is the
    reference's, which leaves ER-DP-QE unchanged.

    - `target_aggregate`: how the TD target reads the target ensemble: `"member"` (each
        critic bootstraps from its own target, the reference code), or one shared pessimistic
        target for all members, `"min"` over members or `"lcb"` (mean − `lcb_beta` · std).
    - `q_scale`: what the actor's Q term is divided by, `"absolute"` (mean |Q| over members and
        batch, the reference) or `"disagreement"` (the mean over the batch of the members'
        std at each sample: docs/method.md §5.7). (`"abs"`, its old spelling, is refused with
        a message naming `"absolute"`.)
    - `critic_diversity`: weight of EDAC's ensemble-diversity term in the critics' loss
        (`sdepolicy.rl.action_gradient_similarity`); 0, the reference, leaves it out.
    - `critic_conservatism`: weight $c$ of a CQL-style term in the critics' loss,
        $c\,\operatorname{mean}_{m,i}\max(Q_m(s_i, a^\pi_i) - Q_m(s_i, a_i), 0)$ with $a^\pi_i$ a
        posterior sample of the online actor at the data's state (gradient stopped): it lowers
        the critics at the actor's actions against the data's (docs/method.md §6.2); 0, the
        reference, leaves it out.
    """

    target_aggregate: Literal["member", "min", "lcb"] = "member"
    q_scale: Literal["absolute", "disagreement"] = option("absolute", renamed={"abs": "absolute"})
    critic_diversity: float = option(0.0, Reals(0.0))
    critic_conservatism: float = option(0.0, Reals(0.0))

    def needs_two_critics(self):
        return super().needs_two_critics() | {
            "q_scale=disagreement": (self.q_scale == "disagreement", "")
        }


class ERDPQEExperimental(ERDPQE):
    r"""ER-DP-QE with the experimental options of `ERDPQEExperimentalConfig` (module
    docstring); with their defaults, ER-DP-QE itself."""

    config: ERDPQEExperimentalConfig
    config_class = ERDPQEExperimentalConfig

    def bootstrap(self, next_values):
        r"""Each member's own $\bar Q_m(s', a')$, or with `target_aggregate` `"min"` or
        `"lcb"` one shared pessimistic value for all members."""
        config = self.config
        if config.target_aggregate == "member":
            return next_values
        shared = aggregate_q(next_values, config.target_aggregate, config.lcb_beta)
        return jnp.broadcast_to(shared[None], next_values.shape)

    def q_term_scale(self, q):
        """`q_scale`'s normaliser (`q_term_scale`)."""
        return q_term_scale(q, self.config.q_scale)

    def critic_penalty_context(self, state, batch, key):
        """The online actor's posterior samples at the data's states (gradient stopped) when
        `critic_conservatism` is not 0; None otherwise (nothing is sampled)."""
        if self.config.critic_conservatism == 0:
            return None
        return jax.lax.stop_gradient(state.actor.sample(batch.observations, key))

    def critic_penalty(self, critic, batch, context):
        r"""`critic_diversity` times EDAC's diversity measure at the data's (s, a), logged as
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


#: Each config class and its experimental extension: an override that names an option of the
#: extension turns the first into the second (`sdepolicy.app.apply_overrides`).
EXTENSIONS: dict[type, type] = {ERDPQEConfig: ERDPQEExperimentalConfig}


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

    - `"absolute"`: $\operatorname{mean}_{m,i} |Q_m(s_i, \hat a_i)|$ (the reference codes,
      TD3+BC's $\lambda$): invariant to the rewards' scale, not to their offset.
    - `"disagreement"`: $\operatorname{mean}_i \operatorname{std}_m Q_m(s_i, \hat a_i)$, the
      critics' disagreement: invariant to both, so the Q term is counted in units of what the
      critics are unsure about (docs/method.md §5.7). Floored at $10^{-6}$ of the first, so
      that identical members do not divide by zero.
    """
    mean_abs = jnp.mean(jnp.abs(q))
    if how == "absolute":
        return mean_abs
    spread = jnp.mean(jnp.std(q, axis=0, ddof=1))
    return jnp.maximum(spread, 1e-6 * mean_abs + jnp.finfo(q.dtype).tiny)
