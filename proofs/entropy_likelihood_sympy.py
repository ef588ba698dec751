r"""SymPy and numeric checks of `proofs/entropy_likelihood.md`: the entropy of the posterior
chain, the lower bound `entropy="likelihood"` estimates, its gap, and its bias at T = 5.

Symbolic (per dimension; the SDE is isotropic and the Gaussian laws below decouple along the
eigenvectors of the data covariance):

1. the exact $x_0$-predictor of a Gaussian data law and its slope $e^{-\Theta_t}
   \operatorname{Var}(x_0 \mid x_t)/v_t \ge 0$ (the last step is monotone, hence injective);
2. for a two-level linear-Gaussian chain $z \to y$ with any Gaussian $q(z \mid y)$:
   $H(y) - [H(z, y) + \mathbb E \log q(z \mid y)] = \mathbb E_y\,\mathrm{KL}(p(z \mid y)\,\|\,
   q(z \mid y))$, the gap of the bound;
3. when $q(z \mid y)$ is the chain's own posterior, the per-sample log-ratio
   $-\log p(z) - \log p(y \mid z) + \log q(z \mid y)$ equals $-\log p(y)$ for every $(z, y)$;
4. the change of variables through the last step, $H(k y + c) = H(y) + \log|k|$.

Numeric (float64, the $T = 5$ cosine grid rebuilt here from the formulas of docs/method.md §2.1,
not from the library): the chain's exact entropy, the bound's expectation, the data law's and
the probability-flow ODE's entropies and the ODE cross-entropy at the chain's samples, for a
Gaussian data law $\mathcal N(m, s^2)$ with the exact predictor; every number quoted in the
derivation is asserted.

Run as `python proofs/entropy_likelihood_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp

x, y, z, c = sp.symbols("x y z c", real=True)
m = sp.Symbol("m", real=True)
s, e, lam = sp.symbols("s e lambda", positive=True)  # data std, e^{-Theta_t}, stationary std
A, D = sp.symbols("A D", real=True)  # slope of y on z; slope of q's mean on y
P, B, Q = sp.symbols("P B Q", positive=True)  # Var z, Var(y | z), Var of q(z | y)
k = sp.Symbol("k", positive=True)  # |slope| of the last step


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(sp.cancel(sp.together(sp.expand(expr))))
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def log_normal(u, mean, var) -> sp.Expr:
    r"""$\log\mathcal N(u; \text{mean}, \text{var})$."""
    return -((u - mean) ** 2) / (2 * var) - sp.log(2 * sp.pi * var) / 2


def entropy_normal(var) -> sp.Expr:
    return sp.log(2 * sp.pi * sp.E * var) / 2


def kl_normal(m1, v1, m2, v2) -> sp.Expr:
    r"""$\mathrm{KL}(\mathcal N(m_1, v_1)\,\|\,\mathcal N(m_2, v_2))$."""
    return (sp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2


# --- symbolic ------------------------------------------------------------------------------------


def check_gaussian_predictor() -> None:
    r"""$x_t = e x_0 + \lambda\sqrt{1 - e^2}\,\varepsilon$, $x_0 \sim \mathcal N(m, s^2)$:
    $E[x_0 \mid x_t] = m + s^2 e (x_t - e m)/(s^2e^2 + v)$, of slope
    $e\,\mathrm{Var}(x_0\mid x_t)/v$."""
    v = lam**2 * (1 - e**2)
    var_t = s**2 * e**2 + v
    cov = s**2 * e  # Cov(x0, x_t)
    pred = m + cov / var_t * (x - e * m)
    post_var = s**2 - cov**2 / var_t
    _zero(sp.diff(pred, x) - e * post_var / v, "exact predictor's slope = e Var(x0|x_t)/v_t")
    _zero(post_var - s**2 * v / var_t, "Var(x0|x_t) = s^2 v_t/(s^2 e^2 + v_t) > 0")


def check_gap_is_expected_kl() -> None:
    r"""$z \sim \mathcal N(0, P)$, $y = A z + \sqrt B\,\xi$, $q(z \mid y) = \mathcal N(D y, Q)$."""
    var_y = A**2 * P + B
    post_mean_slope, post_var = A * P / var_y, P * B / var_y
    h_joint = entropy_normal(P) + entropy_normal(B)
    # E (z - D y)^2 under the joint: P - 2 D A P + D^2 Var y.
    e_log_q = -(P - 2 * D * A * P + D**2 * var_y) / (2 * Q) - sp.log(2 * sp.pi * Q) / 2
    bound = h_joint + e_log_q
    # E_y KL: the mean difference (slope - D) y has second moment (slope - D)^2 Var y.
    kl = (sp.log(Q / post_var) + (post_var + (post_mean_slope - D) ** 2 * var_y) / Q - 1) / 2
    gap = sp.expand_log(entropy_normal(var_y) - bound - kl, force=True)
    _zero(gap, "H(y) - [H(z, y) + E log q(z|y)] = E_y KL(p(z|y) || q(z|y))")


def check_tight_per_sample() -> None:
    r"""With $q(z \mid y) = p(z \mid y)$ the log-ratio is $-\log p(y)$ at every $(z, y)$."""
    var_y = A**2 * P + B
    ratio = (
        -log_normal(z, 0, P)
        - log_normal(y, A * z, B)
        + log_normal(z, A * P / var_y * y, P * B / var_y)
    )
    _zero(
        sp.expand_log(ratio + log_normal(y, 0, var_y), force=True),
        "q = p(z|y): -log p(z) - log p(y|z) + log q(z|y) = -log p(y) per sample",
    )


def check_change_of_variables() -> None:
    r"""$y \sim \mathcal N(0, P)$, $a = k y + c$: $H(a) = H(y) + \log|k|$."""
    for slope in (k, -k):  # both signs of the slope
        got = entropy_normal(slope**2 * P) - entropy_normal(P) - sp.log(sp.Abs(slope))
        _zero(sp.expand_log(got, force=True), f"H(({slope}) y + c) = H(y) + log|{slope}|")


# --- numeric: the Gaussian chain at T = 5 --------------------------------------------------------


def cosine_cumulative(T: int = 5, s_off: float = 0.008) -> np.ndarray:
    r"""$\Theta_0..\Theta_T$ of the reference cosine grid (docs/method.md §2.1)."""
    xs = np.arange(T + 2)
    f = np.cos((xs / (T + 1) + s_off) / (1 + s_off) * np.pi / 2) ** 2
    alpha_bar = f / f[0]
    thetas = 1 - alpha_bar[1 : T + 1]
    dt = -math.log(1e-3) / thetas.sum()
    return np.concatenate([[0.0], np.cumsum(thetas * dt)])


def gaussian_chain(std: float, mean: float = 0.0, T: int = 5) -> dict[str, float]:
    r"""Every quantity of the derivation for data $\mathcal N(m, s^2)$, $\mu = 0$, $\lambda = 1$,
    the exact predictor, the posterior chain on the integer grid, one dimension.

    Each $x_t$ of the chain is affine in the independent standard normals
    $(x_T, \xi_T, \dots, \xi_2)$: `lin[t] @ noise + off[t]`, so all moments are exact.
    """
    th = cosine_cumulative(T)
    ex = np.exp(-th)
    v = 1 - ex**2
    lin = {T: np.eye(T)[0]}
    off = {T: 0.0}
    beta = {}
    for t in range(T, 0, -1):
        one_s, one_st, one_t = 1 - ex[t - 1] ** 2, 1 - np.exp(-2 * (th[t] - th[t - 1])), v[t]
        c_t = one_s * np.exp(-(th[t] - th[t - 1])) / one_t
        c_0 = one_st * ex[t - 1] / one_t
        beta[t] = one_s * one_st / one_t
        slope = std**2 * ex[t] / (std**2 * ex[t] ** 2 + v[t])
        lin[t - 1] = (c_t + c_0 * slope) * lin[t]
        off[t - 1] = (c_t + c_0 * slope) * off[t] + c_0 * (mean - slope * ex[t] * mean)
        if t >= 2:
            lin[t - 1] = lin[t - 1] + np.sqrt(beta[t]) * np.eye(T)[T - t + 1]
    var0 = float(lin[0] @ lin[0])
    out = {"data": 0.5 * math.log(2 * math.pi * math.e * std**2)}
    out["chain"] = 0.5 * math.log(2 * math.pi * math.e * var0)
    h_joint = 0.5 * math.log(2 * math.pi * math.e) + sum(
        0.5 * math.log(2 * math.pi * math.e * beta[t]) for t in range(2, T + 1)
    )
    e_log_q = 0.0
    for t in range(2, T + 1):
        d = math.exp(-(th[t] - th[t - 1]))
        qv = 1 - d**2
        r, rc = lin[t] - d * lin[t - 1], off[t] - d * off[t - 1]
        e_log_q += -0.5 * math.log(2 * math.pi * qv) - (r @ r + rc**2) / (2 * qv)
    slope1 = std**2 * ex[1] / (std**2 * ex[1] ** 2 + v[1])  # c_t = 0, c_0 = 1 at (0, 1)
    out["bound"] = h_joint + e_log_q + math.log(slope1)
    out["gap"] = out["chain"] - out["bound"]
    # The probability-flow ODE with the exact score from x_T ~ N(0, 1): for Gaussian data the
    # flow is affine, x_0 = m + s (x_T - m e_T) / sqrt(s^2 e_T^2 + v_T).
    ode_var = std**2 / (std**2 * ex[T] ** 2 + v[T])
    ode_mean = mean - std * mean * ex[T] / math.sqrt(std**2 * ex[T] ** 2 + v[T])
    out["ode"] = 0.5 * math.log(2 * math.pi * math.e * ode_var)
    out["ode_cross"] = 0.5 * math.log(2 * math.pi * ode_var) + (var0 + (off[0] - ode_mean) ** 2) / (
        2 * ode_var
    )
    out["chain_std"] = math.sqrt(var0)
    return out


def derivative(f, std: float, h: float = 1e-5) -> float:
    return (f(std + h) - f(std - h)) / (2 * h)


# Rows of the table in proofs/entropy_likelihood.md §5 (std, data, chain, bound, gap, ODE cross).
TABLE = {
    0.05: (-1.57679, -4.21475, -4.21475, 0.00000, -2.0742),
    0.1: (-0.88365, -2.84239, -2.84240, 0.00002, -1.3737),
    0.2: (-0.19050, -1.50948, -1.50972, 0.00024, -0.6547),
    0.3: (0.21497, -0.78005, -0.78121, 0.00116, -0.2167),
    0.5: (0.72579, 0.02885, 0.02085, 0.00800, 0.3498),
    1.0: (1.41894, 0.87867, 0.80126, 0.07741, 1.0886),
}


def check_t5_gaussian_numbers() -> None:
    th = cosine_cumulative()
    np.testing.assert_allclose(th[1:], [0.19749, 0.90145, 2.28727, 4.35043, 6.90776], atol=1e-5)
    print("  ok  cosine grid Theta_1..Theta_5 as docs/method.md §2.1")
    gaps = []
    for std, (data, chain, bound, gap, cross) in TABLE.items():
        got = gaussian_chain(std)
        np.testing.assert_allclose(
            [got["data"], got["chain"], got["bound"], got["gap"]],
            [data, chain, bound, gap],
            atol=1e-5,
        )
        np.testing.assert_allclose(got["ode_cross"], cross, atol=1e-4)
        assert got["ode_cross"] >= got["chain"], "a cross-entropy is at least the entropy"
        assert got["gap"] >= -1e-12, "the bound is a lower bound"
        # The ODE's law with the exact score is the data law up to e^{-Theta_T} = 1e-3.
        assert abs(got["ode"] - got["data"]) < 1e-5
        gaps.append(got["gap"])
        # The data mean moves nothing but O(e^{-Theta_T}) terms.
        shifted = gaussian_chain(std, mean=0.5)
        assert abs(shifted["chain"] - got["chain"]) < 1e-12
        assert abs(shifted["bound"] - got["bound"]) < 1e-5
    assert all(a <= b for a, b in zip(gaps, gaps[1:], strict=False)), "gap grows with the spread"
    print("  ok  T = 5 Gaussian table: data, chain, bound, gap >= 0, ODE cross-entropy")
    # Gradients at s = 0.3: d/ds of the chain's entropy and of the bound.
    d_chain = derivative(lambda u: gaussian_chain(u)["chain"], 0.3)
    d_bound = derivative(lambda u: gaussian_chain(u)["bound"], 0.3)
    np.testing.assert_allclose([d_chain, d_bound], [5.7394, 5.7244], atol=1e-3)
    print(f"  ok  d/ds at s = 0.3: chain {d_chain:.4f}, bound {d_bound:.4f} (data {1 / 0.3:.4f})")


def main() -> None:
    print("the policy's entropy through the posterior chain (proofs/entropy_likelihood.md)")
    check_gaussian_predictor()
    check_gap_is_expected_kl()
    check_tight_per_sample()
    check_change_of_variables()
    check_t5_gaussian_numbers()


if __name__ == "__main__":
    main()
