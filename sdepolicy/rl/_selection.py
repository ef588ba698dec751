r"""Evaluation action selection: many candidates per state, one picked by a softmax over Q.

For every state, `num_candidates` actions are sampled from the (online) diffusion policy, scored
by a pessimistic aggregate of the critic ensemble, and one is drawn with probability
$\propto \exp Q$ (temperature 1), as both reference codes do with `torch.multinomial(softmax(Q))`.
All states are handled in one batched call: one sampler run over `n * num_candidates` rows and
one ensemble evaluation.

The temperature may also be given in units of the critics' disagreement about the candidates
(`candidate_disagreement`): then the draw is near the best candidate where the candidates'
scores differ by more than the members disagree about them, and near a single policy sample
where they do not (docs/method.md §6.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._typing import PRNGKey, RealScalarLike
from ..policy import DiffusionPolicy
from ._pessimism import aggregate_q

#: A critic ensemble: ``(states[b, obs], actions[b, act]) -> q[members, b]``, e.g. a `QEnsemble`.
Critic = Callable[[Float[Array, "b obs"], Float[Array, "b act"]], Float[Array, "members b"]]

TemperatureScale = Literal["absolute", "disagreement"]


def candidate_disagreement(q: Float[Array, "members n c"]) -> Float[Array, " n"]:
    r"""How much an ensemble's members disagree about which of a state's candidates is better.

    For state $i$ with candidates $a_{i1}, \dots, a_{iC}$ and members $m = 1, \dots, M$, each
    member's score is taken relative to that member's mean over the state's candidates,
    $d_{mij} = Q_m(s_i, a_{ij}) - \frac1C \sum_k Q_m(s_i, a_{ik})$, and the result is the members'
    standard deviation of $d_{mij}$ (ddof 1), averaged over the candidates:
    $\sigma_i = \frac1C \sum_j \operatorname{std}_m d_{mij}$.

    Unlike the members' std of $Q$ itself (the LCB's $\hat\sigma_Q$), $\sigma_i$ does not see
    an offset that a member gives all of a state's candidates alike: members that disagree about
    the state's value but rank its candidates the same way have $\sigma_i = 0$.

    **Arguments:** `q`: scores of shape `(members, n, c)`, `members >= 2`.

    **Returns:** $\sigma$ of shape `(n,)`, $\ge 0$.
    """
    if q.ndim != 3 or q.shape[0] < 2:
        raise ValueError(
            "candidate_disagreement: q must have shape (members, n, candidates) with at least 2 "
            f"members (a std over one member is undefined), got {q.shape}."
        )
    relative = q - jnp.mean(q, axis=-1, keepdims=True)
    return jnp.mean(jnp.std(relative, axis=0, ddof=1), axis=-1)


def select_actions(
    policy: DiffusionPolicy,
    critic: Critic,
    states: Float[Array, "n obs"],
    key: PRNGKey,
    num_candidates: int = 50,
    aggregate: str = "lcb",
    lcb_beta: RealScalarLike = 4.0,
    temperature: float = 1.0,
    temperature_scale: TemperatureScale = "absolute",
) -> Float[Array, "n act"]:
    r"""Pick one action per state among `num_candidates` policy samples by softmax-Q sampling.

    **Arguments:**

    - `policy`: the diffusion policy that proposes candidates (the online actor in the reference
        codes, docs/method.md §6.5).
    - `critic`: the ensemble that scores them (the target critic, per docs/method.md §6): any
        `(states, actions) -> q[members, batch]`, e.g. a `QEnsemble`.
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
    - `temperature_scale`: `"absolute"` ($\tau$ as given) or `"disagreement"`: at state $i$ the
        temperature is $\tau\,\sigma_i$, with $\sigma_i$ the members' disagreement about the
        candidates (`candidate_disagreement`; needs a critic of at least 2 members). Where
        $\sigma_i = 0$ the best-scored candidate is taken.

    **Returns:** actions of shape `(n, action)` in the environment's box.
    """
    if temperature_scale not in ("absolute", "disagreement"):
        raise ValueError(
            "select_actions: temperature_scale must be 'absolute' or 'disagreement', got "
            f"{temperature_scale!r}."
        )
    n = states.shape[0]
    k_candidates, k_pick = jax.random.split(key)
    # Row i*C + j is candidate j of state i (torch.repeat_interleave in the reference code).
    repeated = jnp.repeat(states, num_candidates, axis=0)
    candidates = policy.sample(repeated, k_candidates)
    q = critic(repeated, candidates)
    scores = aggregate_q(q, aggregate, lcb_beta).reshape(n, num_candidates)
    if temperature > 0 and temperature_scale == "disagreement":
        sigma = candidate_disagreement(q.reshape(q.shape[0], n, num_candidates))
        tau = temperature * sigma[:, None]
        best = scores == jnp.max(scores, axis=-1, keepdims=True)
        # tau = 0 (the members agree exactly): the best candidate, as temperature 0 would.
        logits = jnp.where(
            tau > 0, scores / jnp.where(tau > 0, tau, 1.0), jnp.where(best, 0.0, -jnp.inf)
        )
        choice = jax.random.categorical(k_pick, logits, axis=-1)
    elif temperature > 0:
        choice = jax.random.categorical(k_pick, scores / temperature, axis=-1)
    else:
        choice = jnp.argmax(scores, axis=-1)
    candidates = candidates.reshape(n, num_candidates, -1)
    return jnp.take_along_axis(candidates, choice[:, None, None], axis=1)[:, 0]
