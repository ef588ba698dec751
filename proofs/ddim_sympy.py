r"""SymPy checks of `proofs/ddim.md`: the DDIM family of the mean-reverting SDE, its $\eta = 1$
member is the posterior, its $\eta = 0$ member integrates the probability-flow ODE exactly with
the noise prediction held fixed, and its one-step contraction for Gaussian data.

Run as `python proofs/ddim_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

mu, x0, xt, z, eps, m0, u = sp.symbols("mu x_0 x_t z epsilon m_0 u", real=True)
lam, s0 = sp.symbols("lambda s_0", positive=True)
# A = e^{-Theta_s}, B = e^{-Theta(s,t)}: e^{-Theta_t} = A B; both in (0, 1).
A, B = sp.symbols("A B", positive=True)
eta = sp.Symbol("eta", nonnegative=True)

v_s = lam**2 * (1 - A**2)
v_t = lam**2 * (1 - A**2 * B**2)
m_s = mu + (x0 - mu) * A
m_t = mu + (x0 - mu) * A * B
# The posterior p(x_s | x_t, x_0) (proofs/posterior.md).
c_t = (1 - A**2) * B / (1 - A**2 * B**2)
c_0 = (1 - B**2) * A / (1 - A**2 * B**2)
beta = lam**2 * (1 - A**2) * (1 - B**2) / (1 - A**2 * B**2)


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.cancel(sp.together(expr))
    if residual != 0:
        residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_coefficients() -> None:
    # v_s - beta = c_t^2 v_t, so v_s - eta^2 beta = c_t^2 v_t + (1 - eta^2) beta >= 0.
    _zero(v_s - beta - c_t**2 * v_t, "v_s - beta~ = c_t^2 v_t")
    sigma2 = eta**2 * beta
    k_t = sp.sqrt(c_t**2 * v_t + (1 - eta**2) * beta) / sp.sqrt(v_t)
    k_0 = A - k_t * A * B
    # The kernel: m_s + sqrt(v_s - sigma^2) eps_hat + sigma z, eps_hat = (x_t - m_t)/sqrt(v_t).
    ddim = m_s + sp.sqrt(v_s - sigma2) * (xt - m_t) / sp.sqrt(v_t)
    coef_form = mu + k_t * (xt - mu) + k_0 * (x0 - mu)
    _zero(
        sp.simplify(ddim.subs(eta, sp.Rational(1, 3)) - coef_form.subs(eta, sp.Rational(1, 3))),
        "kernel mean = mu + k_t (x_t - mu) + k_0 (x_0 - mu) (eta = 1/3)",
    )
    _zero(sp.simplify(ddim.subs(eta, 0) - coef_form.subs(eta, 0)), "the same at eta = 0")
    # eta = 1: the posterior.
    # k_t = |c_t| = c_t: both sides are >= 0 for A, B in (0, 1), so comparing squares suffices.
    k_t1 = sp.sqrt(c_t**2 * v_t + (1 - 1) * beta) / sp.sqrt(v_t)
    _zero(sp.simplify(k_t1**2 - c_t**2), "eta = 1: k_t^2 = c_t^2, i.e. k_t = c_t (c_t >= 0)")
    _zero(A - c_t * A * B - c_0, "eta = 1: k_0 = e^{-Theta_s} - c_t e^{-Theta_t} = c_0")


def check_conditional_marginals() -> None:
    # x_t = m_t + sqrt(v_t) eps, x_s = m_s + sqrt(v_s - sigma^2) eps + sigma z: N(m_s, v_s).
    sigma2 = eta**2 * beta
    x_t = m_t + sp.sqrt(v_t) * eps
    x_s = m_s + sp.sqrt(v_s - sigma2) * (x_t - m_t) / sp.sqrt(v_t) + sp.sqrt(sigma2) * z
    mean = sp.expand(x_s).subs({eps: 0, z: 0})
    _zero(mean - m_s, "E[x_s | x_0] = m_s for every eta")
    var = sp.diff(x_s, eps) ** 2 + sp.diff(x_s, z) ** 2
    _zero(sp.simplify(var - v_s), "Var[x_s | x_0] = v_s for every eta")


def check_frozen_noise_flow() -> None:
    # On [s, t] the probability-flow ODE with the score -e/sqrt(v_u) (e fixed):
    # dx/du = theta (mu - x) + lam^2 theta e / sqrt(v_u). With D(u) = e^{-Theta_u}, D' = -theta D,
    # x(u) = mu + D (c - mu) + sqrt(v_u) e solves it for any constant c.
    theta = sp.Function("theta")(u)
    D = sp.Function("D")(u)
    c = sp.Symbol("c", real=True)
    v_u = lam**2 * (1 - D**2)
    x_u = mu + D * (c - mu) + sp.sqrt(v_u) * eps
    lhs = sp.diff(x_u, u).subs(sp.Derivative(D, u), -theta * D)
    rhs = theta * (mu - x_u) + lam**2 * theta * eps / sp.sqrt(v_u)
    _zero(sp.simplify(lhs - rhs), "x(u) = mu + D_u (c - mu) + sqrt(v_u) e solves the frozen flow")
    # Through x_t at u = t the constant is c = x0_hat (x0_from_noise of e); at u = s the
    # solution is the eta = 0 kernel: m_s(x0_hat) + sqrt(v_s) e.
    x_hat = mu + (xt - mu - sp.sqrt(v_t) * eps) / (A * B)
    at_t = (mu + A * B * (x_hat - mu) + sp.sqrt(v_t) * eps) - xt
    _zero(at_t, "the solution passes through x_t at u = t with c = x0_hat")
    ddim0 = mu + A * (x_hat - mu) + sp.sqrt(v_s) * eps
    k_t0 = sp.sqrt(c_t**2 * v_t + beta) / sp.sqrt(v_t)
    kernel = mu + k_t0 * (xt - mu) + (A - k_t0 * A * B) * (x_hat - mu)
    # With x0 = x0_hat the eta = 0 kernel re-uses eps_hat = eps.
    _zero(sp.simplify(ddim0 - kernel), "eta = 0 kernel = the frozen flow at u = s")


def check_gaussian_contraction() -> None:
    # x_0 ~ N(m0, s0^2): x0_hat = E[x0 | x_t] is affine; z-scores shrink by rho <= 1 per step.
    # Only a_u = e^{-Theta_u} > 0 and r_u = sqrt(v_u) > 0 enter, so they are free symbols here.
    a_s, a_t, r_s, r_t = sp.symbols("a_s a_t r_s r_t", positive=True)
    S_s = sp.sqrt(a_s**2 * s0**2 + r_s**2)
    S_t = sp.sqrt(a_t**2 * s0**2 + r_t**2)
    M_t = mu + a_t * (m0 - mu)
    M_s = mu + a_s * (m0 - mu)
    x = M_t + S_t * z
    x_hat = m0 + s0**2 * a_t * (x - M_t) / S_t**2
    e_hat = (x - mu - a_t * (x_hat - mu)) / r_t
    x_s = mu + a_s * (x_hat - mu) + r_s * e_hat
    rho = (a_s * a_t * s0**2 + r_s * r_t) / (S_s * S_t)
    _zero(sp.expand(x_s - (M_s + S_s * rho * z)), "z_s = rho z_t (Gaussian data)")
    gap = S_s**2 * S_t**2 - (a_s * a_t * s0**2 + r_s * r_t) ** 2
    want = s0**2 * (a_s * r_t - a_t * r_s) ** 2
    _zero(sp.expand(gap - want), "S_s^2 S_t^2 - (...)^2 = s0^2 (a_s sqrt(v_t) - a_t sqrt(v_s))^2")


def main() -> None:
    """Check every identity of `proofs/ddim.md`; raise `AssertionError` on failure."""
    print("proofs/ddim.md")
    check_coefficients()
    check_conditional_marginals()
    check_frozen_noise_flow()
    check_gaussian_contraction()


if __name__ == "__main__":
    main()
