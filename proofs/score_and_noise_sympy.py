r"""SymPy checks of `proofs/score_and_noise.md`: score, noise and $\hat x_0$ parametrisations,
the reverse-time SDE and the probability-flow ODE, and the reference code's cosine normalisation.

Run as `python proofs/score_and_noise_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

t, w = sp.symbols("t w", real=True)
x, x_t, x_0, mu, eps, m0 = sp.symbols("x x_t x_0 mu epsilon m_0", real=True)
lam, s0 = sp.symbols("lambda s_0", positive=True)
d = sp.Symbol("d", positive=True)  # e^{-Theta_t}
theta = sp.Function("theta")


def Theta(a, b) -> sp.Expr:
    r"""$\Theta(a, b) = \int_a^b \theta(w)\,dw$, left unevaluated."""
    return sp.Integral(theta(w), (w, a, b))


def gaussian_log_density(z, mean, var) -> sp.Expr:
    return -((z - mean) ** 2) / (2 * var) - sp.log(2 * sp.pi * var) / 2


def marginal_moments(x0, decay) -> tuple[sp.Expr, sp.Expr]:
    r"""$(m_t, v_t) = (\mu + (x_0 - \mu)e^{-\Theta_t},\ \lambda^2(1 - e^{-2\Theta_t}))$."""
    return mu + (x0 - mu) * decay, lam**2 * (1 - decay**2)


def noise_from_x0(xt, x0, decay) -> sp.Expr:
    m, v = marginal_moments(x0, decay)
    return (xt - m) / sp.sqrt(v)


def x0_from_noise(xt, noise, decay) -> sp.Expr:
    r"""$\hat x_0 = \mu + (x_t - \mu - \sqrt{v_t}\hat\varepsilon)e^{\Theta_t}$."""
    _, v = marginal_moments(x_0, decay)
    return mu + (xt - mu - sp.sqrt(v) * noise) / decay


def _zero(expr: sp.Expr, what: str) -> None:
    # cancel() settles rational identities fast; simplify() is the slower fallback.
    residual = sp.cancel(sp.together(expr))
    if residual != 0:
        residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_score() -> None:
    m, v = marginal_moments(x_0, d)
    score = sp.diff(gaussian_log_density(x_t, m, v), x_t)
    _zero(score + (x_t - m) / v, "score of p(x_t|x_0) = -(x_t - m_t)/v_t")
    _zero(
        score.subs(x_t, m + sp.sqrt(v) * eps) + eps / sp.sqrt(v),
        "score at x_t = m_t + sqrt(v_t) eps is -eps/sqrt(v_t)",
    )


def check_noise_x0_inverses() -> None:
    _zero(
        x0_from_noise(x_t, noise_from_x0(x_t, x_0, d), d) - x_0,
        "x0_from_noise(x_t, noise_from_x0(x_t, x_0)) = x_0",
    )
    _zero(
        noise_from_x0(x_t, x0_from_noise(x_t, eps, d), d) - eps,
        "noise_from_x0(x_t, x0_from_noise(x_t, eps)) = eps",
    )
    # x0_hat is the unique solution of the reparameterisation for x_0.
    _, v = marginal_moments(x_0, d)
    solved = sp.solve(sp.Eq(x_t, mu + (x_0 - mu) * d + sp.sqrt(v) * eps), x_0)
    assert len(solved) == 1, f"expected one solution, got {solved}"
    _zero(
        solved[0] - x0_from_noise(x_t, eps, d),
        "x0_hat solves x_t = mu + (x_0 - mu)e^{-Theta} + sqrt(v) eps",
    )


def check_tweedie() -> None:
    # For data x_0 ~ N(m0, s0^2): grad log p_t(x) = E[-(x - m_t(x_0))/v_t | x_t = x], i.e. the
    # score of the marginal is the posterior mean of the conditional score (the reason noise
    # matching learns the score), and x0_from_noise(E[eps | x_t]) = E[x_0 | x_t] (linearity).
    m_t, v_t = marginal_moments(x_0, d)
    M, V = marginal_moments(m0, d)[0], s0**2 * d**2 + lam**2 * (1 - d**2)
    score_marginal = -(x - M) / V
    # E[x_0 | x_t = x] by Gaussian conditioning: Cov(x_0, x_t) = d s0^2.
    post_mean_x0 = m0 + d * s0**2 / V * (x - M)
    conditional_score = -(x - marginal_moments(post_mean_x0, d)[0]) / v_t  # linear in x_0
    _zero(score_marginal - conditional_score, "Tweedie: score of p_t = E[conditional score | x_t]")
    expected_noise = noise_from_x0(
        x, post_mean_x0, d
    )  # E[eps | x_t], noise_from_x0 is affine in x_0
    _zero(
        x0_from_noise(x, expected_noise, d) - post_mean_x0, "x0_from_noise(E[eps|x_t]) = E[x_0|x_t]"
    )
    _zero(-expected_noise / sp.sqrt(v_t) - score_marginal, "-E[eps|x_t]/sqrt(v_t) = score of p_t")


def _gaussian_data_marginal() -> tuple[sp.Expr, sp.Expr]:
    decay = sp.exp(-Theta(0, t))
    return mu + (m0 - mu) * decay, s0**2 * decay**2 + lam**2 * (1 - decay**2)


def check_reverse_and_flow() -> None:
    M, V = _gaussian_data_marginal()
    f = theta(t) * (mu - x)
    g2 = 2 * lam**2 * theta(t)
    p = sp.exp(gaussian_log_density(x, M, V))
    score = -(x - M) / V
    # The marginal of the forward SDE from N(m0, s0^2).
    _zero(sp.diff(M, t) - theta(t) * (mu - M), "Gaussian data: M' = theta (mu - M)")
    _zero(sp.diff(V, t) - (-2 * theta(t) * V + g2), "Gaussian data: V' = -2 theta V + sigma^2")
    _zero(M.subs(t, 0).doit() - m0, "Gaussian data: M(0) = m0")
    _zero(V.subs(t, 0).doit() - s0**2, "Gaussian data: V(0) = s0^2")
    _zero(
        (sp.diff(p, t) + sp.diff(f * p, x) - g2 / 2 * sp.diff(p, x, 2)) / p,
        "Gaussian data: p_t solves the forward Fokker-Planck equation",
    )

    # Probability-flow ODE dx/dt = f - sigma^2/2 score: linear, x' = A x + B.
    flow = sp.expand(f - g2 / 2 * score)
    A, B = sp.diff(flow, x), flow.subs(x, 0)
    assert sp.simplify(sp.diff(flow, x, 2)) == 0
    _zero(sp.diff(M, t) - (A * M + B), "probability flow: transports the mean (M' = A M + B)")
    _zero(sp.diff(V, t) - 2 * A * V, "probability flow: transports the variance (V' = 2 A V)")
    _zero((sp.diff(p, t) + sp.diff(flow * p, x)) / p, "probability flow: continuity equation holds")

    # Reverse-time SDE (Anderson): y(tau) = x(T - tau), dy = -h dtau + sigma dW,
    # h = f - sigma^2 score.
    h = sp.expand(f - g2 * score)
    A_r, B_r = sp.diff(h, x), h.subs(x, 0)
    # E[y] and Var[y] in tau are M, V at T - tau: d/dtau = -d/dt.
    _zero(-sp.diff(M, t) - (-(A_r * M + B_r)), "reverse SDE: the mean ODE runs M backwards")
    _zero(-sp.diff(V, t) - (-2 * A_r * V + g2), "reverse SDE: the variance ODE runs V backwards")
    _zero(
        (-sp.diff(p, t) - sp.diff(h * p, x) - g2 / 2 * sp.diff(p, x, 2)) / p,
        "reverse SDE: p_{T-tau} solves its Fokker-Planck equation",
    )


def check_cosine_normalisation(num_steps: int = 5) -> None:
    thetas = sp.symbols(f"theta_0:{num_steps}", positive=True)
    dt = -sp.log(sp.Rational(1, 1000)) / sp.Add(*thetas)
    total = sp.Add(*[k * dt for k in thetas])  # Theta_T = sum_k theta_k dt
    _zero(
        sp.exp(-total) - sp.Rational(1, 1000), "normalisation: e^{-Theta_T} = 1e-3 for any thetas"
    )
    _zero(1 - sp.exp(-2 * total) - (1 - sp.Rational(1, 10**6)), "normalisation: v_T = 1 - 1e-6")

    # The cosine thetas themselves, exactly, against the docs/method.md §2 table.
    off = sp.Rational(8, 1000)
    f = [
        sp.cos(((sp.Integer(j) / (num_steps + 1)) + off) / (1 + off) * sp.pi / 2) ** 2
        for j in range(num_steps + 2)
    ]
    cos_thetas = [1 - f[k + 1] / f[0] for k in range(num_steps)]
    values = [float(sp.N(c, 30)) for c in cos_thetas]
    assert all(0 < a < b < 1 for a, b in zip(values, values[1:], strict=False)), values
    cos_dt = -sp.log(sp.Rational(1, 1000)) / sp.Add(*cos_thetas)
    increments = [c * cos_dt for c in cos_thetas]
    cumulative = [sp.Add(*increments[:j]) for j in range(1, num_steps + 1)]
    table = {
        "theta_{t-1}": ([0.07213, 0.25712, 0.50616, 0.75355, 0.93404], cos_thetas),
        "Theta(t-1,t)": ([0.19749, 0.70396, 1.38582, 2.06317, 2.55732], increments),
        "Theta_t": ([0.19749, 0.90145, 2.28727, 4.35043, 6.90776], cumulative),
        "e^{-Theta_t}": (
            [0.82079, 0.40598, 0.10154, 0.01290, 0.00100],
            [sp.exp(-c) for c in cumulative],
        ),
        "v_t": (
            [0.32630, 0.83518, 0.98969, 0.99983, 0.999999],
            [1 - sp.exp(-2 * c) for c in cumulative],
        ),
    }
    for name, (expected, exprs) in table.items():
        for want, expr in zip(expected, exprs, strict=True):
            got = float(sp.N(expr, 30))
            assert abs(got - want) < 6e-6, f"docs/method.md §2 table {name}: {got} vs {want}"
    assert abs(float(sp.N(sp.Add(*cos_thetas), 30)) - 2.52299) < 6e-6
    assert abs(float(sp.N(cos_dt, 30)) - 2.73792) < 6e-6
    _zero(
        sp.exp(-sp.Add(*increments)) - sp.Rational(1, 1000),
        "cosine grid: e^{-Theta_5} = 1e-3 exactly",
    )
    print(
        "  ok  docs/method.md §2 table: thetas (increasing, in (0,1)), increments, Theta_t, e^-Theta_t, v_t"
    )


def main() -> None:
    """Check every identity of `proofs/score_and_noise.md`; raise `AssertionError` on failure."""
    print("proofs/score_and_noise.md")
    check_score()
    check_noise_x0_inverses()
    check_tweedie()
    check_reverse_and_flow()
    check_cosine_normalisation()


if __name__ == "__main__":
    main()
