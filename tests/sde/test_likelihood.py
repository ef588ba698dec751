r"""The exact log-likelihood through the probability-flow ODE (`sdepolicy.sde.LogLikelihood`)
against closed-form log densities it did not produce.

The data laws are Gaussian mixtures in 2-d, whose marginals $p_t$ are mixtures in closed form
($x_0 \sim \mathcal N(m, C)$ gives $x_t \sim \mathcal N(\mu + (m - \mu)a_t,\ a_t^2 C + v_t I)$,
$a_t = e^{-\Theta_t}$); the exact score is `jax.grad` of that log density, and the exact $p_T$
is used at the horizon unless a test says otherwise.

- A Gaussian (two equal components with a diagonal covariance) and a two-component mixture with
  full covariances: $\log p_0(x)$ to the solver's tolerance, errors measured and bounded at
  two tolerances.
- Hutchinson: exact for the diagonal Jacobian of the Gaussian with Rademacher probes; unbiased
  on the mixture (128 draws within 4.5 standard errors).
- Differentiable: the gradient in the data mean (a parameter of the score and of $p_T$) equals
  $\partial_{m}\log\mathcal N(x; m, \operatorname{diag}s^2) = (x - m)/s^2$, and the gradient
  in $x$ is the data score.
- The default terminal density (the stationary law) moves the answer by exactly
  $\log\mathcal N(x_T; \mu, \lambda^2) - \log p_T(x_T)$, with another diffrax solver.

Every solve of the file goes through four compilations (tolerances are array fields).
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy.sde as sp
from sdepolicy.sde import SDEInputError

MU = np.array([0.5, -1.0])
LAM = 1.5
M0 = np.array([2.0, 1.0])
S0 = np.array([0.3, 0.8])
POINTS = np.array([[2.1, 0.4], [1.5, 2.0], [2.6, -0.5]])


def _sde():
    return sp.MeanRevertingSDE(sp.cosine_schedule(5), MU, LAM)


def _gaussian_params(m0=M0):
    """(log weights, means, covariances): two equal components = one Gaussian."""
    cov = jnp.diag(jnp.asarray(S0**2))
    return (
        jnp.log(jnp.asarray([0.5, 0.5])),
        jnp.stack([jnp.asarray(m0)] * 2),
        jnp.stack([cov, cov]),
    )


def _mixture_params():
    covs = np.array([[[0.2, 0.08], [0.08, 0.15]], [[0.3, -0.1], [-0.1, 0.25]]])
    return (
        jnp.log(jnp.asarray([0.35, 0.65])),
        jnp.asarray([[1.5, -0.5], [-1.0, 1.2]]),
        jnp.asarray(covs),
    )


def _log_density(schedule, t, x, params):
    """log p_t(x) of the propagated mixture, with the 2x2 inverse written out."""
    log_w, means, covs = params
    big = schedule.cumulative(t)
    a = jnp.exp(-big)
    v = LAM**2 * -jnp.expm1(-2 * big)
    c = a**2 * covs + v * jnp.eye(2)[None]
    det = c[:, 0, 0] * c[:, 1, 1] - c[:, 0, 1] * c[:, 1, 0]
    d = x[None] - (MU[None] + (means - MU[None]) * a)
    quad = (
        c[:, 1, 1] * d[:, 0] ** 2 - 2 * c[:, 0, 1] * d[:, 0] * d[:, 1] + c[:, 0, 0] * d[:, 1] ** 2
    ) / det
    logs = log_w - 0.5 * quad - 0.5 * jnp.log((2 * np.pi) ** 2 * det)
    return jax.scipy.special.logsumexp(logs)


def _score(schedule):
    return lambda t, x, params: jax.grad(_log_density, argnums=2)(schedule, t, x, params)


def _terminal(schedule):
    return lambda x, params: _log_density(schedule, 5.0, x, params)


def _gauss(x, m, v):
    return jnp.sum(-0.5 * (x - m) ** 2 / v - 0.5 * jnp.log(2 * np.pi * v))


def test_log_density_to_tolerance_gaussian_and_mixture():
    """Measured (float64, Tsit5, cosine T = 5): max error over the points 2.6e-5 (Gaussian) and
    2.4e-5 (mixture) at rtol = atol = 1e-5; 1.8e-8 and 4.1e-8 at 1e-8."""
    sde = _sde()
    score, terminal = _score(sde.schedule), _terminal(sde.schedule)
    gauss_x = jnp.asarray(POINTS)
    mix_x = jnp.asarray([[1.4, -0.3], [-0.8, 1.0], [0.2, 0.4]])
    exact_gauss = np.array([_gauss(x, M0, S0**2) for x in POINTS])
    exact_mix = np.asarray(
        jax.vmap(lambda x: _log_density(sde.schedule, 0.0, x, _mixture_params()))(mix_x)
    )
    assert np.max(np.abs(exact_mix - jax.vmap(lambda x: _gauss(x, M0, S0**2))(mix_x))) > 1.0
    errors = {}
    for tol in (1e-5, 1e-8):
        ll = sp.LogLikelihood(sde, rtol=tol, atol=tol, divergence="exact")

        def run(x, params, ll=ll):
            return ll(score, x, params, terminal_log_density=terminal)

        batch = jax.vmap(run, in_axes=(0, None))
        errors[tol] = (
            np.max(np.abs(np.asarray(batch(gauss_x, _gaussian_params())) - exact_gauss)),
            np.max(np.abs(np.asarray(batch(mix_x, _mixture_params())) - exact_mix)),
        )
    for tol, errs in errors.items():
        assert max(errs) < 30 * tol, errors
    assert max(errors[1e-8]) < min(errors[1e-5]) / 50, errors


def test_hutchinson_exact_on_a_diagonal_jacobian_and_unbiased_on_the_mixture():
    sde = _sde()
    score, terminal = _score(sde.schedule), _terminal(sde.schedule)
    hutch = sp.LogLikelihood(sde, divergence="hutchinson")
    keys = jax.random.split(jax.random.key(3), 128)

    @jax.jit
    def draws(y, params):
        return jax.vmap(lambda k: hutch(score, y, params, key=k, terminal_log_density=terminal))(
            keys
        )

    # Rademacher probes: v^T D v = tr D for a diagonal D, whatever the key.
    x = jnp.asarray(POINTS[1])
    gauss = np.asarray(draws(x, _gaussian_params()))
    np.testing.assert_allclose(gauss, float(_gauss(x, M0, S0**2)), atol=1e-5)
    np.testing.assert_allclose(gauss, gauss[0], rtol=1e-10)
    y = jnp.asarray([0.2, 0.4])
    mix = np.asarray(draws(y, _mixture_params()))
    want = float(_log_density(sde.schedule, 0.0, y, _mixture_params()))
    se = mix.std(ddof=1) / np.sqrt(mix.size)
    assert mix.std() > 1e-3  # a genuinely random estimator here
    assert abs(mix.mean() - want) < 4.5 * se + 2e-5, (mix.mean(), want, se)
    with pytest.raises(SDEInputError, match="key"):
        hutch(score, y, _gaussian_params())


def test_gradient_in_a_score_parameter_and_in_x():
    r"""$\partial_m \log \mathcal N(x; m, s^2) = (x - m)/s^2$ through the solve (the mean
    enters the score and the exact $p_T$); $\partial_x$ is the data score."""
    sde = _sde()
    ll = sp.LogLikelihood(sde, rtol=1e-8, atol=1e-8)

    # The Gaussian's score written out (a jax.grad score would make the backward pass third
    # order and triple the compile time).
    def moments(t, m):
        big = sde.schedule.cumulative(t)
        a = jnp.exp(-big)
        return MU + (m - MU) * a, a**2 * S0**2 + LAM**2 * -jnp.expm1(-2 * big)

    def score(t, x, m):
        mean, var = moments(t, m)
        return -(x - mean) / var

    def terminal(x, m):
        return _gauss(x, *moments(5.0, m))

    x = jnp.asarray(POINTS[2])
    gx, gm = jax.grad(lambda y, m: ll(score, y, m, terminal_log_density=terminal), argnums=(0, 1))(
        x, jnp.asarray(M0)
    )
    np.testing.assert_allclose(gm, (POINTS[2] - M0) / S0**2, rtol=1e-6)
    np.testing.assert_allclose(gx, -(POINTS[2] - M0) / S0**2, rtol=1e-6)


def test_default_prior_another_solver_and_validation():
    sde = _sde()
    score = _score(sde.schedule)
    x = jnp.asarray(POINTS[0])
    got = sp.log_likelihood(
        sde, score, x, _gaussian_params(), solver=diffrax.Dopri5(), rtol=1e-9, atol=1e-9
    )
    # The stationary law N(mu, lam^2) at the horizon: the answer moves by
    # log N(x_T; mu, lam^2) - log p_T(x_T), x_T the affine flow map of the Gaussian case.
    big = float(sde.schedule.cumulative(5.0))
    m_T = MU + (M0 - MU) * np.exp(-big)
    v_T = np.exp(-2 * big) * S0**2 + LAM**2 * -np.expm1(-2 * big)
    x_T = m_T + np.sqrt(v_T) * (np.asarray(x) - M0) / S0
    shift = _gauss(x_T, MU, LAM**2) - _gauss(x_T, m_T, v_T)
    assert abs(float(shift)) > 1e-4  # the test can see the prior
    np.testing.assert_allclose(got, _gauss(x, M0, S0**2) + shift, atol=1e-7)

    with pytest.raises(SDEInputError):
        sp.LogLikelihood(sde, divergence="trace")
    with pytest.raises(SDEInputError):
        sp.LogLikelihood(sde, t0=5.0)
    assert sp.LogLikelihood(sde).uses_exact_divergence(32)
    assert not sp.LogLikelihood(sde).uses_exact_divergence(33)
    noise_score = sp.noise_to_score(sde, lambda t, x, args: jnp.tanh(x))
    with pytest.raises(SDEInputError, match="t0 > 0"):
        sp.LogLikelihood(sde)(noise_score, jnp.zeros(2))


def test_log_density_error_in_3d_is_what_the_docstring_states():
    r"""Issue 30: the docstring promised an error "of the order of the tolerance"; measured with
    the exact score and exact $p_T$ of 3-d Gaussian data it is 15-55 times `rtol = atol` (e.g.
    2.4e-5 at 1e-6). Pinned: above the tolerance, below the 60x the docstring advises."""
    mu, lam = 0.5, 1.5
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5), mu, lam)
    rng = np.random.default_rng(0)
    m0, s0 = jnp.asarray(rng.normal(size=3)), jnp.asarray(rng.uniform(0.2, 1.0, 3))

    def log_p(t, x, p):
        big = sde.schedule.cumulative(t)
        a = jnp.exp(-big)
        m, v = mu + (p[0] - mu) * a, a**2 * p[1] ** 2 + lam**2 * -jnp.expm1(-2 * big)
        return jnp.sum(-0.5 * (x - m) ** 2 / v - 0.5 * jnp.log(2 * np.pi * v))

    def score(t, x, p):
        return jax.grad(log_p, argnums=1)(t, x, p)

    points = jnp.asarray(np.asarray(m0) + np.asarray(s0) * 1.5 * rng.normal(size=(8, 3)))
    tol = 1e-6
    ll = sp.LogLikelihood(sde, rtol=tol, atol=tol, divergence="exact")
    got = jax.vmap(
        lambda x: ll(score, x, (m0, s0), terminal_log_density=lambda y, p: log_p(5.0, y, p))
    )(points)
    err = float(jnp.max(jnp.abs(got - jax.vmap(lambda x: log_p(0.0, x, (m0, s0)))(points))))
    assert tol < err < 60 * tol, err
