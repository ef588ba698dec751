r"""Evaluation action selection: many candidates per state, one picked by a softmax over Q.

For every state, `num_candidates` actions are sampled from the (online) diffusion policy, scored
by a pessimistic aggregate of the critic ensemble, and one is drawn with probability
$\propto \exp Q$ (temperature 1), as both reference codes do with `torch.multinomial(softmax(Q))`.
All states are handled in one batched call: one sampler run over `n * num_candidates` rows and
one ensemble evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey, RealScalarLike
from ..policy import DiffusionPolicy
from ._pessimism import aggregate_q

#: A critic ensemble: ``(states[b, obs], actions[b, act]) -> q[members, b]``, e.g. a `QEnsemble`.
Critic = Callable[[Float[Array, "b obs"], Float[Array, "b act"]], Float[Array, "members b"]]


def select_actions(
    policy: DiffusionPolicy,
    critic: Critic,
    states: Float[Array, "n obs"],
    key: PRNGKey,
    num_candidates: int = 50,
    aggregate: str = "lcb",
    lcb_beta: RealScalarLike = 4.0,
    temperature: float = 1.0,
) -> Float[Array, "n act"]:
    r"""Pick one action per state among `num_candidates` policy samples by softmax-Q sampling.

    **Arguments:**

    - `policy`: the diffusion policy that proposes candidates (the online actor, per docs/method.md §6).
    - `critic`: the ensemble that scores them (the target critic, per docs/method.md §6): any
        `(states, actions) -> q[members, batch]`, e.g. a [`QEnsemble`][].
    - `states`: `n` states.
    - `key`: PRNG key (candidates and the categorical draw).
    - `num_candidates`: candidates per state (the papers: 50).
    - `aggregate`: `"lcb"` (ER-DP-QE: $\bar Q - \beta\hat\sigma_Q$) or `"min"` (Diffusion-QL:
        $\min(\bar Q_1, \bar Q_2)$).
    - `lcb_beta`: $\beta$ of the LCB.
    - `temperature`: the softmax's temperature $\tau$ (draw with probability
        $\propto \exp(Q/\tau)$); 1 in both reference codes, whose rewards are raw; `0` picks
        the best-scored candidate. On standardised rewards $Q$'s differences between candidates
        are small and $\tau = 1$ draws nearly uniformly.

    **Returns:** actions of shape `(n, action)` in the environment's box.
    """
    n = states.shape[0]
    k_candidates, k_pick = jax.random.split(key)
    # Row i*C + j is candidate j of state i (torch.repeat_interleave in the reference code).
    repeated = jnp.repeat(states, num_candidates, axis=0)
    candidates = policy.sample(repeated, k_candidates)
    scores = aggregate_q(critic(repeated, candidates), aggregate, lcb_beta)
    scores = scores.reshape(n, num_candidates)
    if temperature > 0:
        choice = jax.random.categorical(k_pick, scores / temperature, axis=-1)
    else:
        choice = jnp.argmax(scores, axis=-1)
    candidates = candidates.reshape(n, num_candidates, -1)
    return jnp.take_along_axis(candidates, choice[:, None, None], axis=1)[:, 0]
