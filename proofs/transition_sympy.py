r"""SymPy checks of `proofs/transition.md`: the transition law of the mean-reverting SDE.

$$dx = \theta(t)(\mu - x)\,dt + \sigma(t)\,dW, \qquad \sigma^2 = 2\lambda^2\theta,$$

$$x_t \mid x_s \sim \mathcal N\big(\mu + (x_s - \mu)e^{-\Theta(s,t)},\
  \lambda^2(1 - e^{-2\Theta(s,t)})\big).$$

The rate is a generic (undefined) function $\theta(t)$ and $\Theta(s, t)$ its unevaluated integral,
so nothing here depends on a particular schedule. Run as `python proofs/transition_sympy.py`;
`main()` raises `AssertionError` on the first identity that fails.
"""

from __future__ import annotations

import sympy as sp

# One coordinate suffices: drift and diffusion act coordinate-wise (transition.md, §0).
t, s, r, u, w = sp.symbols("t s r u w", real=True)
mu, x, x_s, x_r, x_t, y = sp.symbols("mu x x_s x_r x_t y", real=True)
lam = sp.Symbol("lambda", positive=True)
theta = sp.Function("theta")


def Theta(a, b) -> sp.Expr:
    r"""$\Theta(a, b) = \int_a^b \theta(w)\,dw$, left unevaluated."""
    return sp.Integral(theta(w), (w, a, b))


def transition_mean(x_from, mu_, decay) -> sp.Expr:
    r"""$\mu + (x_s - \mu)\,e^{-\Theta}$ written with `decay` $= e^{-\Theta}$."""
    return mu_ + (x_from - mu_) * decay


def transition_variance(lam_, decay) -> sp.Expr:
    r"""$\lambda^2(1 - e^{-2\Theta})$ written with `decay` $= e^{-\Theta}$."""
    return lam_**2 * (1 - decay**2)


def gaussian_log_density(z, mean, var) -> sp.Expr:
    r"""$\log\mathcal N(z; m, v)$."""
    return -((z - mean) ** 2) / (2 * var) - sp.log(2 * sp.pi * var) / 2


def _zero(expr: sp.Expr, what: str) -> None:
    # cancel() settles rational identities fast; simplify() is the slower fallback.
    residual = sp.cancel(sp.together(expr))
    if residual != 0:
        residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_integrating_factor() -> None:
    # For any path y(t): d/dt[e^{Theta(s,t)}(y - mu)] = e^{Theta(s,t)}(y' - theta(mu - y)),
    # so the drift part of the SDE disappears after multiplying by e^{Theta}.
    yfun = sp.Function("y")(t)
    lhs = sp.diff(sp.exp(Theta(s, t)) * (yfun - mu), t)
    rhs = sp.exp(Theta(s, t)) * (sp.diff(yfun, t) - theta(t) * (mu - yfun))
    _zero(lhs - rhs, "integrating factor: d[e^Theta (y - mu)] = e^Theta (dy - theta(mu - y) dt)")


def check_ito_isometry() -> None:
    # Var[int_s^t e^{-Theta(u,t)} sigma(u) dW_u] = int_s^t e^{-2 Theta(u,t)} 2 lam^2 theta(u) du.
    # An antiderivative in u is lam^2 e^{-2 Theta(u,t)}: check it, then evaluate at u = t, s.
    antiderivative = lam**2 * sp.exp(-2 * Theta(u, t))
    integrand = sp.exp(-2 * Theta(u, t)) * 2 * lam**2 * theta(u)
    _zero(
        sp.diff(antiderivative, u) - integrand,
        "Ito isometry: antiderivative of e^{-2Theta} sigma^2",
    )
    value = (antiderivative.subs(u, t) - antiderivative.subs(u, s)).doit()
    _zero(
        value - lam**2 * (1 - sp.exp(-2 * Theta(s, t))),
        "Ito isometry: variance lam^2(1-e^{-2Theta})",
    )


def check_moment_odes() -> None:
    m = transition_mean(x_s, mu, sp.exp(-Theta(s, t)))
    v = transition_variance(lam, sp.exp(-Theta(s, t)))
    sigma2 = 2 * lam**2 * theta(t)
    _zero(sp.diff(m, t) - theta(t) * (mu - m), "mean solves m' = theta (mu - m)")
    _zero(sp.diff(v, t) - (-2 * theta(t) * v + sigma2), "variance solves v' = -2 theta v + sigma^2")
    _zero(m.subs(t, s).doit() - x_s, "initial condition m(s) = x_s")
    _zero(v.subs(t, s).doit(), "initial condition v(s) = 0")


def check_fokker_planck() -> None:
    # The Gaussian with these moments solves the forward Kolmogorov equation
    # d_t p = -d_x[theta (mu - x) p] + (sigma^2 / 2) d_xx p, which (with the delta initial law
    # of the previous check) identifies it as the transition density.
    m = transition_mean(x_s, mu, sp.exp(-Theta(s, t)))
    v = transition_variance(lam, sp.exp(-Theta(s, t)))
    p = sp.exp(gaussian_log_density(x, m, v))
    fp = sp.diff(p, t) - (
        -sp.diff(theta(t) * (mu - x) * p, x) + lam**2 * theta(t) * sp.diff(p, x, 2)
    )
    _zero(fp / p, "transition density solves the Fokker-Planck equation")


def check_additivity() -> None:
    # Theta(s, r) + Theta(r, t) = Theta(s, t): same derivative in t and equal at t = r.
    gap = Theta(s, r) + Theta(r, t) - Theta(s, t)
    _zero(sp.diff(gap, t), "additivity of Theta: derivative in t")
    _zero(gap.subs(t, r).doit(), "additivity of Theta: value at t = r")


def check_chapman_kolmogorov() -> None:
    # a = e^{-Theta(s,r)}, b = e^{-Theta(r,t)}; additivity makes ab = e^{-Theta(s,t)}.
    a, b = sp.symbols("a b", positive=True)
    m_sr, v_sr = transition_mean(x_s, mu, a), transition_variance(lam, a)
    m_rt_mean_part = mu + (m_sr - mu) * b  # E[x_t | x_s] = mu + b (E[x_r | x_s] - mu)
    v_total = b**2 * v_sr + transition_variance(lam, b)  # law of total variance
    _zero(m_rt_mean_part - transition_mean(x_s, mu, a * b), "Chapman-Kolmogorov: means compose")
    _zero(v_total - transition_variance(lam, a * b), "Chapman-Kolmogorov: variances compose")

    # The densities themselves: int p(x_t | x_r) p(x_r | x_s) dx_r = p(x_t | x_s).
    # The exponent is -A x_r^2 + B x_r + C; integrate with the Gaussian integral below.
    log_joint = gaussian_log_density(x_t, transition_mean(x_r, mu, b), transition_variance(lam, b))
    log_joint += gaussian_log_density(x_r, m_sr, v_sr)
    poly = sp.Poly(sp.expand(log_joint), x_r)
    assert poly.degree() == 2, "the joint log density must be quadratic in x_r"
    A, B, C = -poly.coeff_monomial(x_r**2), poly.coeff_monomial(x_r), poly.coeff_monomial(1)
    _zero(
        sp.simplify(A - (1 / transition_variance(lam, b) * b**2 + 1 / v_sr) / 2),
        "Chapman-Kolmogorov: precision of x_r is positive (A = (b^2/v_b + 1/v_a)/2)",
    )
    log_marginal = sp.log(sp.sqrt(sp.pi / A)) + B**2 / (4 * A) + C
    target = gaussian_log_density(
        x_t, transition_mean(x_s, mu, a * b), transition_variance(lam, a * b)
    )
    gap = log_marginal - target
    at_zero = gap.subs({x_t: 0, x_s: 0, mu: 0})
    _zero(gap - at_zero, "Chapman-Kolmogorov: log densities agree as functions of x_t, x_s, mu")
    # What is left is a constant of logs and square roots; squaring its exponential removes the
    # roots, whose branch SymPy cannot settle without knowing a, b < 1.
    _zero(sp.exp(2 * at_zero) - 1, "Chapman-Kolmogorov: normalising constants agree")


def check_gaussian_integral() -> None:
    # The formula used above: int exp(-A z^2 + B z + C) dz = sqrt(pi/A) exp(B^2/(4A) + C), A > 0.
    A = sp.Symbol("A", positive=True)
    B, C = sp.symbols("B C", real=True)
    value = sp.integrate(sp.exp(-A * y**2 + B * y + C), (y, -sp.oo, sp.oo))
    _zero(value - sp.sqrt(sp.pi / A) * sp.exp(B**2 / (4 * A) + C), "Gaussian integral formula")


def check_marginal_and_reparameterisation() -> None:
    # The marginal is the case s = 0: x_t = m_t + sqrt(v_t) eps with eps ~ N(0, 1) has density
    # N(x; m_t, v_t) by the change of variables eps = (x - m_t)/sqrt(v_t).
    x_0, eps = sp.symbols("x_0 epsilon", real=True)
    d = sp.Symbol("d", positive=True)  # e^{-Theta_t}
    m_t, v_t = transition_mean(x_0, mu, d), transition_variance(lam, d)
    v_pos = sp.Symbol("v", positive=True)
    density_eps = sp.exp(gaussian_log_density((x - m_t) / sp.sqrt(v_pos), 0, 1)) / sp.sqrt(v_pos)
    _zero(
        density_eps - sp.exp(gaussian_log_density(x, m_t, v_pos)),
        "reparameterisation: x = m + sqrt(v) eps has density N(m, v)",
    )
    sample = m_t + sp.sqrt(v_t) * eps
    _zero(
        sample - (mu + (x_0 - mu) * d + sp.sqrt(lam**2 * (1 - d**2)) * eps),
        "reparameterised marginal x_t = mu + (x_0 - mu)e^{-Theta_t} + sqrt(v_t) eps",
    )
    _zero(Theta(0, 0).doit(), "Theta_0 = 0, so the marginal starts at x_0")


def check_stationary_law() -> None:
    # N(mu, lam^2) is invariant: mean mu maps to mu, variance d^2 lam^2 + lam^2(1-d^2) = lam^2.
    d = sp.Symbol("d", positive=True)
    _zero(transition_mean(mu, mu, d) - mu, "stationary law: mean mu is preserved")
    _zero(
        d**2 * lam**2 + transition_variance(lam, d) - lam**2, "stationary law: variance lam^2 kept"
    )


def main() -> None:
    """Check every identity of `proofs/transition.md`; raise `AssertionError` on failure."""
    print("proofs/transition.md")
    check_integrating_factor()
    check_ito_isometry()
    check_moment_odes()
    check_fokker_planck()
    check_additivity()
    check_gaussian_integral()
    check_chapman_kolmogorov()
    check_marginal_and_reparameterisation()
    check_stationary_law()


if __name__ == "__main__":
    main()
