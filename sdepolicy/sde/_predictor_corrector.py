r"""A predictor–corrector sampler (Song et al., 2021): posterior (or DDIM) steps as the
predictor, Langevin steps at each new time as the corrector.

The corrector needs the score of $p_t$; an $\hat x_0$ predictor gives it by Tweedie's formula,
$\nabla\log p_t(x) = -(x - m_t(\hat x_0))/v_t$ when $\hat x_0 = E[x_0 \mid x_t = x]$, so the
same `f(t, x, args)` serves both halves. Derivations: `proofs/predictor_corrector.md`.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._typing import PRNGKey, RealScalarLike
from ._errors import SDEInputError, as_state
from ._mean_reverting import MeanRevertingSDE
from ._samplers import PosteriorSampler, StartLike, X0Predictor, _grid_checked, prepare_call


class PredictorCorrectorSampler(eqx.Module):
    r"""Posterior steps $t_i \to t_{i-1}$, each followed by `corrector_steps` Langevin steps at
    $t_{i-1} > 0$.

    One corrector step at time $t$, with $\hat x_0 = $ `predict_x0(t, x, args)`:

    $$x \leftarrow x + \delta\,\hat s + \sqrt{2\delta}\,z, \qquad
    \hat s = -\frac{x - \mu - e^{-\Theta_t}(\hat x_0 - \mu)}{v_t}, \qquad
    \delta = 2\,r^2 v_t,$$

    i.e. $x \leftarrow x - 2r^2 (x - m_t(\hat x_0)) + 2r\sqrt{v_t}\,z$ with $r$ = `snr`. The
    step size is Song et al.'s signal-to-noise rule $\delta = 2(r\lVert z\rVert/\lVert\hat
    s\rVert)^2$ with $\lVert\hat s\rVert$ replaced by its noise-level value
    $\lVert z\rVert/\sqrt{v_t}$: deterministic, so the chain stays affine for a Gaussian data
    law and its law can be computed exactly (`tests/sde/test_ddim_pc.py`). For a
    Gaussian $p_t = \mathcal N(M, V)$ with the exact score, the corrector alone converges to
    $\mathcal N(M, V/(1 - \delta/(2V)))$: unbiased in the mean, its variance too large by a
    factor that tends to 1 as $r \to 0$ (`proofs/predictor_corrector.md`).

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `times`: the grid, as `PosteriorSampler`'s (default: the integers $0..T$ of a
        piecewise-constant schedule).
    - `corrector_steps`: Langevin steps after each predictor step (default 1; 0 gives the
        plain predictor). None follows the last step, which lands on $t_0 = 0$.
    - `snr`: $r > 0$, with $2r^2 < 1$ (default 0.1).
    - `eta`: the predictor's $\eta$ (1: posterior steps, 0: DDIM steps).
    - `x0_bounds`, `output_bounds`: as `PosteriorSampler`; `x0_bounds` clips the
        corrector's $\hat x_0$ too.
    """

    predictor: PosteriorSampler
    corrector_steps: int = eqx.field(static=True)
    snr: float = eqx.field(static=True)

    def __init__(
        self,
        sde: MeanRevertingSDE,
        times: Float[ArrayLike, " n"] | Int[ArrayLike, " n"] | Sequence[float | int] | None = None,
        *,
        corrector_steps: int | float = 1,  # an integer; 1.5 is refused, not truncated
        snr: float = 0.1,
        eta: float = 1.0,
        x0_bounds: tuple[float, float] | None = None,
        output_bounds: tuple[float, float] | None = None,
    ):
        self.predictor = PosteriorSampler(sde, times, x0_bounds, output_bounds, eta=eta)
        if (
            isinstance(corrector_steps, bool)
            or int(corrector_steps) != corrector_steps
            or corrector_steps < 0
        ):
            raise SDEInputError(
                "PredictorCorrectorSampler: corrector_steps must be an integer >= 0, got "
                f"{corrector_steps!r}."
            )
        self.corrector_steps = int(corrector_steps)
        self.snr = float(snr)
        if not 0 < 2 * self.snr**2 < 1:
            raise SDEInputError(
                f"PredictorCorrectorSampler: needs snr > 0 with 2 snr^2 < 1, got snr = {snr}."
            )

    @property
    def sde(self) -> MeanRevertingSDE:
        return self.predictor.sde

    @property
    def times(self) -> Float[Array, " n"]:
        return self.predictor.times

    def correct(
        self,
        predict_x0: X0Predictor,
        x: Float[Array, "*shape"],
        key: PRNGKey,
        args: PyTree = None,
        *,
        t: RealScalarLike,
    ) -> Float[Array, "*shape"]:
        r"""`corrector_steps` Langevin steps at time $t > 0$ (keyword-only, like every time;
        checked as `sde.score` checks its time)."""
        x = as_state("PredictorCorrectorSampler.correct", x)
        x = self.sde._check_positive_variance("PredictorCorrectorSampler.correct", x, t)
        return self._correct(predict_x0, x, key, args, t)

    def _correct(self, predict_x0, x, key, args, t):
        dt = x.dtype
        t = jnp.asarray(t, dt)
        sde = self.sde
        mu = jnp.asarray(sde.mean, dt)
        decay = sde.decay(0.0, t).astype(dt)
        noise_std = (2 * self.snr * jnp.sqrt(sde.marginal_variance(t))).astype(dt)
        pull = 2 * self.snr**2

        def body(x, k):
            x0_hat = self.predictor.predict(predict_x0, x, args, t=t)
            m = mu + decay * (x0_hat - mu)
            z = jax.random.normal(k, x.shape, dt)
            return x - pull * (x - m) + noise_std * z, None

        x, _ = jax.lax.scan(body, x, jax.random.split(key, self.corrector_steps))
        return x

    def __call__(
        self,
        predict_x0: X0Predictor,
        x_T: StartLike,
        key: PRNGKey,
        args: PyTree = None,
    ) -> Float[Array, "*shape"]:
        r"""Run predictor and corrector from `x_T` at $t_N$ down to $t_0$.

        **Arguments:** as `PosteriorSampler.__call__` (`predict_x0(t, x, args)`, the start,
        a PRNG key, `args` passed to `predict_x0`).

        **Returns:** the sample at $t_0 = 0$ (in `x_T`'s dtype, the dtype rule of every
        sampler).
        """
        predict_x0, x_T, args = prepare_call("PredictorCorrectorSampler", predict_x0, x_T, args)
        return self._run(predict_x0, x_T, key, args)

    @eqx.filter_jit
    def _run(self, predict_x0, x_T, key, args):
        if not self.predictor._grid_verified:
            x_T = _grid_checked(
                "PredictorCorrectorSampler", self.sde, self.times, self.sde.horizon, x_T
            )
        times = self.times.astype(x_T.dtype)
        pairs = (times[:-1][::-1], times[1:][::-1])  # (s, t) from the top of the grid down
        n = times.shape[0] - 1
        step_keys, correct_keys = jax.random.split(key)
        step_keys = jax.random.split(step_keys, n)
        correct_keys = jax.random.split(correct_keys, n)
        step = self.predictor._step

        def body(x, inputs):
            s, t, k_step, k_correct = inputs
            x, _ = step(predict_x0, x, k_step, args, s, t)
            if self.corrector_steps:
                x = self._correct(predict_x0, x, k_correct, args, s)
            return x, None

        # Every step but the last (which lands on t_0 = 0, where v_0 = 0) is corrected.
        inputs = (pairs[0][:-1], pairs[1][:-1], step_keys[:-1], correct_keys[:-1])
        x, _ = jax.lax.scan(body, x_T, inputs)
        x, _ = step(predict_x0, x, step_keys[-1], args, pairs[0][-1], pairs[1][-1])
        bounds = self.predictor.output_bounds
        return x if bounds is None else jnp.clip(x, *bounds)
