r"""SymPy checks of `proofs/likelihood.md`: the probability-flow ODE carries $p_t$, and the
instantaneous change of variables $\tfrac{d}{dt}\log p_t(x_t) = -\nabla\cdot f$.

Run as `python proofs/likelihood_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

t, x, mu = sp.symbols("t x mu", real=True)
lam = sp.Symbol("lambda", positive=True)
theta = sp.Function("theta")(t)
M = sp.Function("M")(t)
V = sp.Function("V")(t)


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(sp.cancel(sp.together(expr)))
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def _moment_odes(expr: sp.Expr) -> sp.Expr:
    """Replace M', V' by the moment ODEs of the SDE."""
    return expr.subs(
        {
            sp.Derivative(M, t): theta * (mu - M),
            sp.Derivative(V, t): -2 * theta * V + 2 * lam**2 * theta,
        }
    )


def check_fokker_planck_is_a_continuity_equation() -> None:
    p = sp.Function("p")(x, t)
    sigma2 = 2 * lam**2 * theta
    fp_rhs = -sp.diff(theta * (mu - x) * p, x) + sigma2 / 2 * sp.diff(p, x, 2)
    f = theta * (mu - x) - sigma2 / 2 * sp.diff(p, x) / p
    _zero(fp_rhs + sp.diff(p * f, x), "Fokker-Planck = -d/dx (p f), f = theta(mu-x) - sigma^2 s/2")
    # d/dt log p(x_t, t) along dx/dt = f, with dp/dt from Fokker-Planck: -div f.
    dlogp = (fp_rhs + f * sp.diff(p, x)) / p
    _zero(dlogp + sp.diff(f, x), "d/dt log p_t(x_t) = -div f (generic density)")


def check_gaussian_case() -> None:
    log_p = -((x - M) ** 2) / (2 * V) - sp.log(2 * sp.pi * V) / 2
    score = sp.diff(log_p, x)
    _zero(score + (x - M) / V, "score of N(M, V) is -(x - M)/V")
    f = theta * (mu - x) - lam**2 * theta * score
    p = sp.exp(log_p)
    continuity = _moment_odes(sp.diff(p, t) + sp.diff(p * f, x)) / p
    _zero(sp.expand(continuity), "N(M_t, V_t) with the moment ODEs solves dp/dt + d/dx(p f) = 0")
    div = sp.diff(f, x)
    _zero(div - (-theta + lam**2 * theta / V), "div f = -theta - sigma^2/2 d/dx s")


def check_drift_divergence_in_three_dimensions() -> None:
    xs = sp.symbols("x1:4", real=True)
    mus = sp.symbols("mu1:4", real=True)
    drift = [theta * (m - xi) for m, xi in zip(mus, xs, strict=True)]
    div = sum(sp.diff(fi, xi) for fi, xi in zip(drift, xs, strict=True))
    _zero(div + 3 * theta, "div theta(mu - x) = -theta d (d = 3)")


def check_hutchinson_identity() -> None:
    # E[v^T A v] = tr A for Rademacher v (v_i^2 = 1, E v_i v_j = 0): average over all 2^2 signs.
    a = sp.Matrix(2, 2, sp.symbols("a11 a12 a21 a22", real=True))
    signs = [sp.Matrix([i, j]) for i in (-1, 1) for j in (-1, 1)]
    mean = sum(((v.T * a * v)[0] for v in signs), sp.Integer(0)) / len(signs)
    _zero(mean - a.trace(), "Rademacher Hutchinson: E[v^T A v] = tr A")
    diag = sp.diag(*sp.symbols("d1 d2", real=True))
    for v in signs:
        _zero((v.T * diag * v)[0] - diag.trace(), f"exact for diagonal A with v = {list(v)}")


def main() -> None:
    print("proofs/likelihood.md")
    check_fokker_planck_is_a_continuity_equation()
    check_gaussian_case()
    check_drift_divergence_in_three_dimensions()
    check_hutchinson_identity()


if __name__ == "__main__":
    main()
