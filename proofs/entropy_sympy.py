r"""SymPy checks of `proofs/entropy.md`: the two entropy estimators of ER-DP-QE in closed form.

Per action dimension (the estimators sum over dimensions), with $\mu$, $\lambda$ general.
Paper estimator: $a = e^{-\Theta_1}$, $b = e^{-\Theta(1,T)}$. Reference estimator: $a' =
e^{-\Theta(1,2)}$, $b' = e^{-\Theta(2,T)}$, $\rho = 1 - \Theta(0,1)$ (its Euler step).
Noises $z_1, z_2, n$ are independent standard normals; expectations over them are taken exactly
by replacing monomials with Gaussian moments.

Run as `python proofs/entropy_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

x0, mu = sp.symbols("x0 mu", real=True)
lam = sp.Symbol("lambda", positive=True)
a, b = sp.symbols("a b", positive=True)  # e^{-Theta_1}, e^{-Theta(1,T)}: both in (0, 1)
z1, z2, n = sp.symbols("z1 z2 n", real=True)  # the estimators' standard normal noises
x_e, x_l = sp.symbols("x_e x_l", real=True)
NOISES = (z1, z2, n)


# --- building blocks ---------------------------------------------------------------------------


def gaussian_log_density(z, mean, var) -> sp.Expr:
    r"""$\log\mathcal N(z; m, v)$."""
    return -((z - mean) ** 2) / (2 * var) - sp.log(2 * sp.pi * var) / 2


def posterior_coefficients(a_, b_, lam_) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""$(c_t, c_x, \tilde\beta)$ of $p(x_s \mid x_t, x_r)$ with $a = e^{-\Theta(r,s)}$,
    $b = e^{-\Theta(s,t)}$: $\tilde\mu - \mu = c_t(x_t - \mu) + c_x(x_r - \mu)$."""
    one = 1 - a_**2 * b_**2
    return (1 - a_**2) * b_ / one, (1 - b_**2) * a_ / one, lam_**2 * (1 - a_**2) * (1 - b_**2) / one


def gaussian_expectation(expr: sp.Expr, noises=NOISES) -> sp.Expr:
    r"""$\mathbb E[\text{expr}]$ for a polynomial in independent standard normals."""
    poly = sp.Poly(sp.expand(expr), *noises)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        moment = sp.Integer(1)
        for p in powers:
            moment *= 0 if p % 2 else sp.factorial2(p - 1)
        total += coeff * moment
    return total


def _zero(expr: sp.Expr, what: str) -> None:
    """Assert a rational function (of the symbols and of fixed square roots) is identically 0."""
    residual = sp.cancel(sp.together(sp.expand(expr)))
    if residual != 0:
        residual = sp.simplify(residual)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def _zero_with_logs(expr: sp.Expr, what: str) -> None:
    """Assert `logs + rational` is identically 0: the rational part is reduced on its own, then
    exp(2 * (logs + rational)) must simplify to 1 (this clears the square roots of the logs)."""
    terms = sp.Add.make_args(sp.expand(expr, log=False))
    logs = sp.Add(*[t for t in terms if t.has(sp.log)])
    rest = sp.cancel(sp.together(sp.Add(*[t for t in terms if not t.has(sp.log)])))
    residual = sp.simplify(sp.exp(2 * logs) * sp.exp(2 * rest) - 1)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


# --- the paper's estimator ---------------------------------------------------------------------


def residual_coefficient(a_, b_) -> sp.Expr:
    r"""$\delta = a - c_x = a(1 - a^2)b^2/(1 - a^2b^2)$: the weight of $\hat a^0 - \mu$ in the
    residual $\hat a^1 - \tilde\mu$ when $a^T$ comes from the prior."""
    return a_ * (1 - a_**2) * b_**2 / (1 - a_**2 * b_**2)


def paper_coefficients(a_, b_, lam_, terminal: str) -> tuple[sp.Expr, sp.Expr]:
    r"""$(c_0, c_2)$ with $\mathbb E[H] = c_0 + c_2(\hat a^0 - \mu)^2$ per dimension."""
    c_t, _, beta = posterior_coefficients(a_, b_, lam_)
    if terminal == "forward":
        return sp.log(2 * sp.pi * sp.E * beta) / 2, sp.Integer(0)
    delta = residual_coefficient(a_, b_)
    return (
        sp.log(2 * sp.pi * beta) / 2 + (lam_**2 * (1 - a_**2) + c_t**2 * lam_**2) / (2 * beta),
        delta**2 / (2 * beta),
    )


def _paper_residual(terminal: str) -> sp.Expr:
    c_t, c_x, _ = posterior_coefficients(a, b, lam)
    a1 = mu + a * (x0 - mu) + lam * sp.sqrt(1 - a**2) * z1
    if terminal == "forward":
        aT = mu + b * (a1 - mu) + lam * sp.sqrt(1 - b**2) * z2
    else:
        aT = mu + lam * n
    return a1 - (mu + c_t * (aT - mu) + c_x * (x0 - mu))


def check_bayes_ratio_is_the_posterior() -> None:
    # p(a^T|a^1) p(a^1|a^0) / p(a^T|a^0) = N(a^1; mu_tilde, beta_tilde): quadratic in a^1.
    a1, aT = sp.symbols("a1 aT", real=True)
    c_t, c_x, beta = posterior_coefficients(a, b, lam)
    ratio = (
        gaussian_log_density(aT, mu + b * (a1 - mu), lam**2 * (1 - b**2))
        + gaussian_log_density(a1, mu + a * (x0 - mu), lam**2 * (1 - a**2))
        - gaussian_log_density(aT, mu + a * b * (x0 - mu), lam**2 * (1 - a**2 * b**2))
    )
    post = gaussian_log_density(a1, mu + c_t * (aT - mu) + c_x * (x0 - mu), beta)
    gap = sp.expand(ratio - post)
    _zero(sp.diff(gap, a1), "paper: the Bayes ratio and the posterior agree in a^1")
    _zero(sp.diff(gap, aT), "paper: ... and in a^T")
    _zero(sp.diff(gap, x0), "paper: ... and in a^0")
    _zero_with_logs(gap.subs({a1: 0, aT: 0, x0: 0, mu: 0}), "paper: normalisers agree")


def check_paper_forward() -> None:
    r = _paper_residual("forward")
    _, _, beta = posterior_coefficients(a, b, lam)
    _zero(sp.diff(r, x0), "paper/forward: the residual does not depend on a^0 (gradient 0)")
    _zero(sp.diff(r, mu), "paper/forward: nor on mu")
    _zero(gaussian_expectation(r**2) - beta, "paper/forward: the residual has variance beta")
    c0, c2 = paper_coefficients(a, b, lam, "forward")
    want = sp.log(2 * sp.pi * beta) / 2 + gaussian_expectation(r**2) / (2 * beta)
    _zero_with_logs(want - c0, "paper/forward: E[H] = log(2 pi e beta)/2")
    assert c2 == 0


def check_paper_prior() -> None:
    r = _paper_residual("prior")
    _, _, beta = posterior_coefficients(a, b, lam)
    delta = residual_coefficient(a, b)
    _zero(sp.diff(r, x0) - delta, "paper/prior: d(residual)/d(a^0) = delta")
    _zero(delta / b**2 - a * (1 - a**2) / (1 - a**2 * b**2),
          "paper/prior: delta ~ e^{-2Theta(1,T)}")
    mean_h = gaussian_expectation(r**2) / (2 * beta)  # plus log(2 pi beta)/2, free of a^0
    c0, c2 = paper_coefficients(a, b, lam, "prior")
    poly = sp.Poly(sp.expand(mean_h), x0)
    _zero(poly.coeff_monomial(x0**2) - c2,
          "paper/prior: E[H] quadratic coefficient delta^2/(2beta)")
    want_c0 = sp.log(2 * sp.pi * beta) / 2 + mean_h.subs(x0, mu)
    _zero_with_logs(want_c0 - c0, "paper/prior: E[H] constant")
    _zero(mean_h - mean_h.subs(x0, mu) - c2 * (x0 - mu) ** 2,
          "paper/prior: E[H] is c0 + c2(a0-mu)^2")


# --- the reference code's estimator ------------------------------------------------------------


def swapped_log_transition(xe, xl, decay, lam_, mu_) -> sp.Expr:
    r"""The reference's $\ell$ over a span with $e^{-\Theta}$ = `decay`:
    $-\tfrac12[\log 2\pi V + ((x_e - \mu) - (x_l - \mu)e^{-\Theta})^2/V]$,
    $V = \lambda^2(1 - e^{-2\Theta})$."""
    var = lam_**2 * (1 - decay**2)
    return -(sp.log(2 * sp.pi * var) + ((xe - mu_) - (xl - mu_) * decay) ** 2 / var) / 2


def log_transition(xe, xl, decay, lam_, mu_) -> sp.Expr:
    r"""The true $\log p(x_l \mid x_e)$ over a span with $e^{-\Theta}$ = `decay`."""
    return gaussian_log_density(xl, mu_ + (xe - mu_) * decay, lam_**2 * (1 - decay**2))


def check_swap_telescopes() -> None:
    e = sp.Symbol("e", positive=True)
    gap = swapped_log_transition(x_e, x_l, e, lam, mu) - log_transition(x_e, x_l, e, lam, mu)
    _zero(gap + ((x_e - mu) ** 2 - (x_l - mu) ** 2) / (2 * lam**2),
          "reference: swapped - true log-transition = -((x_e-mu)^2 - (x_l-mu)^2)/(2 lambda^2)")
    # In l(a1, aT) + l(a0, a1) - l(a0, aT) these differences cancel, whatever the time spans.
    p, q = sp.symbols("p q", real=True)
    d = lambda u, v: -((u - mu) ** 2 - (v - mu) ** 2) / (2 * lam**2)
    _zero(d(p, q) + d(x0, p) - d(x0, q), "reference: the swaps cancel in the Bayes ratio")


def reference_coefficients(a_, b_, rho, lam_) -> tuple[sp.Expr, sp.Expr]:
    r"""$(c_0, c_2)$ of the reference estimator per dimension: the paper's with times shifted by
    one ($a' = e^{-\Theta(1,2)}$, $b' = e^{-\Theta(2,T)}$) and $\hat a^1 = \mu + \rho(\hat a^0 -
    \mu)$: $c_2 = (\rho - c_x')^2/(2\tilde\beta')$, $c_0 = \tfrac12\log 2\pi\tilde\beta' +
    c_t'^2\lambda^2/(2\tilde\beta')$."""
    c_t, c_x, beta = posterior_coefficients(a_, b_, lam_)
    c0 = sp.log(2 * sp.pi * beta) / 2 + c_t**2 * lam_**2 / (2 * beta)
    return c0, (rho - c_x) ** 2 / (2 * beta)


def reference_coefficients_code_form(dec_a, dec_b, dec_c, euler, lam_) -> tuple[sp.Expr, sp.Expr]:
    r"""The form `reference_entropy_coefficients` computes, from the decays $e^{-\Theta}$ over
    $(\Theta(2,T), \Theta(1,2), \Theta(1,T))$ and the Euler increment $\Theta(0,1)$."""
    V = lambda dec: lam_**2 * (1 - dec**2)
    r = 1 - euler
    c2 = (r**2 / V(dec_a) + (1 - r * dec_b) ** 2 / V(dec_b) - 1 / V(dec_c)) / 2
    c0 = (
        sp.log(2 * sp.pi * V(dec_a) * V(dec_b) / V(dec_c)) / 2
        + lam_**2 * dec_a**2 / (2 * V(dec_a))
        - lam_**2 * dec_c**2 / (2 * V(dec_c))
    )
    return c0, c2


def check_reference_closed_form() -> None:
    # A = e^{-Theta(2,T)}, B = e^{-Theta(1,2)}, so e^{-Theta(1,T)} = AB.
    A, B, euler = sp.symbols("A B Theta_01", positive=True)
    rho = 1 - euler
    a1 = mu + rho * (x0 - mu)
    aT = mu + lam * n
    h = -(
        swapped_log_transition(a1, aT, A, lam, mu)
        + swapped_log_transition(x0, a1, B, lam, mu)
        - swapped_log_transition(x0, aT, A * B, lam, mu)
    )
    c_t, c_x, beta = posterior_coefficients(B, A, lam)
    shifted = -gaussian_log_density(a1, mu + c_t * (aT - mu) + c_x * (x0 - mu), beta)
    gap = sp.expand(h - shifted)
    for z in (x0, n, mu):
        _zero(sp.diff(gap, z), f"reference: equals -log p(x_2 = a1 | x_T, x_1 = a0) in {z}")
    _zero_with_logs(gap.subs({x0: 0, n: 0, mu: 0}), "reference: ... and in its normaliser")
    c0, c2 = reference_coefficients(B, A, rho, lam)
    mean_h = gaussian_expectation(sp.expand(h.subs(mu, 0)), (n,))
    poly = sp.Poly(sp.expand(mean_h), x0)
    _zero(poly.coeff_monomial(x0**2) - c2, "reference: E[H] quadratic coefficient")
    _zero(poly.coeff_monomial(x0), "reference: E[H] has no linear term (mu = 0)")
    _zero_with_logs(poly.coeff_monomial(1) - c0, "reference: E[H] constant")
    k0, k2 = reference_coefficients_code_form(A, B, A * B, euler, lam)
    _zero(k2 - c2, "reference: the code's c2 formula is the same")
    _zero_with_logs(k0 - c0, "reference: the code's c0 formula is the same")


# --- numbers for the T = 5 cosine grid (docs/method.md §2), computed here from the schedule's formula ------


def cosine_cumulative(T: int, prec: int = 30) -> list[sp.Float]:
    r"""$[\Theta_0, \dots, \Theta_T]$ of the reference's normalised cosine schedule (offset
    $s = 0.008$, $e^{-\Theta_T} = 10^{-3}$)."""
    s, terminal = sp.Rational(8, 1000), sp.Rational(1, 1000)
    f = [sp.cos(((sp.Integer(j) / (T + 1)) + s) / (1 + s) * sp.pi / 2) ** 2 for j in range(T + 2)]
    thetas = [1 - f[k + 1] / f[0] for k in range(T)]
    dt = -sp.log(terminal) / sum(thetas)
    cum = [sp.Integer(0)]
    for th in thetas:
        cum.append(cum[-1] + th * dt)
    return [sp.N(c, prec) for c in cum]


def t5_numbers() -> dict[str, sp.Float]:
    cum = cosine_cumulative(5)
    e = lambda th: sp.exp(-th)
    one = sp.Integer(1)
    c0_p, c2_p = paper_coefficients(e(cum[1]), e(cum[5] - cum[1]), one, "prior")
    c0_f, _ = paper_coefficients(e(cum[1]), e(cum[5] - cum[1]), one, "forward")
    rho = 1 - cum[1]
    c0_r, c2_r = reference_coefficients(e(cum[2] - cum[1]), e(cum[5] - cum[2]), rho, one)
    # The unshifted reading of the reference (true times 0, 1, T) for comparison.
    c0_u, c2_u = reference_coefficients(e(cum[1]), e(cum[5] - cum[1]), rho, one)
    return {
        "delta": sp.N(residual_coefficient(e(cum[1]), e(cum[5] - cum[1]))),
        "paper_prior_c0": sp.N(c0_p),
        "paper_prior_c2": sp.N(c2_p),
        "paper_forward_c0": sp.N(c0_f),
        "reference_c0": sp.N(c0_r),
        "reference_c2": sp.N(c2_r),
        "unshifted_c0": sp.N(c0_u),
        "unshifted_c2": sp.N(c2_u),
    }


def check_t5_numbers() -> None:
    v = t5_numbers()
    for k, x in v.items():
        print(f"  T=5 cosine: {k} = {float(x):.6g}")
    assert abs(v["delta"] - sp.Float("3.9755e-7")) < sp.Float("1e-10"), v["delta"]
    assert abs(v["paper_prior_c0"] - sp.Float("0.858975")) < 1e-6
    assert abs(v["paper_prior_c0"] - v["paper_forward_c0"]) < 1e-5
    assert 0 < v["paper_prior_c2"] < 1e-12
    # docs/method.md §5's constants, to the digits it gives.
    assert abs(v["reference_c0"] - sp.Float("0.779")) < 5e-4, v["reference_c0"]
    assert abs(v["reference_c2"] - sp.Float("0.0628")) < 5e-5, v["reference_c2"]
    # Without the index shift the constants would be far off: the shift is what docs/method.md describes.
    assert abs(v["unshifted_c0"] - sp.Float("0.779")) > 0.1
    assert abs(v["unshifted_c2"] - sp.Float("0.0628")) > 0.05
    print("  ok  T=5: delta ~ 4e-7, paper c0 ~ 0.8590; reference 0.779 d + 0.0628 |a0|^2")


def main() -> None:
    print("entropy estimators (proofs/entropy.md)")
    check_bayes_ratio_is_the_posterior()
    check_paper_forward()
    check_paper_prior()
    check_swap_telescopes()
    check_reference_closed_form()
    check_t5_numbers()


if __name__ == "__main__":
    main()
