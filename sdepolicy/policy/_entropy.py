r"""Per-sample estimators of $-\log\pi(\hat a^0 \mid s) + C$: ER-DP-QE's entropy term (docs/method.md §5),
and an estimate of the policy's own entropy.

Two estimators of $\hat a^0$ alone, selectable by name through `get_entropy_estimator`:

- `"paper"` (`paper_entropy`): Eqs. 12–15 of the paper. $\hat a^1 \sim p(a^1 \mid \hat a^0)$,
  $a^T$ drawn from the prior (default) or from the forward transition of $\hat a^1$, and the
  estimate $-\log p(\hat a^1 \mid a^T, \hat a^0)$ with exact Gaussian transitions.
- `"reference"` (`reference_entropy`): what the official code computes (and what produced
  the published numbers): a noise-free Euler step for $\hat a^1$ and a log-transition with its
  arguments swapped and its time indices shifted by one. The swap cancels exactly between the
  three terms of the Bayes ratio; the shift (and the Euler point) is what makes it depend on
  $\hat a^0$.

Both act on ONE sample (`jax.vmap` for batches) and sum over the action dimensions. Their
expectations over the noise are quadratics in $\hat a^0$,
$\mathbb E[H] = d\,c_0 + c_2 \lVert \hat a^0 - \mu \rVert^2$, whose coefficients
`paper_entropy_coefficients` and `reference_entropy_coefficients` return. Derivations:
`proofs/entropy.md`. For the $T = 5$ cosine grid: paper (prior) $c_0 \approx 0.8590$,
$c_2 \approx 2.4 \times 10^{-13}$; paper (forward) $c_2 = 0$ exactly; reference
$c_0 \approx 0.779$, $c_2 \approx 0.0628$.

Neither measures the policy's entropy (`proofs/entropy.md`). The third, `"likelihood"`
(`policy_entropy`, built on `chain_entropy`), needs the denoiser and the state: it runs
the policy's posterior chain and returns a one-path estimate of a lower bound on
$H(\pi(\cdot \mid s))$, tight to about $10^{-3}$ nats per dimension for a Gaussian action law of
standard deviation 0.3 at $T = 5$ (`proofs/entropy_likelihood.md`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._typing import PRNGKey
from ..sde import MeanRevertingSDE, PosteriorSampler, X0Predictor
from ._diffusion_policy import DiffusionPolicy

#: Where the paper's estimator draws $a^T$ from.
TERMINALS = ("prior", "forward")

# The estimators look at diffusion times 0, 1 and T: the first step and the whole chain.
_FIRST = 1.0


def _check_terminal(terminal: str) -> None:
    if terminal not in TERMINALS:
        raise ValueError(f"Unknown terminal {terminal!r}; valid values are {', '.join(TERMINALS)}.")


def _check_horizon(sde: MeanRevertingSDE, minimum: float, name: str, strict: bool = False) -> None:
    ok = sde.horizon > minimum if strict else sde.horizon >= minimum
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(
            f"{name}: needs a horizon T {relation} {minimum:g}, got T = {sde.horizon:g}."
        )


def paper_entropy(
    sde: MeanRevertingSDE,
    x0_hat: Float[Array, " action"],
    key: PRNGKey,
    terminal: str = "prior",
) -> Float[Array, ""]:
    r"""The paper's estimate of $-\log\pi(\hat a^0 \mid s) + C$ for one sample (Eqs. 12–15).

    $\hat a^1 \sim p(a^1 \mid \hat a^0)$ (the exact forward transition, reparameterised so
    gradients reach $\hat a^0$), $a^T \sim \mathcal N(\mu, \lambda^2 I)$ (`terminal="prior"`) or
    $a^T \sim p(a^T \mid \hat a^1)$ (`terminal="forward"`), and

    $$H = -\log p(\hat a^1 \mid a^T, \hat a^0), \qquad
    p(a^1 \mid a^T, a^0) = \frac{p(a^T \mid a^1)\,p(a^1 \mid a^0)}{p(a^T \mid a^0)}
    = \mathcal N(\tilde\mu(a^T, a^0), \tilde\beta I),$$

    the posterior of the SDE with $(s, t) = (1, T)$. With `terminal="forward"`, $H$ does not
    depend on $\hat a^0$ at all for fixed noise (its gradient is zero); with `"prior"` it does
    through a coefficient $\propto e^{-2\Theta(1, T)}$ (`proofs/entropy.md`).

    **Arguments:**

    - `sde`: the policy's `MeanRevertingSDE` (horizon $T > 1$).
    - `x0_hat`: the predicted clean action $\hat a^0$ (unit box).
    - `key`: PRNG key for $\hat a^1$ and $a^T$.
    - `terminal`: `"prior"` (default) or `"forward"`.

    **Returns:** the scalar estimate, summed over action dimensions.
    """
    _check_terminal(terminal)
    _check_horizon(sde, _FIRST, "paper_entropy", strict=True)
    last = sde.horizon
    first_key, last_key = jax.random.split(key)
    a1 = sde.transition(x0_hat, s=0.0, t=_FIRST).sample(first_key)
    if terminal == "prior":
        aT = sde.prior(x0_hat.shape, x0_hat.dtype).sample(last_key)
    else:
        aT = sde.transition(a1, s=_FIRST, t=last).sample(last_key)
    return -sde.posterior(aT, x0_hat, s=_FIRST, t=last).log_prob(a1)


def paper_entropy_coefficients(
    sde: MeanRevertingSDE, terminal: str = "prior"
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""$(c_0, c_2)$ with $\mathbb E[\text{paper\_entropy}] = d\,c_0 + c_2\lVert\hat a^0 -
    \mu\rVert^2$, the expectation over $\hat a^1$ and $a^T$.

    With $(c_t, c_x, \tilde\beta)$ the posterior coefficients at $(1, T)$, $E_1 = e^{-\Theta_1}$
    and $\delta = E_1 - c_x = E_1 (1 - e^{-2\Theta_1})\,e^{-2\Theta(1,T)} / (1 - e^{-2\Theta_T})$:

    - `"prior"`: $c_0 = \tfrac12\log(2\pi\tilde\beta) + (v_1 + c_t^2\lambda^2)/(2\tilde\beta)$,
      $c_2 = \delta^2 / (2\tilde\beta)$;
    - `"forward"`: $c_0 = \tfrac12\log(2\pi e\tilde\beta)$, $c_2 = 0$.

    **Returns:** `(c0, c2)`.
    """
    _check_terminal(terminal)
    _check_horizon(sde, _FIRST, "paper_entropy_coefficients", strict=True)
    last = sde.horizon
    coef_t, _, var = sde.posterior_coefficients(_FIRST, last)
    if terminal == "forward":
        return 0.5 * jnp.log(2 * math.pi * math.e * var), jnp.zeros_like(var)
    delta = paper_entropy_residual_coefficient(sde)
    lam2 = sde.stationary_std**2
    const = 0.5 * jnp.log(2 * math.pi * var) + (
        sde.marginal_variance(_FIRST) + coef_t**2 * lam2
    ) / (2 * var)
    return const, delta**2 / (2 * var)


def paper_entropy_residual_coefficient(sde: MeanRevertingSDE) -> Float[Array, ""]:
    r"""$\delta$: with $a^T$ from the prior, $\hat a^1 - \tilde\mu = \delta(\hat a^0 - \mu) +
    (\text{noise})$, so the estimator is $\mathrm{const} + \lVert\delta(\hat a^0 - \mu) +
    w\rVert^2 / (2\tilde\beta)$.

    $$\delta = e^{-\Theta_1}\,(1 - e^{-2\Theta_1})\,e^{-2\Theta(1,T)} / (1 - e^{-2\Theta_T}),$$

    written without the cancellation of $e^{-\Theta_1} - c_x$. About $3.98\times10^{-7}$ for the
    $T = 5$ cosine grid.
    """
    _check_horizon(sde, _FIRST, "paper_entropy_residual_coefficient", strict=True)
    th1 = sde.schedule.cumulative(_FIRST)
    th1T = sde.schedule.integral(_FIRST, sde.horizon)
    thT = sde.schedule.cumulative(sde.horizon)
    return jnp.exp(-th1 - 2 * th1T) * -jnp.expm1(-2 * th1) / -jnp.expm1(-2 * thT)


# --- the reference code's estimator ----------------------------------------------------------


def _reference_cumulative(sde: MeanRevertingSDE, index: int) -> Float[Array, ""]:
    # The reference stores Theta_1..Theta_T in an array indexed from 0: index i means Theta_{i+1}.
    return sde.schedule.cumulative(float(index + 1))


def _swapped_log_transition(
    sde: MeanRevertingSDE, x_early: Array, x_late: Array, theta: Array
) -> Array:
    # The reference's log p(x_late | x_early) with the quadratic's arguments swapped:
    # (x_early - x_late e^{-Theta})^2 where the transition has (x_late - x_early e^{-Theta})^2.
    dt = x_early.dtype
    mu = sde.mean.astype(dt)
    var = (sde.stationary_std**2 * -jnp.expm1(-2 * theta)).astype(dt)
    diff = (x_early - mu) - (x_late - mu) * jnp.exp(-theta).astype(dt)
    return -0.5 * (jnp.log(2 * math.pi * var) + diff**2 / var)


def _reference_thetas(sde: MeanRevertingSDE) -> tuple[Array, Array, Array, Array]:
    # The reference calls log_reverse_transition(a0, a1, aT, t1=1, t2=T-1), i.e. the three
    # swapped log-transitions (a1 -> aT over [1, T-1]), (a0 -> a1 over [0, 1]) and
    # (a0 -> aT over [0, T-1]) in its shifted indices. In true times these span
    # Theta(2, T), Theta(1, 2) and Theta(1, T); the Euler step uses theta_0 dt = Theta(0, 1).
    T = int(sde.horizon)
    cum = lambda i: _reference_cumulative(sde, i)
    euler = sde.schedule.integral(0.0, _FIRST)
    return euler, cum(T - 1) - cum(1), cum(1) - cum(0), cum(T - 1) - cum(0)


def _check_reference(sde: MeanRevertingSDE, name: str) -> None:
    horizon = sde.horizon
    if float(horizon) != int(horizon):
        raise ValueError(f"{name}: the reference grid needs an integer horizon, got {horizon}.")
    # Theta(2, T) must be positive: for T = 2 the reference formula divides by zero.
    _check_horizon(sde, 3.0, name)


def reference_entropy(
    sde: MeanRevertingSDE, x0_hat: Float[Array, " action"], key: PRNGKey
) -> Float[Array, ""]:
    r"""The reference code's entropy estimate for one sample, reproduced exactly.

    $\hat a^1 = \mu + (\hat a^0 - \mu)(1 - \Theta(0, 1))$ (one noise-free Euler step of the
    forward SDE; $\Theta(0, 1) = \theta_0\,dt$), $a^T \sim \mathcal N(\mu, \lambda^2 I)$ fresh, and
    with the swapped log-transition
    $\ell(x_e, x_l; \Theta) = -\tfrac12\big[\log(2\pi\lambda^2(1 - e^{-2\Theta})) +
    ((x_e - \mu) - (x_l - \mu)e^{-\Theta})^2 / (\lambda^2(1 - e^{-2\Theta}))\big]$:

    $$H = -\big[\ell(\hat a^1, a^T; \Theta(2, T)) + \ell(\hat a^0, \hat a^1; \Theta(1, 2)) -
    \ell(\hat a^0, a^T; \Theta(1, T))\big],$$

    summed over dimensions. The time spans are the reference's indices $(1, T-1)$, $(0, 1)$ and
    $(0, T-1)$ read through its array of $\Theta_1..\Theta_T$ (index $i$ means $\Theta_{i+1}$).
    The swapped arguments cancel between the three terms, so $H$ is exactly
    $-\log p(x_2 = \hat a^1 \mid x_T = a^T, x_1 = \hat a^0)$ for the true transitions: the
    paper's estimator with every time shifted by one, evaluated at an Euler point instead of a
    sample (`proofs/entropy.md`). For the $T = 5$ cosine grid
    $\mathbb E[H] \approx 0.779\,d + 0.0628\lVert\hat a^0\rVert^2$.

    **Arguments:**

    - `sde`: the policy's `MeanRevertingSDE` (integer horizon $T \ge 3$).
    - `x0_hat`: the predicted clean action $\hat a^0$ (unit box).
    - `key`: PRNG key for $a^T$.

    **Returns:** the scalar estimate, summed over action dimensions.
    """
    _check_reference(sde, "reference_entropy")
    euler, th_a, th_b, th_c = _reference_thetas(sde)
    dt = x0_hat.dtype
    mu = sde.mean.astype(dt)
    a1 = mu + (x0_hat - mu) * (1 - euler).astype(dt)
    aT = sde.prior(x0_hat.shape, dt).sample(key)
    log_p = (
        _swapped_log_transition(sde, a1, aT, th_a)
        + _swapped_log_transition(sde, x0_hat, a1, th_b)
        - _swapped_log_transition(sde, x0_hat, aT, th_c)
    )
    return -jnp.sum(log_p)


def reference_entropy_coefficients(
    sde: MeanRevertingSDE,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""$(c_0, c_2)$ with $\mathbb E[\text{reference\_entropy}] = d\,c_0 + c_2\lVert\hat a^0 -
    \mu\rVert^2$ (expectation over $a^T$).

    With $r = 1 - \Theta(0,1)$, $V(\Theta) = \lambda^2(1 - e^{-2\Theta})$ and
    $(A, B, C) = (\Theta(2,T), \Theta(1,2), \Theta(1,T))$:

    $$c_2 = \tfrac12\Big[\frac{r^2}{V(A)} + \frac{(1 - r e^{-B})^2}{V(B)} - \frac{1}{V(C)}\Big],$$
    $$c_0 = \tfrac12\log\frac{2\pi V(A)V(B)}{V(C)} + \frac{\lambda^2 e^{-2A}}{2V(A)} -
    \frac{\lambda^2 e^{-2C}}{2V(C)}.$$

    Equivalently (the shifted-posterior reading) $c_2 = (r - c_x')^2/(2\tilde\beta')$ and
    $c_0 = \tfrac12\log(2\pi\tilde\beta') + c_t'^2\lambda^2/(2\tilde\beta')$ with
    $(c_t', c_x', \tilde\beta')$ the posterior coefficients of $x_2$ given $(x_T, x_1)$.

    **Returns:** `(c0, c2)`.
    """
    _check_reference(sde, "reference_entropy_coefficients")
    euler, th_a, th_b, th_c = _reference_thetas(sde)
    lam2 = sde.stationary_std**2
    var = lambda th: lam2 * -jnp.expm1(-2 * th)
    r = 1 - euler
    c2 = 0.5 * (r**2 / var(th_a) + (1 - r * jnp.exp(-th_b)) ** 2 / var(th_b) - 1 / var(th_c))
    c0 = (
        0.5 * jnp.log(2 * math.pi * var(th_a) * var(th_b) / var(th_c))
        + lam2 * jnp.exp(-2 * th_a) / (2 * var(th_a))
        - lam2 * jnp.exp(-2 * th_c) / (2 * var(th_c))
    )
    return c0, c2


# --- registry --------------------------------------------------------------------------------

#: An entropy estimator: ``f(sde, x0_hat, key) -> scalar`` for one sample.
EntropyEstimator = Callable[[MeanRevertingSDE, Float[Array, " action"], PRNGKey], Float[Array, ""]]

#: The estimators by name.
ENTROPY_ESTIMATORS: dict[str, EntropyEstimator] = {
    "paper": paper_entropy,
    "reference": reference_entropy,
}


#: Entropy estimators that need the policy (denoiser and state), not only $\hat a^0$:
#: `ERDPQEConfig.entropy` accepts these too, and the agent calls `policy_entropy`.
POLICY_ENTROPY_ESTIMATORS = ("likelihood",)
#: Every name `DiffusionPolicy.entropy` accepts: the estimators of $\hat a^0$ and the policy's.
EntropyName = Literal["reference", "paper", "likelihood"]


def get_entropy_estimator(name: str) -> EntropyEstimator:
    """The estimator registered under `name` in `ENTROPY_ESTIMATORS`.

    **Raises:** `ValueError` listing the valid names when `name` is unknown, and one naming
    `policy_entropy` for a name in `POLICY_ENTROPY_ESTIMATORS`.
    """
    if name in POLICY_ENTROPY_ESTIMATORS:
        raise ValueError(
            f"Entropy estimator {name!r} needs the policy, not only x0_hat: call "
            "policy_entropy(policy, states, key)."
        )
    try:
        return ENTROPY_ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown entropy estimator {name!r}; valid names are "
            f"{', '.join(sorted(ENTROPY_ESTIMATORS))}."
        ) from None


# --- the policy's own entropy: a lower bound through the posterior chain ---------------------


def chain_entropy(
    sde: MeanRevertingSDE,
    predict_x0: X0Predictor,
    x_T: Float[Array, " action"],
    key: PRNGKey,
    args: PyTree = None,
    *,
    times: Float[ArrayLike, " n"] | None = None,
    x0_bounds: tuple[float, float] | None = None,
) -> Float[Array, ""]:
    r"""A one-path estimate of a lower bound on the entropy of the posterior sampler's output.

    The chain is that of `PosteriorSampler` on the grid $0 = t_0 < \dots < t_N = T$,
    before its output clipping: $x_{t_N} = $ `x_T` $\sim \mathcal N(\mu, \lambda^2 I)$,
    $x_{t_{i-1}} = \tilde\mu_i(x_{t_i}) + \sqrt{\tilde\beta_i}\,\xi_i$ for $i = N..2$, and the
    noise-free last step $a^0 = g(y) = \tilde\mu_1(y, \hat x_0(t_1, y, \text{args}))$ with
    $y = x_{t_1}$.
    With $q$ the forward transitions of the SDE, the returned value is

    $$\hat H = -\log p(x_{t_N}) + \sum_{i=2}^N \Big[-\log p(x_{t_{i-1}} \mid x_{t_i}) +
    \log q(x_{t_i} \mid x_{t_{i-1}})\Big] + \log\bigl|\det \partial_y g(y)\bigr|,$$

    whose expectation is a lower bound on $H(a^0)$ (exact when $q(x_{t_2..t_N} \mid y)$ is the
    chain's own posterior of the path, and $g$ injective); the gap is
    $\mathbb E\,\mathrm{KL}(p(\text{path} \mid y)\,\|\,q(\text{path} \mid y))$
    (`proofs/entropy_likelihood.md`: about $10^{-3}$ nats per dimension for a Gaussian
    law of standard deviation 0.3 on the $T = 5$ cosine grid). The terms
    $-\log p(x_{t_{i-1}} \mid x_{t_i}) = \tfrac12\sum\log(2\pi\tilde\beta_i) + \tfrac12
    \lVert\xi_i\rVert^2$ are read off the noise: they carry no gradient (reparameterised), and
    keeping their sampled value rather than their mean makes the estimate exact per sample when
    the bound is tight. The path is reparameterised, so the estimate is differentiable in the
    predictor's parameters; the Jacobian of the last step is taken by forward mode (one
    Jacobian-vector product per action dimension).

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `predict_x0`: $\hat x_0$ as `f(t, x, args)` for ONE sample, unclipped (the sampler's
        calling convention).
    - `x_T`: the chain's start, a draw from `sde.prior` (its log-density enters the
        estimate).
    - `key`: PRNG key for the chain's noise.
    - `args`: passed to `predict_x0` (e.g. the RL state).
    - `times`: the grid (default: the integers $0..T$ of a piecewise-constant schedule).
    - `x0_bounds`: `(low, high)` to clip $\hat x_0$ in the steps $i = N..2$, as the sampler's
        `x0_bounds` (the bound holds for any kernel means). The last step stays unclipped: a
        clipped map has a singular Jacobian, and when the sampler's output is clipped to the
        same box, clipping $\hat x_0$ there changes nothing in what it returns.

    **Returns:** the scalar estimate, in nats, summed over the action dimensions.
    """
    dt = x_T.dtype
    grid = PosteriorSampler(sde, times).times.astype(dt)
    num_steps = grid.shape[0] - 1
    total = -sde.prior(x_T.shape, dt).log_prob(x_T)
    y = x_T
    if num_steps >= 2:
        # Steps t_N -> t_{N-1}, ..., t_2 -> t_1: every one has a positive variance (s > 0).
        pairs = (grid[1:-1][::-1], grid[2:][::-1])
        keys = jax.random.split(key, num_steps - 1)

        def body(carry, inputs):
            x, acc = carry
            s, t, k = inputs
            x0_hat = predict_x0(t, x, args)
            if x0_bounds is not None:
                x0_hat = jnp.clip(x0_hat, *x0_bounds)
            law = sde.posterior(x, x0_hat, s=s, t=t)
            xi = jax.random.normal(k, x.shape, dt)
            x_new = law.mean + jnp.sqrt(law.variance) * xi
            var = jnp.broadcast_to(law.variance, x.shape)
            neg_log_p = jnp.sum(0.5 * jnp.log(2 * math.pi * var) + 0.5 * xi**2)
            log_q = sde.transition(x_new, s=s, t=t).log_prob(x)
            return (x_new, acc + neg_log_p + log_q), None

        (y, total), _ = jax.lax.scan(body, (y, total), (*pairs, keys))
    t_0, t_1 = grid[0], grid[1]

    # The last step has zero variance (s = 0): it is a map, whose Jacobian enters instead.
    def last_step(z):
        return sde.posterior(z, predict_x0(t_1, z, args), s=t_0, t=t_1).mean

    jac = jax.jacfwd(last_step)(y).reshape(y.size, y.size)
    _, log_det = jnp.linalg.slogdet(jac)
    return total + log_det


def policy_entropy(
    policy: DiffusionPolicy, states: Float[Array, "batch state"], key: PRNGKey
) -> Float[Array, " batch"]:
    r"""`entropy="likelihood"`: an estimate of $H(\pi(\cdot \mid s))$ per state, by
    `chain_entropy` on the policy's own posterior sampler.

    $\pi(\cdot \mid s)$ is the law of the policy's unit-box sample *before* its output
    clipping (the clipped law has atoms on the box's faces and no density); $\hat x_0$ is
    clipped in the chain's steps when `policy.x0_clip`, as in `DiffusionPolicy.sample`,
    except in the last, whose clipping the output clip repeats. In the environment's box the
    entropy is this plus the constant $\sum_j \log(\text{half-width}_j)$. One path per state:
    $a^T$ from the first half of `split(key)`, the chain's noise from the second (as
    `DiffusionPolicy.sample_unit`). Differentiable in the denoiser's parameters.

    **Arguments:**

    - `policy`: the `DiffusionPolicy`.
    - `states`: a batch of states.
    - `key`: PRNG key.

    **Returns:** one estimate (nats, summed over action dimensions) per state; their mean is
    an estimate of a lower bound on $\mathbb E_s H(\pi(\cdot \mid s))$
    (`proofs/entropy_likelihood.md`).
    """
    init_key, chain_key = jax.random.split(key)
    shape = (states.shape[0], policy.action_dim)
    x_T = policy.sde.prior(shape, states.dtype).sample(init_key)
    keys = jax.random.split(chain_key, states.shape[0])
    sampler = policy.sampler()
    sde = policy.sde

    def one(state, x, k):
        # The unclipped x0-hat, `f(t, z, state)`: the state is the predictor's `args`.
        return chain_entropy(
            sde,
            policy._predict_x0_unclipped,
            x,
            k,
            state,
            times=sampler.times,
            x0_bounds=sampler.x0_bounds,
        )

    return jax.vmap(one)(states, x_T, keys)
