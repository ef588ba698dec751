r"""SymPy checks of `proofs/ensemble_diversity.md`: the pairwise-sum identity for unit vectors,
the range of EDAC's per-sample term, the per-member gradient of the summed copies, and the zero
derivative of g/|g| in one dimension.

Run as `python proofs/ensemble_diversity_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp


def _zero(expr: sp.Expr, what: str) -> None:
    residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def check_identity(members: int) -> None:
    """§1 with unit vectors in the plane, u_m = (cos t_m, sin t_m), and §2's two ends."""
    t = sp.symbols(f"t0:{members}", real=True)
    u = [sp.Matrix([sp.cos(a), sp.sin(a)]) for a in t]
    pairwise = sum(u[m].dot(u[n]) for m in range(members) for n in range(members) if m != n)
    total = sum(u, sp.zeros(2, 1))
    _zero(sp.expand_trig(pairwise - (total.dot(total) - members)), f"§1 M = {members}")
    same = (total.dot(total) - members).subs({a: t[0] for a in t}) / (members - 1)
    _zero(same - members, f"§2 M = {members}: equal vectors give M")
    spread = {a: 2 * sp.pi * k / members for k, a in enumerate(t)}
    low = (total.dot(total) - members).subs(spread) / (members - 1)
    _zero(
        low + sp.Rational(members, members - 1), f"§2 M = {members}: a balanced star gives -M/(M-1)"
    )


def check_copies(members: int) -> None:
    """§3: d/da_m sum_n Q_n(a_n) = Q_m'(a_m) for arbitrary member functions."""
    a = sp.symbols(f"a0:{members}", real=True)
    q = [sp.Function(f"Q{m}") for m in range(members)]
    f = sum(q[n](a[n]) for n in range(members))
    for m in range(members):
        _zero(sp.diff(f, a[m]) - sp.diff(q[m](a[m]), a[m]), f"§3 member {m} of {members}")


def check_one_dimension() -> None:
    """§4: g/|g| has derivative 0 away from g = 0 (each sign separately)."""
    for sign, g in (
        ("g > 0", sp.symbols("g", positive=True)),
        ("g < 0", sp.symbols("g", negative=True)),
    ):
        _zero(sp.diff(g / sp.Abs(g), g), f"§4 d(g/|g|)/dg = 0 for {sign}")
        _zero(1 / sp.Abs(g) - g**2 / sp.Abs(g) ** 3, f"§4 1/|g| - g^2/|g|^3 = 0 for {sign}")


def main() -> None:
    print("proofs/ensemble_diversity.md")
    for members in (2, 3, 4):
        check_identity(members)
    check_copies(3)
    check_one_dimension()


if __name__ == "__main__":
    main()
