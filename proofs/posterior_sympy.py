r"""SymPy checks of `proofs/posterior.md`: $p(x_s \mid x_t, x_0)$ for any $s < t$.

With $a = e^{-\Theta_s}$, $b = e^{-\Theta(s,t)}$ (so $ab = e^{-\Theta_t}$):

$$\tilde\mu - \mu = \frac{(1-a^2)\,b\,(x_t-\mu) + (1-b^2)\,a\,(x_0-\mu)}{1-a^2b^2},\qquad
\tilde\beta = \lambda^2\frac{(1-a^2)(1-b^2)}{1-a^2b^2}.$$

Run as `python proofs/posterior_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

x_s, x_t, x_0, mu = sp.symbols("x_s x_t x_0 mu", real=True)
lam = sp.Symbol("lambda", positive=True)
a, b = sp.symbols("a b", positive=True)  # e^{-Theta_s}, e^{-Theta(s,t)}, both in (0, 1)


def gaussian_log_density(z, mean, var) -> sp.Expr:
    r"""$\log\mathcal N(z; m, v)$."""
    return -((z - mean) ** 2) / (2 * var) - sp.log(2 * sp.pi * var) / 2


def posterior_coefficients(a_, b_, lam_) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""$(c_t, c_0, \tilde\beta)$ with $\tilde\mu - \mu = c_t(x_t-\mu) + c_0(x_0-\mu)$ (docs/method.md §1)."""
    one_t = 1 - a_**2 * b_**2
    return (
        (1 - a_**2) * b_ / one_t,
        (1 - b_**2) * a_ / one_t,
        lam_**2 * (1 - a_**2) * (1 - b_**2) / one_t,
    )


def posterior_mean(a_, b_, lam_, xt, x0, mu_) -> sp.Expr:
    c_t, c_0, _ = posterior_coefficients(a_, b_, lam_)
    return mu_ + c_t * (xt - mu_) + c_0 * (x0 - mu_)


def _zero(expr: sp.Expr, what: str) -> None:
    # cancel() settles rational identities fast; simplify() is the slower fallback.
    residual = sp.cancel(sp.together(expr))
    if residual != 0:
        residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def _log_post():
    _, _, beta = posterior_coefficients(a, b, lam)
    return gaussian_log_density(x_s, posterior_mean(a, b, lam, x_t, x_0, mu), beta)


def check_bayes() -> None:
    # log p(x_t|x_s) + log p(x_s|x_0) = log p(x_s|x_t,x_0) + log p(x_t|x_0), identically.
    log_lik = gaussian_log_density(x_t, mu + (x_s - mu) * b, lam**2 * (1 - b**2))
    log_prior = gaussian_log_density(x_s, mu + (x_0 - mu) * a, lam**2 * (1 - a**2))
    log_evidence = gaussian_log_density(x_t, mu + (x_0 - mu) * a * b, lam**2 * (1 - a**2 * b**2))
    gap = log_lik + log_prior - _log_post() - log_evidence
    poly = sp.Poly(gap, x_s)
    assert poly.degree() <= 2
    _zero(poly.coeff_monomial(x_s**2), "Bayes: x_s^2 coefficients agree (posterior precision)")
    _zero(poly.coeff_monomial(x_s), "Bayes: x_s coefficients agree (posterior mean)")
    const = poly.coeff_monomial(1)
    at_zero = const.subs({x_t: 0, x_0: 0, mu: 0})
    _zero(const - at_zero, "Bayes: x_s-free terms agree as functions of x_t, x_0, mu")
    # The rest is logs of normalisers; squaring the exponential clears the square roots.
    _zero(sp.exp(2 * at_zero) - 1, "Bayes: normalising constants agree")


def check_joint_gaussian_conditioning() -> None:
    # Second route: (x_s, x_t) | x_0 is jointly Gaussian with Cov = b v_s; condition on x_t.
    v_s, v_t = lam**2 * (1 - a**2), lam**2 * (1 - a**2 * b**2)
    m_s, m_t = mu + (x_0 - mu) * a, mu + (x_0 - mu) * a * b
    cov = b * v_s
    _, _, beta = posterior_coefficients(a, b, lam)
    _zero(
        m_s + cov / v_t * (x_t - m_t) - posterior_mean(a, b, lam, x_t, x_0, mu),
        "conditioning the joint Gaussian gives the same mean",
    )
    _zero(v_s - cov**2 / v_t - beta, "conditioning the joint Gaussian gives the same variance")


def check_optimal_reverse_path() -> None:
    log_post = _log_post()
    _, _, beta = posterior_coefficients(a, b, lam)
    mean = posterior_mean(a, b, lam, x_t, x_0, mu)
    _zero(
        sp.diff(log_post, x_s).subs(x_s, mean), "argmax: the score vanishes at the posterior mean"
    )
    _zero(sp.diff(log_post, x_s, 2) + 1 / beta, "argmax: second derivative is -1/beta_tilde")
    # a, b in (0, 1) are 1/(1+p), 1/(1+q) with p, q > 0; then beta_tilde > 0 is decidable.
    p, q = sp.symbols("p q", positive=True)
    beta_pq = sp.factor(sp.simplify(beta.subs({a: 1 / (1 + p), b: 1 / (1 + q)})))
    assert beta_pq.is_positive, f"beta_tilde = {beta_pq} is not provably positive"
    print("  ok  argmax: beta_tilde > 0, so the stationary point is the unique maximum")


def check_limits() -> None:
    c_t, c_0, beta = posterior_coefficients(a, b, lam)
    mean = posterior_mean(a, b, lam, x_t, x_0, mu)
    # s -> 0 is a -> 1: the posterior collapses on x_0.
    _zero(sp.limit(beta, a, 1), "s -> 0: beta_tilde -> 0")
    _zero(sp.limit(mean, a, 1) - x_0, "s -> 0: mu_tilde -> x_0")
    # s -> t is b -> 1: it collapses on x_t.
    _zero(sp.limit(beta, b, 1), "s -> t: beta_tilde -> 0")
    _zero(sp.limit(mean, b, 1) - x_t, "s -> t: mu_tilde -> x_t")
    # Theta(s,t) -> oo is b -> 0: x_t says nothing more, the posterior is p(x_s | x_0).
    _zero(sp.limit(c_t, b, 0), "Theta(s,t) -> oo: weight of x_t -> 0")
    _zero(sp.limit(c_0, b, 0) - a, "Theta(s,t) -> oo: mean -> the marginal mean at s")
    _zero(sp.limit(beta, b, 0) - lam**2 * (1 - a**2), "Theta(s,t) -> oo: variance -> v_s")


def check_proposition_3_1() -> None:
    # ER-DP-QE Prop. 3.1 (mu = 0, lam = 1, s = t - 1), in the paper's notation
    # bar_prev = bar theta_{t-1}, prime = theta'_t, bar theta_t = bar_prev + prime.
    bar_prev, prime = sp.symbols("bartheta_tm1 thetaprime_t", positive=True)
    bar_t = bar_prev + prime
    E = sp.exp
    paper_ct = (1 - E(-2 * bar_prev)) * E(-prime) / (1 - E(-2 * bar_t))
    paper_c0 = (1 - E(-2 * prime)) * E(-bar_prev) / (1 - E(-2 * bar_t))
    paper_beta = (1 - E(-2 * bar_prev)) * (1 - E(-2 * prime)) / (1 - E(-2 * bar_t))
    ours = posterior_coefficients(E(-bar_prev), E(-prime), 1)
    for name, paper, mine in zip(
        ("x_t coefficient", "x_0 coefficient", "variance"),
        (paper_ct, paper_c0, paper_beta),
        ours,
        strict=True,
    ):
        _zero(paper - mine, f"Prop. 3.1 is the adjacent-step case: {name}")


def cosine_grid(num_steps: int = 5) -> list[sp.Expr]:
    r"""Cumulative $\Theta_t$, $t = 0..T$, of the reference code's cosine schedule (exact)."""
    off = sp.Rational(8, 1000)
    f = [
        sp.cos(((sp.Integer(j) / (num_steps + 1)) + off) / (1 + off) * sp.pi / 2) ** 2
        for j in range(num_steps + 2)
    ]
    thetas = [1 - f[k + 1] / f[0] for k in range(num_steps)]
    dt = -sp.log(sp.Rational(1, 1000)) / sp.Add(*thetas)
    return [dt * sp.Add(*thetas[:j]) for j in range(num_steps + 1)]


def check_spec_test_vector() -> None:
    # docs/method.md §2 table, rows beta_tilde_t and the two mean coefficients, adjacent steps (t-1, t).
    cum = cosine_grid(5)
    table = {
        "beta_tilde": [0, 0.29511, 0.79109, 0.97388, 0.99383],
        "coef x_t": [0, 0.19325, 0.21107, 0.12576, 0.07750],
        "coef x_0": [1, 0.74234, 0.38455, 0.09992, 0.01282],
    }
    for t in range(1, 6):
        aa, bb = sp.exp(-cum[t - 1]), sp.exp(-(cum[t] - cum[t - 1]))
        c_t, c_0, beta = posterior_coefficients(aa, bb, 1)
        for name, value in zip(table, (beta, c_t, c_0), strict=True):
            got = float(sp.N(value, 30))
            assert abs(got - table[name][t - 1]) < 6e-6, f"docs/method.md §2 table {name} at t={t}: {got}"
    print("  ok  docs/method.md §2 test vector: beta_tilde and mean coefficients of the cosine grid, T = 5")


def main() -> None:
    """Check every identity of `proofs/posterior.md`; raise `AssertionError` on failure."""
    print("proofs/posterior.md")
    check_bayes()
    check_joint_gaussian_conditioning()
    check_optimal_reverse_path()
    check_limits()
    check_proposition_3_1()
    check_spec_test_vector()


if __name__ == "__main__":
    main()
