r"""SymPy checks of `proofs/predictor_corrector.md`: the Langevin corrector written with an
$\hat x_0$ predictor, and its stationary law for a Gaussian $p_t$.

Run as `python proofs/predictor_corrector_sympy.py`; `main()` raises `AssertionError` on
failure.
"""

from __future__ import annotations

import sympy as sp

x, mu, x_hat, z, M, w = sp.symbols("x mu xhat z M w", real=True)
a, v, r, V, delta = sp.symbols("a v r V delta", positive=True)


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(sp.cancel(sp.together(expr)))
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_step() -> None:
    # Score from x0_hat (Tweedie): -(x - mu - a (x0_hat - mu)) / v; step size 2 r^2 v.
    score = -(x - mu - a * (x_hat - mu)) / v
    step = 2 * r**2 * v
    langevin = x + step * score + sp.sqrt(2 * step) * z
    m = mu + a * (x_hat - mu)
    coded = x - 2 * r**2 * (x - m) + 2 * r * sp.sqrt(v) * z
    _zero(
        langevin - coded,
        "x + delta s + sqrt(2 delta) z = x - 2r^2 (x - m_t(x0_hat)) + 2r sqrt(v) z",
    )
    # Tweedie through the noise parametrisation: -E[eps | x]/sqrt(v) with
    # E[eps | x] = (x - mu - a (E[x0 | x] - mu)) / sqrt(v) (both maps affine).
    e_hat = (x - mu - a * (x_hat - mu)) / sp.sqrt(v)
    _zero(-e_hat / sp.sqrt(v) - score, "the same score as -eps_hat / sqrt(v_t)")


def check_gaussian_stationary_law() -> None:
    # Exact score -(x - M)/V: x' = (1 - delta/V) x + delta M / V + sqrt(2 delta) z.
    c = 1 - delta / V
    mean_fix = sp.solve(sp.Eq(w, c * w + delta * M / V), w)[0]
    _zero(mean_fix - M, "stationary mean = M")
    var_fix = sp.solve(sp.Eq(w, c**2 * w + 2 * delta), w)[0]
    want = V / (1 - delta / (2 * V))
    _zero(var_fix - want, "stationary variance = V / (1 - delta / (2V))")
    # The variance's distance to the fixed point shrinks by c^2 per step.
    _zero(
        (c**2 * w + 2 * delta - var_fix) - c**2 * (w - var_fix), "variance error * (1 - delta/V)^2"
    )
    # With delta = 2 r^2 v and v <= V (the data adds variance): |c| < 1 when 2 r^2 < 1.
    bound = sp.simplify((1 - 2 * r**2 * v / V).subs(v, V))
    _zero(bound - (1 - 2 * r**2), "at v = V the contraction is 1 - 2r^2")


def main() -> None:
    """Check every identity of `proofs/predictor_corrector.md`; raise `AssertionError` if not."""
    print("proofs/predictor_corrector.md")
    check_step()
    check_gaussian_stationary_law()


if __name__ == "__main__":
    main()
