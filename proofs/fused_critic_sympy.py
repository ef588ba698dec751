r"""SymPy checks of `proofs/fused_critic.md`: Mish with one exponential, its closed-form
derivative, and the written-out reverse-mode rule of a (one-member) Mish MLP and of the critics'
squared error, against SymPy's own differentiation.

Run as `python proofs/fused_critic_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

x = sp.symbols("x", real=True)


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def mish_one_exp(v):
    e = sp.exp(v)
    n = e * (e + 2)
    return v * n / (n + 2)


def mish_slope(v):
    e = sp.exp(v)
    n = e * (e + 2)
    d = n + 2
    return n / d + v * 4 * e * (e + 1) / d**2


def check_mish() -> None:
    textbook = x * sp.tanh(sp.log(1 + sp.exp(x)))
    _zero((textbook - mish_one_exp(x)).rewrite(sp.exp), "§1 x tanh(softplus x) = x n/(n+2)")
    _zero(sp.diff(mish_one_exp(x), x) - mish_slope(x), "§2 mish' = n/d + x 4e(e+1)/d^2")


fp = sp.Function("fp")  # the activation's derivative, left unspecified


class f(sp.Function):  # noqa: N801 (a SymPy function class)
    """A generic activation whose derivative is `fp`: the rule must hold for any activation."""

    def fdiff(self, argindex=1):
        return fp(self.args[0])


def check_backward(depth: int) -> None:
    """§3–4 on a 1-member MLP with 2 inputs, 2 units per hidden layer and a batch of 2, against
    SymPy's differentiation of the squared-error loss."""
    B, n_in, width = 2, 2, 2
    X = sp.Matrix(B, n_in, lambda i, k: sp.Symbol(f"x{i}{k}"))
    Ws = [
        sp.Matrix(width, n_in if j == 0 else width, lambda o, i, j=j: sp.Symbol(f"W{j}_{o}{i}"))
        for j in range(depth)
    ]
    bs = [sp.Matrix(width, 1, lambda o, _, j=j: sp.Symbol(f"b{j}_{o}")) for j in range(depth)]
    w = sp.Matrix(width, 1, lambda i, _: sp.Symbol(f"w{i}"))
    b_out = sp.Symbol("b_out")
    y = sp.Matrix(1, B, lambda _, i: sp.Symbol(f"y{i}"))
    s = sp.Symbol("s", positive=True)
    ones = sp.ones(B, 1)

    # Forward pass, feature-major: h_0 = x^T, z_j = W_j h_{j-1} + b_j 1^T, h_j = f(z_j).
    hs, zs = [X.T], []
    for W, b in zip(Ws, bs, strict=True):
        zs.append(W * hs[-1] + b * ones.T)
        hs.append(zs[-1].applyfunc(f))
    q = w.T * hs[-1] + b_out * ones.T
    loss = s * sum((q[0, i] - y[0, i]) ** 2 for i in range(B))

    # The written-out rule of §3-4.
    qbar = 2 * s * (q - y)
    rule = {
        "w": (hs[-1] * qbar.T, w),
        "b_out": (sp.Matrix([(qbar * ones)[0, 0]]), sp.Matrix([b_out])),
    }
    hbar = w * qbar
    for j in range(depth - 1, -1, -1):
        zbar = hbar.multiply_elementwise(zs[j].applyfunc(fp))
        rule[f"W{j}"] = (zbar * hs[j].T, Ws[j])
        rule[f"b{j}"] = (zbar * ones, bs[j])
        hbar = Ws[j].T * zbar
    rule["x"] = (hbar.T, X)

    for name, (got, params) in rule.items():
        want = params.applyfunc(lambda v: sp.diff(loss, v))
        for entry in got - want:
            assert sp.expand(entry) == 0, f"depth {depth}: d loss / d {name} differs: {entry}"
        print(f"  ok  §3-4 depth {depth}: d loss / d {name} by the written-out rule")


def main() -> None:
    print("proofs/fused_critic.md")
    check_mish()
    for depth in (1, 2):
        check_backward(depth)


if __name__ == "__main__":
    main()
