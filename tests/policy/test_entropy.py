"""The entropy estimators against their closed forms (`proofs/entropy.md`).

- Monte Carlo: the mean of many draws (fixed keys) against `*_entropy_coefficients`, with a
  tolerance of 5 standard errors measured from the same draws (false-failure rate < 1e-6 for a
  fresh key; the keys are fixed, so the outcome is deterministic).
- Autodiff: the gradient of the paper's estimator with a forward-drawn a^T is 0; with a prior
  a^T its Hessian is delta^2/beta exactly.
- Independent re-computations: the Bayes ratio of three `sde.transition` densities, the literal
  reference formula in NumPy, the shifted posterior, the docs/method.md §2 table.

Schedules: the T = 5 cosine grid of the reference code, and a short "weak" grid (small Theta,
mu != 0, lambda != 1) on which e^{-Theta(1,T)} is not negligible, so every term is exercised.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import sdepolicy as sp
from sdepolicy.policy import (
    ENTROPY_ESTIMATORS,
    TERMINALS,
    get_entropy_estimator,
    paper_entropy,
    paper_entropy_coefficients,
    paper_entropy_residual_coefficient,
    reference_entropy,
    reference_entropy_coefficients,
)
from sdepolicy.sde import PiecewiseConstantSchedule

pytestmark = pytest.mark.usefixtures("maths_precision")

NUM_DRAWS = 100_000
NUM_CHECKS = 4
# H is exactly quadratic in x0, so a large step is harmless; it lifts the Hessian-times-step
# (~1e-12 per unit step on the cosine grid) well above the ~1e-16 rounding of each gradient,
# which is a difference of two O(1) terms.
HESSIAN_STEP = (500.0, -1000.0, 2000.0)
X0 = (0.9, -1.6, 0.25)


@functools.cache
def _sde(name: str) -> sp.MeanRevertingSDE:
    if name == "cosine5":
        return sp.MeanRevertingSDE(sp.cosine_schedule(5))
    return sp.MeanRevertingSDE(
        PiecewiseConstantSchedule(jnp.array([0.3, 0.2, 0.25])),
        mean=jnp.array(0.2),
        stationary_std=1.5,
    )


SDES = ["cosine5", "weak"]


def _x0(name: str):
    # On the weak grid, large actions make the paper's (prior) a0-dependence visible above the
    # simulation noise.
    return jnp.array(X0) * (3.0 if name == "weak" else 1.0)


def _shifted(sde: sp.MeanRevertingSDE) -> sp.MeanRevertingSDE:
    """The same SDE started one step later: its time s is the original s + 1."""
    return sp.MeanRevertingSDE(
        PiecewiseConstantSchedule(sde.schedule.increments[1:]), sde.mean, sde.stationary_std
    )


@functools.cache
def _results(name: str) -> dict:
    """Everything the tests check for one schedule, computed in ONE compiled call (compiling is
    what costs time here): Monte-Carlo draws, independent re-computations for a few keys, and
    derivatives."""
    sde, x0 = _sde(name), _x0(name)
    T = sde.horizon
    shifted = _shifted(sde)

    def estimators(x, key):
        return {
            "prior": paper_entropy(sde, x, key, "prior"),
            "forward": paper_entropy(sde, x, key, "forward"),
            "reference": reference_entropy(sde, x, key),
        }

    def checks(key):
        k1, kT = jax.random.split(key)
        a1 = sde.transition(x0, s=0.0, t=1.0).sample(k1)
        out = {}
        for terminal in TERMINALS:
            if terminal == "prior":
                aT = sde.prior(x0.shape, x0.dtype).sample(kT)
            else:
                aT = sde.transition(a1, s=1.0, t=T).sample(kT)
            out[f"bayes_{terminal}"] = -(
                sde.transition(a1, s=1.0, t=T).log_prob(aT)
                + sde.transition(x0, s=0.0, t=1.0).log_prob(a1)
                - sde.transition(x0, s=0.0, t=T).log_prob(aT)
            )
        # The reference's a^T is the prior draw with the whole key; a1 is its Euler point.
        aT = sde.prior(x0.shape, x0.dtype).sample(key)
        euler = sde.mean + (x0 - sde.mean) * (1 - sde.schedule.integral(0.0, 1.0))
        out["shifted_posterior"] = -shifted.posterior(aT, x0, s=1.0, t=T - 1).log_prob(euler)
        out["grad_forward"] = jax.grad(lambda x: paper_entropy(sde, x, key, "forward"))(x0)
        out["grad_reference"] = jax.grad(lambda x: reference_entropy(sde, x, key))(x0)
        # H is quadratic in x0 for fixed noise, so a difference of gradients is its Hessian
        # applied to the step (cheaper to compile than jax.hessian).
        grad_prior = jax.grad(lambda x: paper_entropy(sde, x, key, "prior"))
        out["hessian_step"] = grad_prior(x0 + jnp.array(HESSIAN_STEP)) - grad_prior(x0)
        out.update(estimators(x0, key))
        return out

    @jax.jit
    def run(mc_keys, check_keys):
        draws = jax.vmap(lambda k: estimators(x0, k))(mc_keys)
        return draws, jax.vmap(checks)(check_keys)

    draws, checked = run(
        jax.random.split(jax.random.key(1), NUM_DRAWS),
        jax.random.split(jax.random.key(2), NUM_CHECKS),
    )
    mc = {k: (float(v.mean()), float(v.std() / math.sqrt(NUM_DRAWS))) for k, v in draws.items()}
    return {"mc": mc, **checked}


def _quadratic(coefs, sde, x0):
    c0, c2 = coefs
    return float(x0.shape[0] * c0 + c2 * jnp.sum((x0 - sde.mean) ** 2))


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("terminal", TERMINALS)
def test_paper_monte_carlo_matches_closed_form(name, terminal):
    sde, x0 = _sde(name), _x0(name)
    mean, se = _results(name)["mc"][terminal]
    want = _quadratic(paper_entropy_coefficients(sde, terminal), sde, x0)
    assert abs(mean - want) < 5 * se, (mean, want, se)
    if name == "weak" and terminal == "prior":
        c0, c2 = paper_entropy_coefficients(sde, terminal)
        assert float(c2 * jnp.sum((x0 - sde.mean) ** 2)) > 20 * se


@pytest.mark.parametrize("name", SDES)
def test_reference_monte_carlo_matches_closed_form(name):
    sde, x0 = _sde(name), _x0(name)
    mean, se = _results(name)["mc"]["reference"]
    want = _quadratic(reference_entropy_coefficients(sde), sde, x0)
    assert abs(mean - want) < 5 * se + 1e-12, (mean, want, se)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("terminal", TERMINALS)
def test_paper_is_the_bayes_ratio_of_three_transitions(name, terminal):
    r = _results(name)
    np.testing.assert_allclose(r[terminal], r[f"bayes_{terminal}"], rtol=1e-11)


def _literal_reference(increments, x0, n):
    # The reference code's formula in NumPy: thetas_bar[i] = Theta_{i+1}; log_forward_transition
    # with the swapped quadratic; log_reverse_transition(a0, a1, aT, 1, T-1); mu = 0, lambda = 1.
    increments = np.asarray(increments)
    T = len(increments)
    thetas_bar = np.cumsum(increments)

    def lft(x1, x2, t1, t2):
        tb = thetas_bar[t2] - thetas_bar[t1]
        return -0.5 * (
            np.log(2 * np.pi * (1 - np.exp(-2 * tb)))
            + (x1 - x2 * np.exp(-tb)) ** 2 / (1 - np.exp(-2 * tb))
        )

    a1 = x0 + (-increments[0] * x0)  # a0 + drift(a0, 0) * dt
    t1, t2 = 1, T - 1
    log_p = lft(a1, n, t1, t2) + lft(x0, a1, 0, t1) - lft(x0, n, 0, t2)
    return -log_p.sum()


@pytest.mark.parametrize("T", [3, 5, 10])
def test_reference_reproduces_the_literal_reference_formula(T):
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(T))
    x0 = jnp.array(X0)
    keys = jax.random.split(jax.random.key(3), NUM_CHECKS)
    run = jax.jit(
        jax.vmap(
            lambda k: (reference_entropy(sde, x0, k), jax.random.normal(k, x0.shape, x0.dtype))
        )
    )
    got, noise = run(keys)
    for value, n in zip(got, noise, strict=True):
        want = _literal_reference(sde.schedule.increments, np.asarray(x0), np.asarray(n))
        np.testing.assert_allclose(value, want, rtol=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_reference_is_the_shifted_posterior(name):
    # The swaps telescope: H = -log p(x_2 = a1_euler | x_T = aT, x_1 = a0) with true transitions.
    r = _results(name)
    np.testing.assert_allclose(r["reference"], r["shifted_posterior"], rtol=1e-11)


@pytest.mark.parametrize("name", SDES)
def test_paper_forward_gradient_is_zero(name):
    r, x0 = _results(name), _x0(name)
    np.testing.assert_allclose(r["grad_forward"], 0.0, atol=1e-12)
    # The same machinery does see a dependence where there is one.
    assert float(jnp.min(jnp.max(jnp.abs(r["grad_reference"]), axis=1))) > 1e-2
    if name == "cosine5":  # noise enters only through c_t' ~ 2e-3 there
        _, c2 = reference_entropy_coefficients(_sde(name))
        want = jnp.broadcast_to(2 * c2 * x0, r["grad_reference"].shape)
        np.testing.assert_allclose(r["grad_reference"], want, atol=1e-2)


@pytest.mark.parametrize("name", SDES)
def test_paper_prior_hessian_is_delta_squared_over_beta(name):
    sde = _sde(name)
    _, _, beta = sde.posterior_coefficients(1.0, sde.horizon)
    delta = paper_entropy_residual_coefficient(sde)
    got = _results(name)["hessian_step"]
    want = jnp.broadcast_to(delta**2 / beta * jnp.array(HESSIAN_STEP), got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)


def test_t5_numbers_against_the_spec_table():
    sde = _sde("cosine5")
    # docs/method.md §2, T = 5: Theta_1 = 0.19749, Theta_2 = 0.90145, e^{-Theta_1} = 0.82079, v_1 = 0.32630,
    # and e^{-Theta_T} = 1e-3 by construction.
    th1, th2, thT = 0.19749, 0.90145, -math.log(1e-3)
    delta_table = 0.82079 * 0.32630 * (1e-3 / 0.82079) ** 2 / (1 - 1e-6)
    delta = paper_entropy_residual_coefficient(sde)
    np.testing.assert_allclose(delta, delta_table, rtol=1e-4)
    assert 3.9e-7 < float(delta) < 4.1e-7  # docs/method.md §5: "about 4e-7"
    c0, c2 = paper_entropy_coefficients(sde, "prior")
    assert abs(float(c0) - 0.860) < 2e-3  # docs/method.md §5: "about 0.860 per dimension"
    np.testing.assert_allclose(c0, 0.5 * math.log(2 * math.pi * 0.32630) + 0.5, rtol=1e-4)
    assert float(c2) < 1e-12
    # The reference: shifted posterior (1, 2, T) at the Euler point rho = 1 - Theta(0, 1).
    a, b, rho = math.exp(-(th2 - th1)), math.exp(-(thT - th2)), 1 - th1
    one = 1 - a * a * b * b
    c_t, c_x, beta = (1 - a * a) * b / one, (1 - b * b) * a / one, (1 - a * a) * (1 - b * b) / one
    r0, r2 = reference_entropy_coefficients(sde)
    np.testing.assert_allclose(r2, (rho - c_x) ** 2 / (2 * beta), rtol=2e-4)
    np.testing.assert_allclose(
        r0, 0.5 * math.log(2 * math.pi * beta) + c_t**2 / (2 * beta), rtol=2e-4
    )
    assert abs(float(r0) - 0.779) < 5e-4 and abs(float(r2) - 0.0628) < 5e-5


def _load_proof():
    path = Path(__file__).resolve().parents[2] / "proofs" / "entropy_sympy.py"
    spec = importlib.util.spec_from_file_location("_proofs_entropy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_coefficients_match_the_proof():
    proof = _load_proof()
    sde = _sde("weak")  # mu = 0.2, lambda = 1.5: the general case
    lam = sympy.Float(float(sde.stationary_std), 30)
    cum = lambda t: float(sde.schedule.cumulative(t))
    dec = lambda s, t: sympy.exp(-sympy.Float(cum(t) - cum(s), 30))
    num = lambda e: float(sympy.N(e, 20))
    T = sde.horizon
    for terminal in ("prior", "forward"):
        want = proof.paper_coefficients(dec(0, 1), dec(1, T), lam, terminal)
        np.testing.assert_allclose(
            paper_entropy_coefficients(sde, terminal),
            [num(w) for w in want],
            rtol=1e-12,
            atol=1e-300,
        )
    want = proof.reference_coefficients(dec(1, 2), dec(2, T), 1 - sympy.Float(cum(1), 30), lam)
    np.testing.assert_allclose(
        reference_entropy_coefficients(sde), [num(w) for w in want], rtol=1e-12
    )
    np.testing.assert_allclose(
        paper_entropy_residual_coefficient(sde),
        num(proof.residual_coefficient(dec(0, 1), dec(1, T))),
        rtol=1e-12,
    )


def test_estimators_vmap_and_run_in_float32():
    # Training runs in float32: the estimators must stay accurate there.
    c0, c2 = reference_entropy_coefficients(_sde("cosine5"))
    x0 = np.array([X0, X0[::-1]])
    want_ref = x0.shape[1] * float(c0) + float(c2) * np.sum(x0**2, axis=1)
    with jax.enable_x64(False):
        sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
        x32 = jnp.asarray(x0, dtype=jnp.float32)
        keys = jax.random.split(jax.random.key(0), 2)

        @jax.jit
        def run(x, keys):
            out = {
                n: jax.vmap(lambda xi, k, f=f: f(sde, xi, k))(x, keys)
                for n, f in ENTROPY_ESTIMATORS.items()
            }
            grad = jax.vmap(jax.grad(lambda xi, k: paper_entropy(sde, xi, k, "forward")))(x, keys)
            return out, grad

        out, grad = run(x32, keys)
    for name, values in out.items():
        assert values.shape == (2,) and values.dtype == jnp.float32, name
        assert bool(jnp.all(jnp.isfinite(values))), name
    # The reference estimator is nearly deterministic (noise weight ~2e-3), so one draw is
    # within a few 1e-3 of its expectation.
    np.testing.assert_allclose(out["reference"], want_ref, atol=1e-2)
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)


def test_registry_and_errors():
    assert get_entropy_estimator("paper") is paper_entropy
    assert get_entropy_estimator("reference") is reference_entropy
    with pytest.raises(ValueError, match="paper, reference"):
        get_entropy_estimator("nope")
    sde, x0, key = _sde("cosine5"), jnp.array(X0), jax.random.key(0)
    with pytest.raises(ValueError, match="prior, forward"):
        paper_entropy(sde, x0, key, terminal="posterior")
    short = sp.MeanRevertingSDE(sp.cosine_schedule(2))
    with pytest.raises(ValueError, match="T >= 3"):
        reference_entropy(short, x0, key)
    one = sp.MeanRevertingSDE(sp.cosine_schedule(1))
    with pytest.raises(ValueError, match="T > 1"):
        paper_entropy(one, x0, key)
