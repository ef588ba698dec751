"""The checks of `sdepolicy.testing`: each recomputes a closed form from less than it uses."""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..sde import AbstractSchedule, MeanRevertingSDE
from ..sde._schedules import contract_probe_times, contract_violation


@dataclasses.dataclass(frozen=True)
class Case:
    r"""One test case: an SDE, two states of the same shape and times
    $0 \le s < u < t \le T$, $t > 0$.

    **Attributes:**

    - `sde`: the `MeanRevertingSDE` under test.
    - `x`: a state (the earlier one: $x_0$ or $x_s$).
    - `y`: another state (the later one, $x_t$).
    - `s`, `u`, `t`: times.
    """

    sde: MeanRevertingSDE
    x: ArrayLike
    y: ArrayLike
    s: float
    u: float
    t: float


class KitPrecisionError(RuntimeError):
    """The kit was run without float64: its tolerances (1e-9 and below) assume it."""


def _need_float64(case_or_schedule) -> None:
    sde = case_or_schedule.sde if isinstance(case_or_schedule, Case) else case_or_schedule
    dtypes = {
        np.dtype(leaf.dtype)
        for leaf in jax.tree_util.tree_leaves(sde)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    }
    if not jax.config.jax_enable_x64 or any(d != np.float64 for d in dtypes):
        raise KitPrecisionError(
            "sdepolicy.testing: the checks compare to rtol 1e-9 and need float64, but "
            + ("x64 is off" if not jax.config.jax_enable_x64 else f"the SDE holds {dtypes}")
            + ": run with jax.config.update('jax_enable_x64', True) (or inside "
            "`with jax.enable_x64(True):`) and build the schedule and the cases after it."
        )


def _theta(schedule, t) -> float:
    return float(schedule.cumulative(t))


def check_posterior(case: Case, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    r"""`sde.posterior(y, x, s=s, t=t)` against conditioning the joint Gaussian of $(x_s, x_t)$
    given $x_0 = x$ on $x_t = y$ with numpy (per element: the noise is isotropic)."""
    _need_float64(case)
    sde, x0, xt = case.sde, np.asarray(case.x), np.asarray(case.y)
    if case.s == case.t:
        return
    mu = np.broadcast_to(np.asarray(sde.mean, dtype=np.float64), x0.shape)
    lam2 = float(sde.stationary_std) ** 2
    th_s, th_t = _theta(sde.schedule, case.s), _theta(sde.schedule, case.t)
    v_s, v_t = lam2 * -np.expm1(-2 * th_s), lam2 * -np.expm1(-2 * th_t)
    cov_st = np.exp(-(th_t - th_s)) * v_s
    m_s = mu + (x0 - mu) * np.exp(-th_s)
    m_t = mu + (x0 - mu) * np.exp(-th_t)
    gain = cov_st / v_t
    want_mean = m_s + gain * (xt - m_t)
    want_var = v_s - gain * cov_st
    got = sde.posterior(jnp.asarray(xt), jnp.asarray(x0), s=case.s, t=case.t)
    np.testing.assert_allclose(got.mean, want_mean, rtol=rtol, atol=atol, err_msg="posterior mean")
    np.testing.assert_allclose(
        np.broadcast_to(got.variance, x0.shape),
        np.broadcast_to(want_var, x0.shape),
        rtol=rtol,
        atol=atol,
        err_msg="posterior variance",
    )


def check_transition(case: Case, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    r"""`sde.transition(x, s=s, t=t)` against a diffrax solve of the moment ODEs, which reads only
    `schedule.rate` (Tsit5, tolerances $10^{-10}$, the schedule's jumps given to the
    controller)."""
    _need_float64(case)
    sde, xs = case.sde, jnp.asarray(case.x)
    if case.t > case.s:
        m_ode, v_ode = _moment_solve(sde, xs, jnp.asarray(case.s), jnp.asarray(case.t))
    else:
        m_ode, v_ode = xs, jnp.zeros(())
    law = sde.transition(xs, s=case.s, t=case.t)
    np.testing.assert_allclose(law.mean, m_ode, rtol=rtol, atol=atol, err_msg="transition mean")
    np.testing.assert_allclose(law.variance, v_ode, rtol=rtol, atol=atol, err_msg="variance")


@eqx.filter_jit
def _moment_solve(sde, xs, s, t):
    # One compilation per schedule structure: the SDE's arrays and the times are traced.
    lam2 = sde.stationary_std**2
    mu = jnp.broadcast_to(sde.mean, xs.shape).astype(xs.dtype)

    def field(t, y, args):
        m, v = y
        theta = sde.schedule.rate(t).astype(xs.dtype)
        return theta * (mu - m), -2 * theta * v + 2 * lam2 * theta

    pid = diffrax.PIDController(rtol=1e-10, atol=1e-10)
    jumps = np.asarray(sde.schedule.jump_times)
    controller = (
        diffrax.ClipStepSizeController(pid, jump_ts=jnp.asarray(jumps)) if jumps.size else pid
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=s,
        t1=t,
        dt0=None,
        y0=(xs, jnp.zeros((), xs.dtype)),
        stepsize_controller=controller,
        max_steps=100_000,
    )
    return sol.ys[0][0], sol.ys[1][0]


def check_chapman_kolmogorov(case: Case, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    r"""$p(x_t \mid x_s) = \int p(x_t \mid x_u)\,p(x_u \mid x_s)\,dx_u$: the second transition
    read as an affine map at two points, composed with the first."""
    _need_float64(case)
    sde, xs = case.sde, jnp.asarray(case.x)
    mu = jnp.broadcast_to(sde.mean, xs.shape).astype(xs.dtype)
    first = sde.transition(xs, s=case.s, t=case.u)
    zero, one = sde.transition(mu, s=case.u, t=case.t), sde.transition(mu + 1.0, s=case.u, t=case.t)
    b = one.mean - zero.mean
    direct = sde.transition(xs, s=case.s, t=case.t)
    np.testing.assert_allclose(
        direct.mean, zero.mean + b * (first.mean - mu), rtol=rtol, atol=atol, err_msg="mean"
    )
    np.testing.assert_allclose(
        np.broadcast_to(direct.variance, xs.shape),
        np.broadcast_to(b**2 * first.variance + zero.variance, xs.shape),
        rtol=rtol,
        atol=atol,
        err_msg="variance",
    )


def check_cumulative(case: Case, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    r"""$\Theta_t = \int_0^t \theta$ by 20-point Gauss–Legendre quadrature on each piece between
    jumps, and $d\Theta/dt = \theta$ by `jax.grad` at $u$ (unless $u$ is a jump)."""
    _need_float64(case)
    schedule = case.sde.schedule
    jumps = [float(j) for j in np.asarray(schedule.jump_times) if 0 < j < case.t]
    nodes, weights = np.polynomial.legendre.leggauss(20)
    rate = jax.vmap(schedule.rate)
    total = 0.0
    for a, b in zip([0.0, *jumps], [*jumps, case.t], strict=True):
        if b <= a:
            continue
        ts = 0.5 * (b - a) * nodes + 0.5 * (a + b)
        total += 0.5 * (b - a) * float(jnp.sum(jnp.asarray(weights) * rate(jnp.asarray(ts))))
    np.testing.assert_allclose(
        schedule.cumulative(case.t), total, rtol=rtol, atol=atol, err_msg="cumulative"
    )
    u = float(case.u)
    if all(abs(u - j) > 1e-9 for j in np.asarray(schedule.jump_times)):
        grad = jax.grad(lambda v: schedule.cumulative(v))(jnp.asarray(u))
        np.testing.assert_allclose(grad, schedule.rate(u), rtol=1e-9, atol=atol, err_msg="rate")


def check_score(case: Case, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    r"""`sde.score(y, x, t=t)` equals $\nabla_y$ of $\log\mathcal N(y; m_t, v_t)$ written from
    $\Theta_t$ alone."""
    _need_float64(case)
    sde = case.sde
    x0, xt = jnp.asarray(case.x), jnp.asarray(case.y)
    big = _theta(sde.schedule, case.t)
    mu = jnp.broadcast_to(sde.mean, x0.shape).astype(x0.dtype)
    m = mu + (x0 - mu) * np.exp(-big)
    v = float(sde.stationary_std) ** 2 * -np.expm1(-2 * big)

    def log_density(y):
        return jnp.sum(-0.5 * (y - m) ** 2 / v - 0.5 * jnp.log(2 * np.pi * v))

    np.testing.assert_allclose(
        sde.score(xt, x0, t=case.t), jax.grad(log_density)(xt), rtol=rtol, atol=atol
    )


def check_schedule(case: Case | AbstractSchedule, num: int = 1025) -> None:
    r"""The contract every schedule must keep: $	heta(t) \ge 0$ and finite, $\Theta_0 = 0$,
    $\Theta$ non-decreasing, on `num` points of $[0, T]$, the rate's jumps and their
    one-sided neighbours, and (for a case) its times $s, u, t$. Takes a `Case` or a
    schedule alone (a schedule that breaks the contract cannot build an SDE: the SDE probes
    the same contract on a coarser grid and refuses it)."""
    schedule = case.sde.schedule if isinstance(case, Case) else case
    times = contract_probe_times(schedule, num)
    if isinstance(case, Case):
        times = np.concatenate([times, [case.s, case.u, case.t]])
    problem = contract_violation(schedule, times)
    if problem is not None:
        raise AssertionError(f"schedule contract: {type(schedule).__name__}: {problem}")


def check_all(case: Case) -> None:
    """Every check of the kit on one case."""
    _need_float64(case)
    check_schedule(case)
    check_posterior(case)
    check_transition(case)
    check_chapman_kolmogorov(case)
    check_cumulative(case)
    check_score(case)
