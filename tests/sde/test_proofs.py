"""The proofs in `proofs/` keep holding, and the code implements what they prove.

- Every `proofs/*_sympy.py` (including ones added later) is imported by path and its `main()`
  run; a failed identity raises `AssertionError`.
- The index `proofs/README.md` points only at files that exist, and every SymPy script of the SDE
  floor has its derivation beside it.
- The closed forms the scripts check symbolically, evaluated numerically, agree with
  `MeanRevertingSDE` and the schedules (float64, strict promotion: `tests/sde/conftest.py`).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import sdepolicy.sde as sds

PROOFS = Path(__file__).resolve().parents[2] / "proofs"
SCRIPTS = sorted(PROOFS.glob("*_sympy.py"))
FLOOR = (
    "transition",
    "posterior",
    "vp_ddpm",
    "score_and_noise",
    "ddim",
    "predictor_corrector",
    "training",
)


@functools.cache
def _load(stem: str) -> ModuleType:
    path = PROOFS / f"{stem}_sympy.py"
    spec = importlib.util.spec_from_file_location(f"_proofs_{stem}", path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_sympy_proof_holds(script: Path, capsys):
    module = _load(script.stem.removesuffix("_sympy"))
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
    module.main()
    assert capsys.readouterr().out.strip(), f"{script.name} printed nothing it checked"


def test_floor_proofs_are_paired():
    for stem in FLOOR:
        assert (PROOFS / f"{stem}.md").is_file(), f"proofs/{stem}.md is missing"
        assert (PROOFS / f"{stem}_sympy.py").is_file(), f"proofs/{stem}_sympy.py is missing"


def test_readme_index_points_at_existing_files():
    text = (PROOFS / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links, "proofs/README.md links nothing"
    root = PROOFS.parent
    for link in links:
        if link.startswith("http"):
            continue
        target = (PROOFS / link).resolve()
        assert target.exists() or (root / link).exists(), f"proofs/README.md links missing {link}"
    for stem in FLOOR:
        assert f"{stem}_sympy.py" in text, f"{stem}_sympy.py is not in the index"


# --- the code computes the proven closed forms --------------------------------------------------


def _num(expr) -> float:
    return float(sympy.N(expr, 20))


# Built inside the tests, where the float64 fixture is active, not at collection time.
SCHEDULES = {
    "cosine": lambda: sds.cosine_schedule(5),
    "vp": lambda: sds.vp_schedule(5),
    "linear": lambda: sds.LinearSchedule(0.2, 1.5, horizon=2.0),
}
TIMES = [(0.0, 0.7), (0.4, 1.0), (1.0, 2.0), (1.3, 1.9)]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_code_matches_transition_and_posterior_proofs(name):
    tr, post = _load("transition"), _load("posterior")
    mu, lam, x_s, x_t, x_0 = 0.3, 1.7, -0.4, 0.9, 0.25
    sde = sds.MeanRevertingSDE(SCHEDULES[name](), mean=jnp.asarray(mu), stationary_std=lam)
    for s, t in TIMES:
        th_s, th_st = (float(sde.schedule.integral(0.0, s)), float(sde.schedule.integral(s, t)))
        a, b = sympy.exp(-sympy.Float(th_s, 20)), sympy.exp(-sympy.Float(th_st, 20))
        law = sde.transition(jnp.asarray(x_s), s=s, t=t)
        np.testing.assert_allclose(law.mean, _num(tr.transition_mean(x_s, mu, b)), rtol=1e-12)
        np.testing.assert_allclose(law.variance, _num(tr.transition_variance(lam, b)), rtol=1e-12)
        c_t, c_0, beta = post.posterior_coefficients(a, b, lam)
        got = sde.posterior(jnp.asarray(x_t), jnp.asarray(x_0), s=s, t=t)
        want_mean = post.posterior_mean(a, b, lam, x_t, x_0, mu)
        np.testing.assert_allclose(got.mean, _num(want_mean), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.variance, _num(beta), rtol=1e-12, atol=1e-14)
        coefs = sde.posterior_coefficients(s, t)
        np.testing.assert_allclose(
            coefs, [_num(c_t), _num(c_0), _num(beta)], rtol=1e-12, atol=1e-14
        )


def test_code_matches_score_and_noise_proof():
    sn = _load("score_and_noise")
    mu, lam, x_t, x_0, eps = 0.3, 1.7, 0.9, 0.25, -1.1
    sde = sds.MeanRevertingSDE(sds.cosine_schedule(5), mean=jnp.asarray(mu), stationary_std=lam)
    values = {sn.mu: mu, sn.lam: lam}
    for t in (0.5, 1.0, 3.2, 5.0):
        d = sympy.exp(-sympy.Float(float(sde.schedule.cumulative(t)), 20))
        want_x0 = sn.x0_from_noise(x_t, eps, d).subs(values)
        want_eps = sn.noise_from_x0(x_t, x_0, d).subs(values)
        m, v = (e.subs(values) for e in sn.marginal_moments(x_0, d))
        got_x0 = sde.x0_from_noise(jnp.asarray(x_t), jnp.asarray(eps), t=t)
        np.testing.assert_allclose(got_x0, _num(want_x0), rtol=1e-11)
        np.testing.assert_allclose(
            sde.noise_from_x0(jnp.asarray(x_t), jnp.asarray(x_0), t=t), _num(want_eps), rtol=1e-12
        )
        np.testing.assert_allclose(
            sde.score(jnp.asarray(x_t), jnp.asarray(x_0), t=t), _num(-(x_t - m) / v), rtol=1e-12
        )


def test_code_matches_vp_ddpm_proof():
    vp = _load("vp_ddpm")
    T, bmin, bmax = 5, 0.1, 10.0
    betas = [
        _num(vp.vp_beta(i, T, sympy.Float(bmin, 20), sympy.Float(bmax, 20)))
        for i in range(1, T + 1)
    ]
    np.testing.assert_allclose(sds.vp_betas(T, bmin, bmax), betas, rtol=1e-13)
    schedule = sds.vp_schedule(T, bmin, bmax)
    np.testing.assert_allclose(
        schedule.increments, [_num(vp.increment_from_beta(b)) for b in betas], rtol=1e-13
    )
    # The proof's LinearSchedule(bmin/(2T), bmax/(2T), horizon=T) has the same integer grid.
    linear = sds.LinearSchedule(bmin / (2 * T), bmax / (2 * T), horizon=float(T))
    grid = jnp.arange(T + 1, dtype=float)
    np.testing.assert_allclose(linear.grid(grid), schedule.increments, rtol=1e-12)
    # DDPM posterior coefficients (Ho et al., Eq. 7) from the code's posterior.
    sde = sds.MeanRevertingSDE(schedule)
    alpha_bar = np.cumprod(1 - np.asarray(betas))
    for i in range(2, T + 1):
        ab_prev, ab, beta_i = alpha_bar[i - 2], alpha_bar[i - 1], betas[i - 1]
        want = (
            np.sqrt(1 - beta_i) * (1 - ab_prev) / (1 - ab),
            np.sqrt(ab_prev) * beta_i / (1 - ab),
            (1 - ab_prev) * beta_i / (1 - ab),
        )
        np.testing.assert_allclose(sde.posterior_coefficients(i - 1.0, float(i)), want, rtol=1e-12)
