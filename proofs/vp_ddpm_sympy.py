r"""SymPy checks of `proofs/vp_ddpm.md`: VP-SDE, DDPM and Diffusion-QL's VP betas as special
cases of the mean-reverting SDE with $\mu = 0$, $\lambda = 1$.

Run as `python proofs/vp_ddpm_sympy.py`; `main()` raises `AssertionError` on failure.
"""

from __future__ import annotations

import sympy as sp

x, x_s, x_0, x_i, eps = sp.symbols("x x_s x_0 x_i epsilon", real=True)
u, tau = sp.symbols("u tau", real=True)
i, T = sp.symbols("i T", positive=True)
beta_min, beta_max = sp.symbols("beta_min beta_max", positive=True)


def _zero(expr: sp.Expr, what: str) -> None:
    # cancel() settles rational identities fast; simplify() is the slower fallback.
    residual = sp.cancel(sp.together(expr))
    if residual != 0:
        residual = sp.simplify(expr)
    assert residual == 0, f"{what}: residual {residual} is not 0"
    print(f"  ok  {what}")


def posterior_coefficients(a_, b_) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""$(c_t, c_0, \tilde\beta)$ of `posterior.md` with $\lambda = 1$, $a = e^{-\Theta_s}$,
    $b = e^{-\Theta(s,t)}$."""
    one_t = 1 - a_**2 * b_**2
    return (1 - a_**2) * b_ / one_t, (1 - b_**2) * a_ / one_t, (1 - a_**2) * (1 - b_**2) / one_t


def increment_from_beta(beta_i) -> sp.Expr:
    r"""$\Theta(i-1, i) = -\tfrac12\ln(1 - \beta_i)$ (what `ddpm_schedule` computes)."""
    return -sp.log(1 - beta_i) / 2


def check_vp_sde() -> None:
    # Song et al.'s VP-SDE dx = -beta/2 x dt + sqrt(beta) dW against theta(mu - x), sigma^2 =
    # 2 lam^2 theta with mu = 0, lam = 1, theta = beta/2.
    theta, mu, lam = sp.Symbol("theta", positive=True), 0, 1
    beta = 2 * theta
    _zero(theta * (mu - x) - (-beta / 2 * x), "VP-SDE drift: theta(mu - x) = -beta x / 2")
    _zero(2 * lam**2 * theta - beta, "VP-SDE diffusion: sigma^2 = beta")
    # Its transition, N(x_s e^{-1/2 int beta}, 1 - e^{-int beta}), is the mean-reverting one.
    B = sp.Symbol("B", positive=True)  # int_s^t beta = 2 Theta(s, t)
    Th = B / 2
    _zero(x_s * sp.exp(-B / 2) - (mu + (x_s - mu) * sp.exp(-Th)), "VP-SDE transition mean")
    _zero((1 - sp.exp(-B)) - lam**2 * (1 - sp.exp(-2 * Th)), "VP-SDE transition variance")


def check_ddpm_one_step() -> None:
    beta_i = sp.Symbol("beta_i", positive=True)
    decay = sp.exp(-increment_from_beta(beta_i))
    # q(x_i | x_{i-1}) = N(sqrt(1 - beta_i) x_{i-1}, beta_i): decay^2 = 1 - beta_i, var = beta_i.
    _zero(decay**2 - (1 - beta_i), "DDPM step: e^{-2 Theta(i-1,i)} = 1 - beta_i = alpha_i")
    _zero((1 - decay**2) - beta_i, "DDPM step: transition variance = beta_i")
    _zero(
        sp.diff(increment_from_beta(beta_i), beta_i) - 1 / (2 * (1 - beta_i)),
        "DDPM step: Theta(i-1,i) increases with beta_i (derivative 1/(2(1-beta_i)) > 0)",
    )


def check_alpha_bar(num_steps: int = 6) -> None:
    betas = sp.symbols(f"beta_1:{num_steps + 1}", positive=True)
    for n in range(1, num_steps + 1):
        cumulative = sp.Add(*[increment_from_beta(b) for b in betas[:n]])
        alpha_bar = sp.Mul(*[1 - b for b in betas[:n]])
        _zero(
            sp.expand_log(sp.exp(-2 * cumulative), force=True) - alpha_bar,
            f"alpha_bar_{n} = prod(1 - beta_j) = e^(-2 Theta_{n})",
        )
    # The inductive step, for any i: e^{-2(Theta_{i-1} + Theta(i-1,i))} = alpha_bar_{i-1} alpha_i.
    prev, beta_i = sp.Symbol("Theta_prev", positive=True), sp.Symbol("beta_i", positive=True)
    _zero(
        sp.exp(-2 * (prev + increment_from_beta(beta_i))) - sp.exp(-2 * prev) * (1 - beta_i),
        "alpha_bar induction step: alpha_bar_i = alpha_bar_{i-1} (1 - beta_i)",
    )


def check_ddpm_posterior() -> None:
    # Ho et al. (2020), Eq. 7, with alpha_bar_prev = alpha_bar_{i-1}, alpha_i = 1 - beta_i.
    ab_prev, alpha_i = sp.symbols("alphabar_prev alpha_i", positive=True)
    beta_i, ab_i = 1 - alpha_i, ab_prev * alpha_i
    ddpm_c0 = sp.sqrt(ab_prev) * beta_i / (1 - ab_i)
    ddpm_ct = sp.sqrt(alpha_i) * (1 - ab_prev) / (1 - ab_i)
    ddpm_var = (1 - ab_prev) * beta_i / (1 - ab_i)
    # a = e^{-Theta_{i-1}} = sqrt(alpha_bar_{i-1}), b = e^{-Theta(i-1,i)} = sqrt(alpha_i).
    c_t, c_0, var = posterior_coefficients(sp.sqrt(ab_prev), sp.sqrt(alpha_i))
    _zero(ddpm_c0 - c_0, "DDPM posterior: x_0 coefficient sqrt(ab_{i-1}) beta_i / (1 - ab_i)")
    _zero(ddpm_ct - c_t, "DDPM posterior: x_i coefficient sqrt(alpha_i)(1 - ab_{i-1}) / (1 - ab_i)")
    _zero(ddpm_var - var, "DDPM posterior: variance (1 - ab_{i-1}) beta_i / (1 - ab_i)")
    _zero(ddpm_var.subs(ab_prev, 1), "DDPM posterior: variance 0 on the last step (ab_0 = 1)")


def check_ddpm_x0_from_noise() -> None:
    # Diffusion-QL's predict_start_from_noise: sqrt(1/ab) x_i - sqrt(1/ab - 1) eps, against
    # x0_hat = mu + (x_t - mu - sqrt(v_t) eps) e^{Theta_t} with mu = 0, lam = 1, e^{-2Theta_t} = ab.
    ab = sp.Symbol("alphabar", positive=True)
    ours = (x_i - sp.sqrt(1 - ab) * eps) / sp.sqrt(ab)
    theirs = sp.sqrt(1 / ab) * x_i - sp.sqrt(1 / ab - 1) * eps
    ours_e, theirs_e = (e.subs(ab, 1 / (1 + sp.Symbol("r", positive=True))) for e in (ours, theirs))
    _zero(ours_e - theirs_e, "DDPM x0 from noise equals x0_from_noise with mu = 0, lam = 1")


def vp_beta(i_, T_, bmin, bmax) -> sp.Expr:
    r"""Diffusion-QL:
    $\beta_i = 1 - \exp(-\beta_{min}/T - \tfrac12(\beta_{max}-\beta_{min})(2i-1)/T^2)$."""
    return 1 - sp.exp(-bmin / T_ - (bmax - bmin) * (2 * i_ - 1) / (2 * T_**2))


def check_diffusion_ql_vp_betas() -> None:
    # Song's continuous VP rate beta(tau) = bmin + (bmax - bmin) tau on tau in [0, 1], sampled on
    # the grid tau_i = i / T: 1 - beta_i = exp(-int_{(i-1)/T}^{i/T} beta).
    continuous = beta_min + (beta_max - beta_min) * tau
    step_integral = sp.integrate(continuous, (tau, (i - 1) / T, i / T))
    _zero(
        sp.log(1 - vp_beta(i, T, beta_min, beta_max)) + step_integral,
        "VP betas: 1 - beta_i = exp(-int beta(tau) over ((i-1)/T, i/T])",
    )
    # In SDE time t in [0, T]: theta(t) = beta(t/T) / (2T), a linear schedule from
    # bmin/(2T) to bmax/(2T); its integral over (i-1, i] is Theta(i-1, i) = -1/2 ln(1 - beta_i).
    start, end = beta_min / (2 * T), beta_max / (2 * T)
    linear_rate = start + (end - start) * u / T
    _zero(
        linear_rate - continuous.subs(tau, u / T) / (2 * T),
        "VP rate in SDE time: theta(t) = beta(t/T)/(2T)",
    )
    _zero(
        sp.integrate(linear_rate, (u, i - 1, i))
        - increment_from_beta(vp_beta(i, T, beta_min, beta_max)),
        "VP betas = LinearSchedule(bmin/(2T), bmax/(2T), horizon=T) on the integer grid",
    )
    # LinearSchedule.cumulative's closed form is the integral of its rate.
    t = sp.Symbol("t", positive=True)
    _zero(
        sp.integrate(linear_rate, (u, 0, t)) - (start * t + (end - start) * t**2 / (2 * T)),
        "LinearSchedule: Theta_t = a t + (b - a) t^2 / (2T)",
    )
    # Not normalised: Theta_T = sum_i -1/2 ln(1 - beta_i) = (bmin + bmax)/4 whatever T.
    n = sp.Symbol("n", integer=True, positive=True)
    total = sp.summation(
        increment_from_beta(vp_beta(i, n, beta_min, beta_max)).subs(i, u), (u, 1, n)
    )
    _zero(
        sp.expand_log(total, force=True) - (beta_min + beta_max) / 4,
        "VP: Theta_T = (bmin + bmax)/4",
    )
    # docs/method.md §2 values for T = 5, bmin = 0.1, bmax = 10.
    expected = [0.1959, 0.4588, 0.6358, 0.7549, 0.8350]
    for k, value in enumerate(expected, start=1):
        got = float(vp_beta(k, 5, sp.Rational(1, 10), 10))
        assert abs(got - value) < 6e-5, f"VP beta_{k} = {got}, docs/method.md says {value}"
    print("  ok  docs/method.md §2 VP betas for T = 5: 0.1959, 0.4588, 0.6358, 0.7549, 0.8350")


def main() -> None:
    """Check every identity of `proofs/vp_ddpm.md`; raise `AssertionError` on failure."""
    print("proofs/vp_ddpm.md")
    check_vp_sde()
    check_ddpm_one_step()
    check_alpha_bar()
    check_ddpm_posterior()
    check_ddpm_x0_from_noise()
    check_diffusion_ql_vp_betas()


if __name__ == "__main__":
    main()
