"""`entropy="likelihood"` (`chain_entropy`, `policy_entropy`) against numbers it did not produce
(`proofs/entropy_likelihood.md`).

- Gaussian data law (2-D, correlated, off-centre) with the exact x0-predictor: the chain is
  linear-Gaussian, so its output's entropy and the bound's expectation are closed forms,
  computed here by propagating means and covariances (not by the code under test). The
  estimator's Monte-Carlo mean matches the bound to 5 standard errors and the chain's true
  entropy to the gap (stated) plus 5 standard errors; its gradient in a spread parameter
  matches the closed forms' central differences the same way.
- Gaussian mixture (1-D) with its exact, nonlinear predictor: the chain's entropy by a nested
  Monte Carlo with the library's `PosteriorSampler` (paths; the density of x_{t_1} as an
  average of the last noisy kernel over independent paths; the last step's slope by autodiff).
- Side by side: changing the data law's spread moves the likelihood estimate by the closed-form
  change in the chain's entropy and leaves the paper's estimator unchanged.
- A `DiffusionPolicy`: `policy_entropy` is `chain_entropy` on the policy's predictor, finite,
  with a finite non-zero gradient; ER-DP-QE accepts `entropy=likelihood` (`apply_overrides`)
  and its actor loss has finite gradients with it.

Tolerances are 5 standard errors measured from the same draws (fixed keys, so deterministic).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy as sp
from sdepolicy.policy import (
    DiffusionPolicy,
    chain_entropy,
    get_entropy_estimator,
    paper_entropy,
    policy_entropy,
)
from sdepolicy.sde import PosteriorSampler

pytestmark = pytest.mark.usefixtures("maths_precision")

T = 5
NUM_PATHS = 40_000
# The bound's gap below the chain's entropy for the 2-D law below, from the closed forms
# (about 1e-3 nats: proofs/entropy_likelihood.md §5); the value test allows this much.
GAP_TOLERANCE = 2e-3


def _sde() -> sp.MeanRevertingSDE:
    return sp.MeanRevertingSDE(sp.cosine_schedule(T))


def _decays(sde) -> tuple[np.ndarray, np.ndarray]:
    th = np.array([float(sde.schedule.cumulative(float(t))) for t in range(T + 1)])
    return th, np.exp(-th)


# --- Gaussian data law: closed forms by propagating moments ----------------------------------


def _covariance(spread: float) -> np.ndarray:
    angle = 0.6
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return spread**2 * rot @ np.diag([1.0, 0.25]) @ rot.T


MEAN = np.array([0.2, -0.1])


def gaussian_closed_forms(spread: float) -> dict[str, float]:
    """The chain's output entropy and the bound's expectation for data N(MEAN, Sigma(spread)),
    mu = 0, lambda = 1, the exact predictor, the integer grid (nats, summed over dimensions)."""
    sde = _sde()
    th, ex = _decays(sde)
    v = 1 - ex**2
    cov, dim, eye = _covariance(spread), 2, np.eye(2)
    mean_t, cov_t = np.zeros(dim), eye.copy()  # x_T ~ N(0, I)
    h_joint = 0.5 * dim * math.log(2 * math.pi * math.e)
    e_log_q = 0.0
    for t in range(T, 0, -1):
        c_t, c_0, beta = (float(c) for c in sde.posterior_coefficients(t - 1.0, float(t)))
        gain = ex[t] * cov @ np.linalg.inv(ex[t] ** 2 * cov + v[t] * eye)  # d x0_hat / d x_t
        lin = c_t * eye + c_0 * gain
        off = c_0 * (MEAN - gain @ (ex[t] * MEAN))
        new_mean, new_cov = lin @ mean_t + off, lin @ cov_t @ lin.T + beta * eye
        if t >= 2:
            h_joint += 0.5 * dim * math.log(2 * math.pi * math.e * beta)
            # E log q(x_t | x_{t-1}) with x_t - d x_{t-1} = (I - d lin) x_t - d off - d sqrt(b) xi.
            d = math.exp(-(th[t] - th[t - 1]))
            qv = 1 - d**2
            res = eye - d * lin
            sq = np.trace(res @ cov_t @ res.T) + np.sum((res @ mean_t - d * off) ** 2)
            sq += d**2 * beta * dim
            e_log_q += -0.5 * dim * math.log(2 * math.pi * qv) - sq / (2 * qv)
        else:
            log_det = math.log(abs(np.linalg.det(lin)))
        mean_t, cov_t = new_mean, new_cov
    chain = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * cov_t))
    return {"chain": chain, "bound": h_joint + e_log_q + log_det}


def gaussian_predictor(sde, spread):
    """The exact E[x0 | x_t] of N(MEAN, Sigma(spread)), differentiable in `spread`."""
    base = jnp.asarray(_covariance(1.0))
    mean = jnp.asarray(MEAN)

    def predict(t, x, args):
        e = jnp.exp(-sde.schedule.cumulative(t))
        cov = spread**2 * base
        gain = e * cov @ jnp.linalg.inv(e**2 * cov + (1 - e**2) * jnp.eye(2))
        return mean + gain @ (x - e * mean)

    return predict


@functools.cache
def _estimator():
    """Per-path estimates and their gradients in the spread, compiled once for every spread."""
    sde = _sde()

    def one(spread, key):
        k_start, k_chain = jax.random.split(key)
        x_T = jax.random.normal(k_start, (2,), jnp.float64)
        return chain_entropy(sde, gaussian_predictor(sde, spread), x_T, k_chain)

    return jax.jit(jax.vmap(jax.value_and_grad(one), in_axes=(None, 0)))


def _draws(spread: float, num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    keys = jax.random.split(jax.random.key(seed), num)
    values, grads = _estimator()(jnp.asarray(spread), keys)
    return np.asarray(values), np.asarray(grads)


def _se(x: np.ndarray) -> float:
    return float(np.std(x) / math.sqrt(x.size))


@pytest.fixture(scope="module")
def gaussian_draws():
    return _draws(0.3, NUM_PATHS)


def test_gaussian_value_matches_closed_form(gaussian_draws):
    values, _ = gaussian_draws
    closed = gaussian_closed_forms(0.3)
    gap = closed["chain"] - closed["bound"]
    assert 0 <= gap < GAP_TOLERANCE, gap  # the bound is tight to the stated tolerance
    mean, se = float(np.mean(values)), _se(values)
    assert abs(mean - closed["bound"]) < 5 * se, (mean, closed["bound"], se)
    assert abs(mean - closed["chain"]) < GAP_TOLERANCE + 5 * se, (mean, closed["chain"], se)
    # Nearly tight, so each path is nearly -log p(a0): spread about sqrt(d/2) nats.
    assert 0.9 < float(np.std(values)) < 1.1


def test_gaussian_gradient_matches_closed_form(gaussian_draws):
    _, grads = gaussian_draws
    h = 1e-5
    fd = {
        k: (gaussian_closed_forms(0.3 + h)[k] - gaussian_closed_forms(0.3 - h)[k]) / (2 * h)
        for k in ("chain", "bound")
    }
    mean, se = float(np.mean(grads)), _se(grads)
    # The data law's entropy has d/ds = 2/s = 6.67 (two dimensions); the chain's is steeper.
    assert fd["chain"] > 2 / 0.3
    assert abs(mean - fd["bound"]) < 5 * se, (mean, fd, se)
    # The gap's own slope: |d gap/ds| = |fd chain - fd bound| (0.03 here) is the tolerance.
    slope_of_gap = abs(fd["chain"] - fd["bound"])
    assert slope_of_gap < 0.05
    assert abs(mean - fd["chain"]) < slope_of_gap + 5 * se, (mean, fd, se)


# --- a Gaussian mixture: nested Monte Carlo through the library's sampler ----------------------

WEIGHTS = (0.3, 0.7)
CENTRES = (-0.5, 0.4)
STDS = (0.15, 0.2)


def mixture_predictor(sde):
    """The exact E[x0 | x_t] of the 1-D mixture: responsibilities times component posteriors."""
    w, c, s = (jnp.asarray(a) for a in (WEIGHTS, CENTRES, STDS))

    def predict(t, x, args):
        e = jnp.exp(-sde.schedule.cumulative(t))
        var = s**2 * e**2 + (1 - e**2)
        log_r = jnp.log(w) - 0.5 * jnp.log(var) - (x[0] - e * c) ** 2 / (2 * var)
        r = jax.nn.softmax(log_r)
        return jnp.sum(r * (c + s**2 * e * (x[0] - e * c) / var), keepdims=True)

    return predict


def test_mixture_agrees_with_monte_carlo():
    sde = _sde()
    predict = mixture_predictor(sde)
    # The estimator.
    keys = jax.random.split(jax.random.key(1), NUM_PATHS // 2)

    def one(key):
        k_start, k_chain = jax.random.split(key)
        return chain_entropy(sde, predict, jax.random.normal(k_start, (1,), jnp.float64), k_chain)

    est = np.asarray(jax.jit(jax.vmap(one))(keys))
    # The reference: the library's sampler's paths. y = x_{t_1}; its density is the average of
    # the noisy kernel t_2 -> t_1 over independent paths' x_{t_2}; then the slope of the last step.
    sampler = PosteriorSampler(sde)
    last = lambda u: predict(jnp.asarray(1.0), u[None], None)[0]  # noqa: E731

    def path(key):
        k_start, k_chain = jax.random.split(key)
        x_T = jax.random.normal(k_start, (1,), jnp.float64)
        return sampler(predict, x_T, k_chain, return_path=True)[1][:, 0]

    @jax.jit
    def reference(keys):
        paths = jax.vmap(path)(keys)  # (paths, T + 1), from t_N down to t_0
        y, x2 = paths[:4000, -2], paths[4000:, -3][:, None]  # x_{t_1}; independent x_{t_2}
        x0_at_2 = lambda x: predict(jnp.asarray(2.0), x, None)  # noqa: E731
        law = jax.vmap(lambda x: sde.posterior(x, x0_at_2(x), s=1.0, t=2.0))(x2)
        mean_1, var_1 = law.mean[:, 0], law.variance[0]
        log_kernel = -0.5 * jnp.log(2 * math.pi * var_1) - (y[:, None] - mean_1[None]) ** 2 / (
            2 * var_1
        )
        log_p_y = jax.scipy.special.logsumexp(log_kernel, axis=1) - math.log(mean_1.shape[0])
        slope = jax.vmap(jax.grad(last))(y)
        return -log_p_y + jnp.log(jnp.abs(slope)), paths[:4000, -1], jax.vmap(last)(y)

    per, output, mapped = reference(jax.random.split(jax.random.key(2), 14_000))
    per = np.asarray(per)
    # The sampler's last step is the map whose slope was taken.
    np.testing.assert_allclose(output, mapped, atol=1e-12)
    mc, est_mean = float(np.mean(per)), float(np.mean(est))
    se = math.hypot(_se(per), _se(est))
    # A lower bound, tight to 0.02 nats for this law.
    assert est_mean < mc + 5 * se, (est_mean, mc, se)
    assert mc - est_mean < 0.02 + 5 * se, (est_mean, mc, se)


# --- side by side: the spread moves the likelihood estimate, not the paper's ---------------------


def test_spread_changes_likelihood_but_not_paper():
    sde = _sde()
    num = 20_000
    keys = jax.random.split(jax.random.key(4), num)

    @jax.jit
    def paper_values(spread):
        # As the actor loss does: x0_hat predicted in one step from a noised data action; a^T
        # forward-drawn (the prior a^T's coefficient ~4e-7 is tests/policy/test_entropy.py's).
        def one(key):
            k_x0, k_t, k_eps, k_h = jax.random.split(key, 4)
            chol = spread * jnp.asarray(np.linalg.cholesky(_covariance(1.0)))
            x0 = jnp.asarray(MEAN) + chol @ jax.random.normal(k_x0, (2,), jnp.float64)
            t = jax.random.randint(k_t, (), 1, T + 1).astype(jnp.float64)
            law = sde.marginal(x0, t=t)
            x_t = law.mean + jnp.sqrt(law.variance) * jax.random.normal(k_eps, (2,), jnp.float64)
            x0_hat = gaussian_predictor(sde, spread)(t, x_t, None)
            return x0_hat, paper_entropy(sde, x0_hat, k_h, terminal="forward")

        return jax.vmap(one)(keys)

    narrow, wide = 0.1, 0.3
    lik = {s: _draws(s, num, seed=5)[0] for s in (narrow, wide)}
    closed = {s: gaussian_closed_forms(s)["chain"] for s in (narrow, wide)}
    change = float(np.mean(lik[wide]) - np.mean(lik[narrow]))
    want = closed[wide] - closed[narrow]  # 4.1 nats for the two dimensions
    se = math.hypot(_se(lik[wide]), _se(lik[narrow]))
    assert want > 3.5
    assert abs(change - want) < GAP_TOLERANCE + 5 * se, (change, want, se)
    # The paper's estimator, same keys, sees different x0_hat and returns the same numbers.
    (x0_n, paper_n), (x0_w, paper_w) = paper_values(narrow), paper_values(wide)
    assert float(jnp.std(x0_w[:, 0])) > 2 * float(jnp.std(x0_n[:, 0]))
    assert float(jnp.max(jnp.abs(paper_w - paper_n))) < 1e-10


# --- on a DiffusionPolicy, and in ER-DP-QE ----------------------------------------------------


def _policy(x0_clip: bool = False) -> DiffusionPolicy:
    return DiffusionPolicy.create(
        3, 2, [-1.0, -1.0], [1.0, 1.0], key=jax.random.key(0), hidden=16, x0_clip=x0_clip
    )


def test_policy_entropy_is_chain_entropy_of_the_policy():
    # With x0_clip, so that the chain's clipping is exercised too.
    x0_clip = True
    policy = _policy(x0_clip)
    states = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64)
    key = jax.random.key(2)
    bounds = (-1.0, 1.0) if x0_clip else None

    @eqx.filter_jit
    def both(policy, states, key):
        got = policy_entropy(policy, states, key)
        init_key, chain_key = jax.random.split(key)
        x_T = jax.random.normal(init_key, (4, 2), jnp.float64)

        def one(state, x, k):
            # Written out from the public API, not the policy's private helper that
            # `policy_entropy` uses; the state as the predictor's `args`.
            def predict(t, z, state):
                return policy.sde.x0_from_noise(z, policy.predict_noise(t, z, state), t=t)

            return chain_entropy(policy.sde, predict, x, k, state, x0_bounds=bounds)

        return got, jax.vmap(one)(states, x_T, jax.random.split(chain_key, 4))

    got, want = both(policy, states, key)
    assert got.shape == (4,) and bool(jnp.all(jnp.isfinite(got)))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_policy_entropy_gradient_is_finite_and_nonzero():
    policy = _policy()
    states = jax.random.normal(jax.random.key(1), (8, 3), jnp.float64)

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(denoiser):
        actor = eqx.tree_at(lambda p: p.denoiser, policy, denoiser)
        return jnp.mean(policy_entropy(actor, states, jax.random.key(3)))

    leaves = jax.tree_util.tree_leaves(eqx.filter(grad(policy.denoiser), eqx.is_array))
    norm = math.sqrt(sum(float(jnp.sum(g**2)) for g in leaves))
    assert math.isfinite(norm) and norm > 1e-6


def test_likelihood_is_not_an_x0_estimator():
    with pytest.raises(ValueError, match="policy_entropy"):
        get_entropy_estimator("likelihood")


def test_erdpqe_actor_loss_with_likelihood_entropy():
    from sdepolicy.app import ConfigError, apply_overrides
    from sdepolicy.rl import Transitions
    from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig

    config = apply_overrides(
        ERDPQEConfig(num_critics=2, hidden=16, batch_size=8), {"entropy": "likelihood"}
    )
    assert config.entropy == "likelihood"
    with pytest.raises(ConfigError, match="likelihood"):
        apply_overrides(config, {"entropy": "likelihod"})
    # The agents train in float32 with the default promotion rules.
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        rng = np.random.default_rng(0)
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        batch = Transitions(
            observations=f32(rng.normal(size=(8, 3))),
            actions=f32(rng.uniform(-1, 1, (8, 2))),
            rewards=f32(rng.normal(size=8)),
            next_observations=f32(rng.normal(size=(8, 3))),
            terminals=f32(np.zeros(8)),
        )
        agent = ERDPQE(config)
        state = agent.init(3, 2, -np.ones(2), np.ones(2), jax.random.key(0))

        @eqx.filter_jit
        def run(state, batch):
            def loss(denoiser):
                actor = eqx.tree_at(lambda p: p.denoiser, state.actor, denoiser)
                return agent.actor_loss(actor, state.critic, batch, jax.random.key(1))

            (value, aux), grads = eqx.filter_value_and_grad(loss, has_aux=True)(
                state.actor.denoiser
            )
            # The logged entropy is the policy's own estimate (on the actor loss's key split).
            own = policy_entropy(
                state.actor, batch.observations, jax.random.split(jax.random.key(1))[1]
            )
            return value, aux, grads, own

        value, aux, grads, own = run(state, batch)
        leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
        assert math.isfinite(float(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
        np.testing.assert_allclose(aux["entropy"], jnp.mean(own), rtol=1e-3)
