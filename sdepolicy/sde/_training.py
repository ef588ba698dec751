r"""Training a noise predictor on the SDE: draws of $(t, x_t, \varepsilon)$ and the denoising
loss with its weightings.

With $x_t = m_t(x_0) + \sqrt{v_t}\,\varepsilon$, a noise prediction $\hat\varepsilon$ gives
$\hat x_0$ and a score, and each error is the noise error scaled by a function of $t$ alone
(`proofs/training.md`):

$$\lVert \hat x_0 - x_0\rVert^2 = v_t e^{2\Theta_t}\,\lVert\hat\varepsilon - \varepsilon\rVert^2,
\qquad \lVert \hat s - \nabla\log p(x_t \mid x_0)\rVert^2 = \lVert\hat\varepsilon -
\varepsilon\rVert^2 / v_t,$$

so one loss, $\mathbb E\,[w(t)\lVert\hat\varepsilon - \varepsilon\rVert^2]$, trains for any of
them by the choice of $w$ (`loss_weight`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._typing import PRNGKey, RealScalarLike
from ._errors import SDEInputError
from ._mean_reverting import MeanRevertingSDE, ScoreFn
from ._samplers import static_horizon
from ._schedules import PiecewiseConstantSchedule

#: The weightings `loss_weight` knows.
WEIGHTINGS = ("noise", "x0", "score", "likelihood")


def loss_weight(
    sde: MeanRevertingSDE, *, t: RealScalarLike, weighting: str = "noise"
) -> Float[Array, ""]:
    r"""$w(t)$ such that $w(t)\lVert\hat\varepsilon - \varepsilon\rVert^2$ is the error that
    `weighting` names, at one time $t > 0$ (`jax.vmap` for many):

    - `"noise"`: $1$, noise matching (DDPM's simple loss, the policy's NML);
    - `"x0"`: $v_t e^{2\Theta_t} = \lambda^2(e^{2\Theta_t} - 1)$, the error of
        $\hat x_0$;
    - `"score"`: $1/v_t$, denoising score matching $\lVert\hat s - \nabla\log p(x_t \mid
        x_0)\rVert^2$;
    - `"likelihood"`: $\sigma(t)^2/v_t = 2\lambda^2\theta(t)/v_t$, the score error weighted by
        $g(t)^2 = \sigma(t)^2$ (Song, Durkan, Murray and Ermon 2021's likelihood weighting,
        whose time integral bounds the model's negative log-likelihood up to a constant).
    """
    if weighting not in WEIGHTINGS:
        raise SDEInputError(
            f"loss_weight: weighting must be one of {WEIGHTINGS}, got {weighting!r}."
        )
    if weighting == "noise":
        return jnp.ones_like(jnp.asarray(t, float))
    big = sde.schedule.cumulative(t)
    lam2 = sde.stationary_std**2
    if weighting == "x0":
        return lam2 * jnp.expm1(2 * big)
    v_t = lam2 * -jnp.expm1(-2 * big)
    if weighting == "score":
        return 1 / v_t
    return 2 * lam2 * sde.schedule.rate(t) / v_t


def draw_noised(
    sde: MeanRevertingSDE,
    x_0: Float[Array, "batch *shape"],
    key: PRNGKey,
    *,
    t_min: float | None = None,
    continuous: bool = False,
) -> tuple[Float[Array, " batch"], Float[Array, "batch *shape"], Float[Array, "batch *shape"]]:
    r"""One training draw per sample: $t$, $x_t = m_t(x_0) + \sqrt{v_t}\,\varepsilon$ and
    $\varepsilon \sim \mathcal N(0, I)$.

    $t$ is uniform on the grid times $1, \dots, N$ of a `PiecewiseConstantSchedule` (the
    posterior sampler's grid; as `DiffusionPolicy.draw_steps_and_noise`, whose steps are
    $t - 1$), or uniform on $[t_{min}, T]$ for a continuous schedule or with `continuous=True`
    ($t_{min}$ default $10^{-3}T$: the score and likelihood weights are infinite at 0).
    $t$ comes from the first half of `split(key)`, $\varepsilon$ from the second.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE` (its $\mu$ broadcasts against one sample).
    - `x_0`: a batch of data, the leading axis the batch.
    - `key`: PRNG key.
    - `t_min`, `continuous`: see above (keyword-only).

    **Returns:** `(t, x_t, eps)`, `t` of shape `(batch,)`.
    """
    horizon = static_horizon(sde)
    t_key, noise_key = jax.random.split(key)
    n, dtype = x_0.shape[0], x_0.dtype
    if isinstance(sde.schedule, PiecewiseConstantSchedule) and not continuous:
        steps = jax.random.randint(t_key, (n,), 0, int(sde.schedule.num_steps))
        t = (steps + 1).astype(dtype)
    else:
        low = 1e-3 * horizon if t_min is None else float(t_min)
        if not 0.0 <= low < horizon or not math.isfinite(low):
            raise SDEInputError(f"draw_noised: needs 0 <= t_min < T = {horizon}, got {low}.")
        t = jax.random.uniform(t_key, (n,), dtype, low, horizon)
    eps = jax.random.normal(noise_key, x_0.shape, dtype)

    def one(x0, tt, e):
        law = sde.marginal(x0, t=tt)
        return law.mean + jnp.sqrt(law.variance) * e

    return t, jax.vmap(one)(x_0, t, eps), eps


def denoising_loss(
    sde: MeanRevertingSDE,
    predict_noise: ScoreFn,
    x_0: Float[Array, "batch *shape"],
    key: PRNGKey,
    args: PyTree = None,
    *,
    weighting: str = "noise",
    t_min: float | None = None,
    continuous: bool = False,
    args_axis: int | None = None,
) -> Float[Array, ""]:
    r"""$\frac1B\sum_b w(t_b)\,\lVert\hat\varepsilon(t_b, x_{t_b}, \text{args}) -
    \varepsilon_b\rVert^2$ on one `draw_noised` draw, the squared norm summed over each
    sample's elements.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `predict_noise`: $\hat\varepsilon$ as `f(t, x, args)` for ONE sample (the calling
        convention; it is vmapped over the batch).
    - `x_0`: a batch of data.
    - `key`: PRNG key of the draw.
    - `args`: passed to `predict_noise` (e.g. the network's parameters or a condition).
    - `weighting`: a name of `loss_weight` (default `"noise"`).
    - `t_min`, `continuous`: as `draw_noised`.
    - `args_axis`: the batch axis of `args`' leaves when `args` is per sample (default `None`:
        shared).

    **Returns:** the scalar loss, differentiable in `args` and in an `eqx.Module` predictor's
    arrays.
    """
    t, x_t, eps = draw_noised(sde, x_0, key, t_min=t_min, continuous=continuous)
    eps_hat = jax.vmap(predict_noise, in_axes=(0, 0, args_axis))(t, x_t, args)
    weights = jax.vmap(lambda tt: loss_weight(sde, t=tt, weighting=weighting))(t)
    errors = jnp.sum((eps_hat - eps).reshape(eps.shape[0], -1) ** 2, axis=1)
    return jnp.mean(weights.astype(errors.dtype) * errors)
