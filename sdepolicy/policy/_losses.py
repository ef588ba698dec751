r"""The two diffusion ("behaviour cloning") losses of ER-DP-QE, per sample (docs/method.md §4).

- **NML** (noise matching): regress $\hat\varepsilon$ onto the noise $\varepsilon$ that made
  $x_t$ from $x_0$.
- **MLL** (IR-SDE's "maximum likelihood" loss): take one noise-free Euler step of the reverse-time
  SDE from $x_t$ over the step $(t-1, t]$, with the score read off $\hat\varepsilon$, and regress
  it onto the posterior mean $\tilde\mu(x_t, x_0)$ of $p(x_{t-1} \mid x_t, x_0)$, the optimal
  reverse path.

These functions act on one sample (any array shape) at an integer diffusion time $t \ge 1$,
given keyword-only like every time of the closed forms; `DiffusionPolicy.loss` vmaps them over a
batch.
"""

from __future__ import annotations

from typing import Literal, get_args

from jaxtyping import Array, Float

from .._typing import RealScalarLike
from ..sde import MeanRevertingSDE

#: The diffusion losses by name: noise matching and IR-SDE's maximum likelihood.
LossKind = Literal["nml", "mll"]
#: The names `DiffusionPolicy.loss` accepts.
LOSS_KINDS = get_args(LossKind)


def mll_prediction(
    sde: MeanRevertingSDE,
    x_t: Float[Array, "*shape"],
    noise_pred: Float[Array, "*shape"],
    *,
    t: RealScalarLike,
) -> Float[Array, "*shape"]:
    r"""One Euler step of the reverse-time SDE from $t$ to $t - 1$, without noise.

    With the per-step integrated rate $\Theta(t-1, t)$ (the reference code's $\theta_k\,dt$,
    $k = t - 1$) and the predicted score $\hat s = -\hat\varepsilon/\sqrt{v_t}$:

    $$x_{\text{pred}} = x_t - \big[\Theta(t-1,t)\,(\mu - x_t)
        - 2\lambda^2\,\Theta(t-1,t)\,\hat s\big].$$

    With $\mu = 0$, $\lambda = 1$ this is the reference's
    $a_t - [-\theta_k a_t - 2\theta_k(-\hat\varepsilon/\sqrt{v_t})]\,dt$. For a piecewise-constant
    schedule it equals a unit Euler step of `sde.reverse_drift` evaluated at $t$.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `x_t`: the noisy sample at time `t`.
    - `noise_pred`: the predicted noise $\hat\varepsilon$.
    - `t`: the diffusion time (an integer $\ge 1$ on the reference grid, as a float).

    **Returns:** the predicted $x_{t-1}$.
    """
    dt = x_t.dtype
    increment = sde.schedule.integral(t - 1, t).astype(dt)
    score = sde.score_from_noise(noise_pred, t=t)
    mean = sde.mean.astype(dt)
    diffusion_sq = (2 * sde.stationary_std**2).astype(dt) * increment
    return x_t - (increment * (mean - x_t) - diffusion_sq * score)


def mll_target(
    sde: MeanRevertingSDE,
    x_t: Float[Array, "*shape"],
    x_0: Float[Array, "*shape"],
    *,
    t: RealScalarLike,
) -> Float[Array, "*shape"]:
    r"""The MLL regression target: the posterior mean $\tilde\mu$ of $p(x_{t-1} \mid x_t, x_0)$.

    $$\tilde\mu - \mu = \frac{(1 - e^{-2\Theta_{t-1}})e^{-\Theta(t-1,t)}(x_t - \mu) +
    (1 - e^{-2\Theta(t-1,t)})e^{-\Theta_{t-1}}(x_0 - \mu)}{1 - e^{-2\Theta_t}}.$$

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `x_t`: the noisy sample at time `t`.
    - `x_0`: the clean sample it was made from.
    - `t`: the diffusion time ($\ge 1$).

    **Returns:** $\tilde\mu$.
    """
    return sde.posterior(x_t, x_0, s=t - 1, t=t).mean


def noise_matching_error(
    noise_pred: Float[Array, "*shape"], noise: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    r"""Elementwise squared error $(\hat\varepsilon - \varepsilon)^2$ (NML; average it)."""
    return (noise_pred - noise) ** 2


def mll_error(
    sde: MeanRevertingSDE,
    x_t: Float[Array, "*shape"],
    x_0: Float[Array, "*shape"],
    noise_pred: Float[Array, "*shape"],
    *,
    t: RealScalarLike,
) -> Float[Array, "*shape"]:
    r"""Elementwise squared error $(x_{\text{pred}} - \tilde\mu)^2$ (MLL; average it).

    See `mll_prediction` and `mll_target`.
    """
    return (mll_prediction(sde, x_t, noise_pred, t=t) - mll_target(sde, x_t, x_0, t=t)) ** 2


def _check_loss_kind(kind: str) -> None:
    """Raise a `ValueError` naming the valid kinds unless `kind` is one of them."""
    if kind not in LOSS_KINDS:
        raise ValueError(
            f"Unknown diffusion loss kind {kind!r}; valid kinds are {', '.join(LOSS_KINDS)}."
        )
