r"""SymPy checks of `proofs/training.md`: the loss weights that turn the noise error into the
$\hat x_0$ and score errors, and the smallest noise-matching loss for Gaussian data.

Run as `python proofs/training_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

mu, x0, eps, e_hat, m0 = sp.symbols("mu x_0 epsilon epsilonhat m_0", real=True)
lam, s0, big, theta = sp.symbols("lambda s_0 Theta theta", positive=True)

a = sp.exp(-big)
v = lam**2 * (1 - a**2)
x_t = mu + (x0 - mu) * a + sp.sqrt(v) * eps


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_weights() -> None:
    x0_hat = mu + (x_t - mu - sp.sqrt(v) * e_hat) / a  # x0_from_noise
    _zero(
        (x0_hat - x0) ** 2 - v * sp.exp(2 * big) * (e_hat - eps) ** 2,
        "(x0_hat - x0)^2 = v e^{2 Theta} (e_hat - e)^2",
    )
    _zero(
        v * sp.exp(2 * big) - lam**2 * (sp.exp(2 * big) - 1),
        "v_t e^{2 Theta_t} = lambda^2 (e^{2 Theta_t} - 1)",
    )
    s_hat = -e_hat / sp.sqrt(v)  # score_from_noise
    s_cond = -(x_t - mu - (x0 - mu) * a) / v  # the score of p(x_t | x_0)
    _zero((s_hat - s_cond) ** 2 - (e_hat - eps) ** 2 / v, "(s_hat - s)^2 = (e_hat - e)^2 / v_t")
    g2 = 2 * lam**2 * theta
    _zero(
        g2 * (s_hat - s_cond) ** 2 - g2 / v * (e_hat - eps) ** 2,
        "g^2 (s_hat - s)^2 = (g^2/v_t) (e_hat - e)^2",
    )


def check_gaussian_minimum() -> None:
    # x0 ~ N(m0, s0^2): (eps, x_t) jointly Gaussian, Cov = sqrt(v), Var x_t = V = a^2 s0^2 + v.
    V = a**2 * s0**2 + v
    cov = sp.sqrt(v)
    residual_var = 1 - cov**2 / V  # Var(eps | x_t), the smallest E(e_hat - e)^2
    _zero(residual_var - a**2 * s0**2 / V, "min E (e_hat - e)^2 = a^2 s0^2 / (a^2 s0^2 + v_t)")


def main() -> None:
    """Check every identity of `proofs/training.md`; raise `AssertionError` if one fails."""
    print("proofs/training.md")
    check_weights()
    check_gaussian_minimum()


if __name__ == "__main__":
    main()
