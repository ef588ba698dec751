r"""Samplers that run a mean-reverting SDE backwards from its prior to data.

- `PosteriorSampler`: the "optimal" sampler of ER-DP-QE (and DDPM's ancestral sampler):
  on a grid $0 = t_0 < \dots < t_N$, step $x_{t_i} \to x_{t_{i-1}} \sim p(\cdot \mid x_{t_i},
  \hat x_0)$ with $\hat x_0$ predicted from $x_{t_i}$. A `lax.scan`: the hot path of training.
  With `eta < 1` the steps are DDIM's (`eta=0`: deterministic).
- `ReverseSDESampler`: the reverse-time SDE through `diffrax.diffeqsolve` with any SDE solver.
- `ProbabilityFlowSampler`: the probability-flow ODE with any diffrax ODE solver.

(`PredictorCorrectorSampler`, posterior or DDIM steps followed by Langevin steps, is in
`sdepolicy/sde/_predictor_corrector.py`.)

All are pure functions of their inputs and work under `jit`, `vmap` and `grad`. Their `__call__`
is wrapped in `eqx.filter_jit`: without it every eager call re-traces and re-compiles the scan or
the diffrax solve (seconds each). The predictor/score is then static *by identity* unless it is
an `eqx.Module` (whose arrays stay dynamic), so pass the same function or module object, not a
fresh closure per call, to hit the compilation cache; data it depends on (parameters, a state to
condition on) can travel in `args` instead.

One calling convention (README, "Calling convention"): every function a sampler calls is
diffrax's `f(t, y, args)`, and every sampler is called as `sampler(fn, x_T, key, args=None)`.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._typing import PRNGKey, RealScalarLike
from ._errors import SDEInputError, as_state, concrete, require
from ._mean_reverting import MeanRevertingSDE, ScoreFn
from ._schedules import PiecewiseConstantSchedule

#: Predicts $\hat x_0$ from diffusion time and state, diffrax's way: ``f(t, x_t, args) -> x0_hat``.
X0Predictor = Callable[[Float[Array, ""], Float[Array, "*shape"], Any], Float[Array, "*shape"]]

#: A sampler's start: any array-like (numbers, nested lists, numpy or jax arrays); integers and
#: booleans become the default float, half precision is refused (docs/sde.md).
StartLike = Float[ArrayLike, "*shape"] | Int[ArrayLike, "*shape"] | Sequence[Any]


class NoiseToX0(eqx.Module):
    r"""An $\hat x_0$ predictor made from a noise predictor:
    $\hat x_0 = \mu + (x - \mu - \sqrt{v_t}\,\hat\varepsilon(t, x, \text{args}))\,e^{\Theta_t}$.

    A module (a pytree), not a closure: its arrays are dynamic leaves, so the samplers'
    `filter_jit` reuses one compilation across calls and across parameter values of an
    `eqx.Module` noise predictor. Built by `noise_to_x0_predictor`.
    """

    sde: MeanRevertingSDE
    predict_noise: ScoreFn

    def __call__(
        self, t: RealScalarLike, x: Float[Array, "*shape"], args: PyTree = None
    ) -> Float[Array, "*shape"]:
        r"""$\hat x_0$ at `(t, x)`; `args` is passed on to the noise predictor."""
        # The unchecked formula: this runs at every step of a sampler, whose grid is checked
        # once per call instead (docs/sde.md, "What is checked").
        x = jnp.asarray(x)
        return self.sde._x0_from_noise(x, jnp.asarray(self.predict_noise(t, x, args)), t)


class NoiseToScore(eqx.Module):
    r"""A score made from a noise predictor: $-\hat\varepsilon(t, x, \text{args})/\sqrt{v_t}$
    (undefined at $t = 0$, where $v_0 = 0$: the ODE/SDE samplers refuse `t_end = 0` with one).
    Built by `noise_to_score`."""

    sde: MeanRevertingSDE
    predict_noise: ScoreFn

    def __call__(
        self, t: RealScalarLike, x: Float[Array, "*shape"], args: PyTree = None
    ) -> Float[Array, "*shape"]:
        """The score at `(t, x)`; `args` is passed on to the noise predictor."""
        x = jnp.asarray(x)
        noise = jnp.asarray(self.predict_noise(t, x, args)).astype(x.dtype)
        return self.sde._score_from_noise(noise, t)


def noise_to_x0_predictor(sde: MeanRevertingSDE, predict_noise: ScoreFn) -> NoiseToX0:
    r"""Turn a noise predictor $\hat\varepsilon(t, x, \text{args})$ into an $\hat x_0$
    predictor (a `NoiseToX0` module, so repeated sampler calls hit the compilation
    cache)."""
    return NoiseToX0(sde, predict_noise)


def noise_to_score(sde: MeanRevertingSDE, predict_noise: ScoreFn) -> NoiseToScore:
    r"""Turn a noise predictor into a score $-\hat\varepsilon/\sqrt{v_t}$ (a
    `NoiseToScore` module)."""
    return NoiseToScore(sde, predict_noise)


def static_horizon(sde: MeanRevertingSDE) -> float:
    """The schedule's horizon as a Python float (see `AbstractSchedule` on why it is
    static)."""
    horizon = sde.schedule.horizon
    if isinstance(horizon, jax.core.Tracer):
        raise SDEInputError(
            f"{type(sde.schedule).__name__}: the horizon is traced; declare it "
            "`horizon: float = eqx.field(static=True)`."
        )
    return float(horizon)


def _as_steps(value) -> int:
    """A step count: a positive integer (an integral float such as 4.0 is accepted; 2.7 is
    refused rather than truncated to 2)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SDEInputError(f"num_steps must be a positive integer, got {value!r}.")
    if int(value) != value or int(value) < 1:
        raise SDEInputError(
            f"num_steps must be a positive integer, got {value!r} (it is not rounded for you)."
        )
    return int(value)


def _as_arg_leaf(leaf):
    # Floats and numpy arrays become jax arrays, traced by the samplers' `filter_jit`: one
    # compilation for every value. Python ints, bools, strings and other objects stay static
    # (they may drive Python control flow): a new value compiles again.
    # Via numpy, so a Python float, a numpy scalar and a 0-d array give one (strong) dtype and
    # one compilation.
    if isinstance(leaf, float | complex | np.ndarray | np.floating | np.complexfloating):
        return jnp.asarray(np.asarray(leaf))
    return leaf


def _as_fn(fn):
    # A bound method of a module (`model.__call__`) is a new Python object per instance and
    # static under `filter_jit`, so every instance compiled again; as a `jtu.Partial` the
    # function is static (one per class) and the module's arrays are traced.
    if inspect.ismethod(fn) and isinstance(fn.__self__, eqx.Module):
        return jax.tree_util.Partial(fn.__func__, fn.__self__)
    return fn


def prepare_call(name: str, fn, x_T, args):
    """What every sampler does before its compiled body: `x_T` as a float32/float64 array
    (array-likes accepted), float and numpy leaves of `args` as arrays, a module's bound
    method as a pytree."""
    x_T = as_state(name, x_T)
    args = jax.tree_util.tree_map(_as_arg_leaf, args)
    return _as_fn(fn), x_T, args


def call_fn(name: str, what: str, fn, t, x, args):
    """`fn(t, x, args)` in the state's dtype and shape: the output is cast to `x.dtype` (the one
    dtype rule of the samplers) and must broadcast to `x.shape` (a static check)."""
    out = jnp.asarray(fn(t, x, args))
    if out.shape != x.shape:
        try:
            ok = np.broadcast_shapes(out.shape, x.shape) == x.shape
        except ValueError:
            ok = False
        if not ok:
            raise SDEInputError(
                f"{name}: {what} returned shape {out.shape} for a state of shape {x.shape}; it "
                "must return an array of the state's shape."
            )
        out = jnp.broadcast_to(out, x.shape)
    if not jnp.issubdtype(out.dtype, jnp.inexact):
        raise SDEInputError(f"{name}: {what} returned {out.dtype}; it must return floats.")
    return out.astype(x.dtype)


def _default_grid(sde: MeanRevertingSDE) -> Array:
    if not isinstance(sde.schedule, PiecewiseConstantSchedule):
        raise SDEInputError(
            f"PosteriorSampler: a {type(sde.schedule).__name__} is a continuous schedule with "
            "no grid of its own; pass `times`, e.g. jnp.linspace(0.0, sde.horizon, 101)."
        )
    return jnp.arange(int(sde.schedule.num_steps) + 1, dtype=float)


def _check_grid(times, horizon: float) -> None:
    """A sampler grid is 1-D, increasing, starts at 0 and ends at the horizon."""
    if times.ndim != 1 or times.shape[0] < 2:
        raise SDEInputError("PosteriorSampler: `times` must be 1-D with at least two entries.")
    t_np = concrete(times)
    if t_np is None:
        return
    if not np.all(np.isfinite(t_np)) or np.any(np.diff(t_np) <= 0):
        raise SDEInputError("PosteriorSampler: `times` must be finite and strictly increasing.")
    if t_np[0] != 0:
        raise SDEInputError(
            f"PosteriorSampler: `times` must start at 0 (the chain ends on the data), got "
            f"{t_np[0]}."
        )
    # float32 grids (e.g. linspace) may miss the horizon by rounding.
    if abs(t_np[-1] - horizon) > 1e-6 * max(1.0, horizon):
        raise SDEInputError(
            f"PosteriorSampler: `times` must end at the horizon T = {horizon} (where the prior "
            f"is the stationary law), got {t_np[-1]}."
        )


_STARTED = (
    "Theta = 0 at the first grid time t_1 > 0 (the schedule's rate is zero there, e.g. a "
    "leading zero increment of a PiecewiseConstantSchedule), so v_{t_1} = 0 and the last "
    "posterior step divides by zero (NaN); drop the zero increments or start the grid where "
    "Theta > 0"
)


@jax.jit
def _theta_at_first_step(schedule, times):
    return schedule.cumulative(times[1])


def _check_started(sde: MeanRevertingSDE, times) -> bool:
    r"""$\Theta_{t_1} > 0$ (hence $v_t > 0$ at every grid time but $t_0$), checked now when the
    schedule and the grid are concrete. Returns whether the grid was checked in full."""
    if isinstance(times, jax.core.Tracer):
        return False
    with jax.ensure_compile_time_eval():
        # compiled once per schedule structure: eager op-by-op evaluation cost ~0.6 ms per
        # sampler built (the policy builds one per `sample`)
        th = _theta_at_first_step(sde.schedule, times)
    th_np = concrete(th)
    if th_np is None:
        return False
    if not th_np > 0:
        raise SDEInputError(f"PosteriorSampler: {_STARTED}.")
    return True


def _grid_checked(name: str, sde: MeanRevertingSDE, times, horizon: float, x):
    """`x` carrying the checks of `_check_grid` and `_check_started` on traced values
    (a sampler built inside `jit`): once per call, outside the loop."""
    if not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves((sde, times))):
        return x
    th = sde.schedule.cumulative(times[1])
    conditions = [
        (
            jnp.all(jnp.isfinite(times)) & jnp.all(jnp.diff(times) > 0),
            "`times` must be finite and strictly increasing",
        ),
        (times[0] == 0, "`times` must start at 0"),
        (
            jnp.abs(times[-1] - horizon) <= 1e-6 * max(1.0, horizon),
            "`times` must end at the horizon",
        ),
        (th > 0, _STARTED),
    ]
    return require(name, x, conditions)


class PosteriorSampler(eqx.Module):
    r"""Ancestral sampling through the exact posterior $p(x_s \mid x_t, \hat x_0)$.

    For $i = N, \dots, 1$: $\hat x_0 = \text{predict}(t_i, x)$ (optionally clipped to
    `x0_bounds`), then $x \leftarrow \tilde\mu(x, \hat x_0) + \sqrt{\tilde\beta}\,z$ with
    $(s, t) = (t_{i-1}, t_i)$. The last step lands on $t_0 = 0$ where $\tilde\beta = 0$, so it
    is the posterior mean (no noise). Given the exact $\hat x_0 = E[x_0 \mid x_t]$ the marginals
    are exact only in the limit of a fine grid, and slowly: each step drops
    $c_0^2 \operatorname{Var}(x_0 \mid x_t)$ of variance, which sums to $O(h \log(1/h))$
    (for a Gaussian data law with $s_0 = 0.3$, $\lambda = 1.5$ and the cosine schedule the
    variance is 30% short at 200 steps); see `tests/sde/test_samplers.py` and
    `tests/sde/test_convergence.py`.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `times`: the increasing grid $0 = t_0 < t_1 < \dots < t_N = T$ (an array, a list or a
        numpy array; it must start at 0 and end at the horizon). Default: the integers $0..T$
        of a `PiecewiseConstantSchedule` (the reference code's discrete chain); a
        continuous schedule has no default and raises `SDEInputError` without `times`.
    - `x0_bounds`: `(low, high)` to clip $\hat x_0$ at every step, or `None`.
    - `output_bounds`: `(low, high)` to clip the returned sample, or `None`.
    - `eta`: $\eta \in [0, 1]$, keyword-only. The default 1 is the posterior (ancestral)
        step above; $\eta < 1$ takes the DDIM kernel `sde.ddim` instead, which re-uses the
        noise $\hat\varepsilon$ implied by $(x_t, \hat x_0)$ and adds noise of variance
        $\eta^2\tilde\beta$; $\eta = 0$ is deterministic (DDIM), a first-order exponential
        integrator of the probability-flow ODE (`proofs/ddim.md`).
    """

    sde: MeanRevertingSDE
    times: Float[Array, " n"]
    x0_bounds: tuple[float, float] | None = eqx.field(static=True)
    output_bounds: tuple[float, float] | None = eqx.field(static=True)
    eta: float = eqx.field(static=True)
    # Whether construction checked the whole grid (times and schedule concrete); if not, each
    # call checks it once, outside the loop.
    _grid_verified: bool = eqx.field(static=True, repr=False)

    def __init__(
        self,
        sde: MeanRevertingSDE,
        times: Float[ArrayLike, " n"] | Int[ArrayLike, " n"] | Sequence[float | int] | None = None,
        x0_bounds: tuple[float, float] | None = None,
        output_bounds: tuple[float, float] | None = None,
        *,
        eta: float = 1.0,
    ):
        self.sde = sde
        if times is None:
            times = _default_grid(sde)
        else:
            times = jnp.asarray(times)
            if not jnp.issubdtype(times.dtype, jnp.floating):
                times = times.astype(float)
        _check_grid(times, static_horizon(sde))
        self._grid_verified = _check_started(sde, times)
        self.times = times
        self.x0_bounds = None if x0_bounds is None else (float(x0_bounds[0]), float(x0_bounds[1]))
        self.output_bounds = (
            None if output_bounds is None else (float(output_bounds[0]), float(output_bounds[1]))
        )
        eta = float(eta)
        if not 0.0 <= eta <= 1.0:
            raise SDEInputError(f"PosteriorSampler: needs 0 <= eta <= 1, got eta = {eta}.")
        self.eta = eta

    def predict(
        self,
        predict_x0: X0Predictor,
        x_t: Float[Array, "*shape"],
        args: PyTree = None,
        *,
        t: RealScalarLike,
    ) -> Float[Array, "*shape"]:
        r"""$\hat x_0$ = `predict_x0(t, x_t, args)`, clipped to `x0_bounds` when they are set:
        what every step of this sampler (and a corrector built on it) sees."""
        x0_hat = call_fn("PosteriorSampler", "predict_x0", predict_x0, t, x_t, args)
        if self.x0_bounds is not None:
            x0_hat = jnp.clip(x0_hat, *self.x0_bounds)
        return x0_hat

    def step(
        self,
        predict_x0: X0Predictor,
        x_t: Float[Array, "*shape"],
        key: PRNGKey,
        args: PyTree = None,
        *,
        s: RealScalarLike,
        t: RealScalarLike,
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        r"""One step $x_t \to x_s$ ($s < t$, keyword-only like the closed forms); `args` is
        passed to `predict_x0(t, x_t, args)`. Returns `(x_s, x0_hat)`. The times are checked
        as the closed forms check theirs (`sde.posterior`)."""
        x_t = as_state("PosteriorSampler.step", x_t)
        return self._step(predict_x0, x_t, key, args, s, t, "PosteriorSampler.step")

    def _step(self, predict_x0, x_t, key, args, s, t, name: str | None = None):
        # `name=None`: unchecked, for the loop over a grid checked once.
        # Times may be Python numbers when a step is used on its own; the predictor is promised
        # a scalar array.
        s = jnp.asarray(s, x_t.dtype)
        t = jnp.asarray(t, x_t.dtype)
        x0_hat = self.predict(predict_x0, x_t, args, t=t)
        if self.eta == 1.0:
            law = self.sde._posterior(x_t, x0_hat, s, t, name)
        else:
            law = self.sde._ddim(x_t, x0_hat, s, t, self.eta, name)
        # sqrt has an infinite derivative at 0: mask the zero-variance final step explicitly so
        # gradients through the chain stay finite.
        positive = law.variance > 0
        std = jnp.where(positive, jnp.sqrt(jnp.where(positive, law.variance, 1.0)), 0.0)
        z = jax.random.normal(key, x_t.shape, x_t.dtype)
        return law.mean + std * z, x0_hat

    def __call__(
        self,
        predict_x0: X0Predictor,
        x_T: StartLike,
        key: PRNGKey,
        args: PyTree = None,
        *,
        return_path: bool = False,
    ) -> Float[Array, "*shape"] | tuple[Float[Array, "*shape"], Float[Array, " n *shape"]]:
        r"""Run the chain from `x_T` at $t_N$ down to $t_0$.

        `x_T` may be any array-like of float32 or float64 (numbers and lists become the
        default float); the chain and the result keep its dtype, and `predict_x0`'s output is
        cast to it. Float and numpy leaves of `args` are traced (one compilation for all their
        values); see `docs/sde.md`.

        **Arguments:**

        - `predict_x0`: $\hat x_0$ as a function `(t, x_t, args)`.
        - `x_T`: the starting point (e.g. `sde.prior(shape).sample(key)`).
        - `key`: PRNG key for the posterior noise.
        - `args`: passed to `predict_x0` (e.g. parameters or a state to condition on).
        - `return_path`: also return the states $x_{t_N}, \dots, x_{t_0}$ (stacked).

        **Returns:** the sample at $t_0$ (and the path if asked).
        """
        predict_x0, x_T, args = prepare_call("PosteriorSampler", predict_x0, x_T, args)
        return self._run(predict_x0, x_T, key, args, return_path)

    @eqx.filter_jit
    def _run(self, predict_x0, x_T, key, args, return_path: bool):
        if not self._grid_verified:
            x_T = _grid_checked("PosteriorSampler", self.sde, self.times, self.sde.horizon, x_T)
        times = self.times.astype(x_T.dtype)
        pairs = (times[:-1][::-1], times[1:][::-1])  # (s, t) from the top of the grid down
        keys = jax.random.split(key, times.shape[0] - 1)

        def body(x, inputs):
            s, t, k = inputs
            x_new, _ = self._step(predict_x0, x, k, args, s, t)
            return x_new, x_new

        x, path = jax.lax.scan(body, x_T, (*pairs, keys))
        if self.output_bounds is not None:
            x = jnp.clip(x, *self.output_bounds)
        if return_path:
            return x, jnp.concatenate([x_T[None], path], axis=0)
        return x


def _check_t_end(name: str, t_end: float, horizon: float) -> None:
    if not 0 <= t_end < horizon:
        raise SDEInputError(f"{name}: needs 0 <= t_end < T = {horizon}, got t_end = {t_end}.")


def _check_score_at_t_end(name: str, score_fn, t_end: float) -> None:
    # A score made from a noise predictor divides by sqrt(v_t) = 0 at t = 0, and the solvers
    # evaluate the vector field at the end of their last step: all NaN, silently.
    if isinstance(score_fn, NoiseToScore) and t_end <= 0:
        raise SDEInputError(
            f"{name}: a score from `noise_to_score` is -eps/sqrt(v_t), infinite at t = 0; set "
            "t_end > 0 (e.g. 1e-3 * T) and use the sample at t_end."
        )


def _step_grid(t0: float, t1: float, num_steps: int, jump_ts, dtype=None) -> np.ndarray | None:
    """Fixed steps from `t0` to `t1` that never evaluate the rate on the wrong side of a jump.

    A fixed-step solver evaluates the vector field at step endpoints. Where an endpoint is a
    jump $k$ of a piecewise-constant rate, $\theta(k)$ is the rate of one side only (the left,
    $(k-1, k]$), so the step on the other side uses the wrong rate: an O(h) local error that
    makes Heun first order. (For adaptive steps diffrax avoids this with
    `ClipStepSizeController(jump_ts=...)`, which does not accept `ConstantStepSize`.) Here each
    interior jump replaces nearby grid points by its two one-ulp neighbours (in the dtype of
    the solve's times), so every regular step lies on one side and the extra step across the
    jump is 2 ulp long. Returns `None` when there is no interior jump (plain constant steps).
    """
    lo, hi = min(t0, t1), max(t0, t1)
    jumps = [float(j) for j in np.asarray(jump_ts).reshape(-1) if lo < float(j) < hi]
    if not jumps:
        return None
    # The solve's time dtype: the state's (`_solve`), or the default float.
    dtype = np.dtype(jnp.result_type(float) if dtype is None else dtype)
    grid = np.linspace(t0, t1, num_steps + 1).astype(dtype)
    points = {dtype.type(t0), dtype.type(t1)}
    for g in grid[1:-1]:
        if all(abs(float(g) - j) > 8 * np.finfo(dtype).eps * max(1.0, abs(j)) for j in jumps):
            points.add(g)
    for j in jumps:
        jd = dtype.type(j)
        points.add(np.nextafter(jd, dtype.type(-np.inf)))
        points.add(np.nextafter(jd, dtype.type(np.inf)))
    return np.array(sorted(points, reverse=t0 > t1), dtype=dtype)


def _reverse_step_grid(horizon: float, t_end: float, num_steps: int, jump_ts, dtype=None):
    r"""`_step_grid` for the reverse SDE solved in $\tau = T - t$ from 0 to $T - t_{end}$.

    The vector field reads the rate at $t = T - \tau$, computed in the dtype of the solve's
    times, and one ulp of $\tau$ near $T - k$ can round back onto the jump $k$ itself. So the
    two points around each jump are moved away ulp by ulp until $T - \tau$ lands strictly on
    their own side of $k$. Returns `None` when there is no interior jump.
    """
    jumps = [float(j) for j in np.asarray(jump_ts).reshape(-1) if t_end < float(j) < horizon]
    if not jumps:
        return None
    dtype = np.dtype(jnp.result_type(float) if dtype is None else dtype)
    T, end = dtype.type(horizon), dtype.type(horizon - t_end)
    grid = np.linspace(0.0, horizon - t_end, num_steps + 1).astype(dtype)
    points = {dtype.type(0.0), end}
    for g in grid[1:-1]:
        if all(abs(float(g) - (horizon - j)) > 64 * np.finfo(dtype).eps * horizon for j in jumps):
            points.add(g)
    for j in jumps:
        jd, tau = dtype.type(j), dtype.type(horizon - j)
        before, after = tau, tau
        while not T - before > jd:  # before the jump in tau = above it in t
            before = np.nextafter(before, dtype.type(-np.inf))
        while not T - after < jd:
            after = np.nextafter(after, dtype.type(np.inf))
        points |= {before, after}
    return np.array(sorted(points), dtype=dtype)


def _solve(
    terms,
    solver,
    t0: float,
    t1: float,
    num_steps: int,
    x,
    *,
    args=None,
    controller=None,
    grid=None,
    saveat=None,
    adjoint=None,
) -> diffrax.Solution:
    # The solve's times have the state's dtype, so diffrax does not promote the state (a
    # float32 state under x64 stays float32: the samplers' one dtype rule, docs/sde.md).
    dtype = x.dtype
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    # `max_steps` must be finite: diffrax's default adjoint (RecursiveCheckpointAdjoint) needs a
    # bound to reverse-mode differentiate the solve, and the samplers promise to work under
    # `jax.grad`.
    if controller is None:
        if grid is None:
            # +2 guards against the last step being split by rounding of t0 + k*dt0.
            controller, dt0 = diffrax.ConstantStepSize(), (t1 - t0) / num_steps
            max_steps = num_steps + 2
        else:
            ts = jnp.asarray(grid, dtype)
            controller, dt0, max_steps = diffrax.StepTo(ts=ts), None, len(grid) + 1
    else:
        dt0, max_steps = (t1 - t0) / num_steps, 16 * num_steps + 4096
    return diffrax.diffeqsolve(
        terms,
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=x,
        args=args,
        saveat=saveat or diffrax.SaveAt(t1=True),
        stepsize_controller=controller,
        max_steps=max_steps,
        adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(),
    )


def levy_area_for(solver: diffrax.AbstractSolver) -> type:
    r"""The Brownian increment type a diffrax solver needs: `SpaceTimeTimeLevyArea`,
    `SpaceTimeLevyArea` (SEA, ShARK, SRA1, ...; they read the solver's `minimal_levy_area`) or
    the plain `BrownianIncrement` (Euler–Maruyama, Heun, Milstein, ...)."""
    need = getattr(solver, "minimal_levy_area", diffrax.AbstractBrownianIncrement)
    if issubclass(need, diffrax.AbstractSpaceTimeTimeLevyArea):
        return diffrax.SpaceTimeTimeLevyArea
    if issubclass(need, diffrax.AbstractSpaceTimeLevyArea):
        return diffrax.SpaceTimeLevyArea
    return diffrax.BrownianIncrement


def _under_reverse_mode(tree) -> bool:
    """Whether a leaf of `tree` is being linearised (`jax.grad`, `jax.vjp`, `jax.linearize`
    trace with `LinearizeTracer`s; forward mode with `JVPTracer`s). Seen only when the sampler
    is called directly under the transform, not inside a `jit` that the transform wraps."""
    from jax._src.interpreters import ad  # no public name for it

    linearize = getattr(ad, "LinearizeTracer", None)
    if linearize is None:  # pragma: no cover - another JAX
        return False
    return any(isinstance(leaf, linearize) for leaf in jax.tree_util.tree_leaves(tree))


def _path_or_sample(sol: diffrax.Solution, x_T, return_path: bool, bounds=None):
    x = sol.ys[-1]
    if bounds is not None:
        x = jnp.clip(x, *bounds)
    if return_path:
        return x, sol.ys
    return x


class ReverseSDESampler(eqx.Module):
    r"""Integrate the reverse-time SDE with any diffrax SDE solver, in forward time.

    The reverse SDE $dx = [\theta(\mu - x) - \sigma^2 s(t, x)]\,dt + \sigma\,d\bar W$ runs
    from $t = T$ down to `t_end`. diffrax's SDE solvers assume time increases (a solve with
    $t_0 > t_1$ is correct for Euler–Maruyama only: SEA and ShARK then give nonsense), so the
    sampler solves $y(\tau) = x(T - \tau)$,
    $dy = [\sigma^2 s - \theta(\mu - y)](T - \tau)\,d\tau + \sigma(T - \tau)\,dW_\tau$, from
    $\tau = 0$ to $T - t_{end}$ (`sde.reverse_terms`). The Brownian path carries the Lévy
    area the solver needs (`levy_area_for`), so `diffrax.SEA()`, `diffrax.ShARK()`,
    `diffrax.SRA1()` work as well as `diffrax.Euler()`. All of them treat the noise as
    additive, which it is ($\sigma$ depends on $t$ only), so Itô and Stratonovich solvers
    agree.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `num_steps`: number of (fixed) steps from $T$ to `t_end`. Where the rate jumps (a
        piecewise-constant schedule) the grid is split at the jump so that no step evaluates
        the rate across it (see `_reverse_step_grid`); this adds one tiny step per jump.
    - `solver`: any diffrax SDE solver (default `diffrax.Euler()`, i.e. Euler–Maruyama).
        `diffrax.ShARK()` (two score evaluations per step) is measured in
        `docs/convergence.md`.
    - `t_end`: where to stop (default 0; a score from `noise_to_score` needs `t_end > 0`).
    - `brownian`: `"virtual"` (a `VirtualBrownianTree`, any step size, reproducible) or
        `"unsafe"` (`UnsafeBrownianPath`, faster, fixed steps only, forward-mode AD only).
    - `levy_area`: the Brownian path's increment type; default `None`: what the solver
        needs.
    - `adjoint`: the diffrax adjoint (default `RecursiveCheckpointAdjoint()`, or
        `ForwardMode()` with `brownian="unsafe"`, the only one diffrax allows there).
    """

    sde: MeanRevertingSDE
    num_steps: int = eqx.field(static=True, converter=_as_steps)
    solver: diffrax.AbstractSolver = diffrax.Euler()
    t_end: float = eqx.field(static=True, default=0.0)
    brownian: str = eqx.field(static=True, default="virtual")
    levy_area: type | None = eqx.field(static=True, default=None)
    adjoint: diffrax.AbstractAdjoint | None = None

    def __check_init__(self):
        if self.num_steps < 1:
            raise SDEInputError("ReverseSDESampler: num_steps must be positive.")
        if self.brownian not in ("virtual", "unsafe"):
            raise SDEInputError("ReverseSDESampler: brownian must be 'virtual' or 'unsafe'.")
        _check_t_end("ReverseSDESampler", self.t_end, static_horizon(self.sde))

    def brownian_path(
        self, x_T: Float[Array, "*shape"], key: PRNGKey
    ) -> diffrax.AbstractBrownianPath:
        r"""The Brownian path over $\tau \in [0, T - t_{end}]$, with the Lévy area the solver
        needs."""
        span = static_horizon(self.sde) - self.t_end
        shape = jax.ShapeDtypeStruct(x_T.shape, x_T.dtype)
        levy = self.levy_area or levy_area_for(self.solver)
        if self.brownian == "virtual":
            tol = span / (4 * self.num_steps)
            dtype = x_T.dtype
            return diffrax.VirtualBrownianTree(
                jnp.asarray(0.0, dtype),
                jnp.asarray(span, dtype),
                tol=jnp.asarray(tol, dtype),
                shape=shape,
                key=key,
                levy_area=levy,
            )
        return diffrax.UnsafeBrownianPath(shape=shape, key=key, levy_area=levy)

    def save_times(self) -> Float[Array, " n"]:
        r"""The diffusion times $T = t_N > \dots > t_0 = t_{end}$ of `return_path`."""
        return jnp.linspace(static_horizon(self.sde), self.t_end, self.num_steps + 1)

    def solve(
        self,
        score_fn: ScoreFn,
        x_T: Float[Array, "*shape"],
        key: PRNGKey,
        args: PyTree = None,
        *,
        saveat: diffrax.SaveAt | None = None,
    ) -> diffrax.Solution:
        r"""The whole diffrax solution: `ys`, `stats` (step counts), `result`.

        `saveat` is in the solve's time $\tau = T - t$ (default: the end only). The solution's
        `ts` are in $\tau$ too; `sde.horizon - sol.ts` gives diffusion times.
        """
        _check_score_at_t_end("ReverseSDESampler", score_fn, self.t_end)
        T = static_horizon(self.sde)
        terms = self.sde.reverse_terms(score_fn, self.brownian_path(x_T, key))
        if self.brownian == "unsafe" and self.adjoint is None:
            # diffrax refuses to checkpoint through an UnsafeBrownianPath (it cannot be
            # replayed); forward mode is the only adjoint it supports.
            adjoint = diffrax.ForwardMode()
        else:
            adjoint = self.adjoint
        return _solve(
            terms,
            self.solver,
            0.0,
            T - self.t_end,
            self.num_steps,
            x_T,
            args=args,
            grid=_reverse_step_grid(
                T, self.t_end, self.num_steps, self.sde.schedule.jump_times, x_T.dtype
            ),
            saveat=saveat,
            adjoint=adjoint,
        )

    def __call__(
        self,
        score_fn: ScoreFn,
        x_T: StartLike,
        key: PRNGKey,
        args: PyTree = None,
        *,
        return_path: bool = False,
    ) -> Float[Array, "*shape"] | tuple[Float[Array, "*shape"], Float[Array, " n *shape"]]:
        r"""Sample at `t_end` starting from `x_T` at the horizon.

        `x_T`, `args` and the dtype rule as `PosteriorSampler.__call__`: the solve runs in
        `x_T`'s dtype (its times too) and `score_fn`'s output is cast to it.

        **Arguments:**

        - `score_fn`: the score $s(t, x, \text{args})$.
        - `x_T`: the starting point at $T$.
        - `key`: PRNG key of the Brownian path.
        - `args`: passed to `score_fn` (e.g. parameters or a state to condition on).
        - `return_path`: also return the states at `save_times` ($x_T$ first, the sample
            last), stacked.

        **Returns:** the sample at `t_end` (and the path if asked).
        """
        score_fn, x_T, args = prepare_call("ReverseSDESampler", score_fn, x_T, args)
        if self.brownian == "unsafe" and _under_reverse_mode((self, score_fn, x_T, args)):
            raise SDEInputError(
                "ReverseSDESampler: brownian='unsafe' (an UnsafeBrownianPath) supports "
                "forward-mode autodiff only, and this call is under reverse mode (jax.grad, "
                "jax.vjp); use jax.jacfwd / jax.jvp, or brownian='virtual' for jax.grad."
            )
        return self._run(score_fn, x_T, key, args, return_path)

    @eqx.filter_jit
    def _run(self, score_fn, x_T, key, args, return_path: bool):
        saveat = None
        if return_path:
            T = static_horizon(self.sde)
            saveat = diffrax.SaveAt(ts=(T - self.save_times()).astype(x_T.dtype))
        sol = self.solve(score_fn, x_T, key, args, saveat=saveat)
        return _path_or_sample(sol, x_T, return_path)


class ProbabilityFlowSampler(eqx.Module):
    r"""Integrate the probability-flow ODE $dx/dt = \theta(\mu - x) - \tfrac12\sigma^2 s(t,x)$
    from $T$ to `t_end` with any diffrax ODE solver.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE`.
    - `num_steps`: number of fixed steps (or the initial step count for an adaptive
        controller). Fixed steps are split at the rate's jumps as in `ReverseSDESampler`.
    - `solver`: a diffrax ODE solver (default `diffrax.Heun()`).
    - `t_end`: where to stop (default 0; a score from `noise_to_score` needs `t_end > 0`).
    - `stepsize_controller`: default `ConstantStepSize()`; for adaptive steps pass e.g.
        `diffrax.ClipStepSizeController(diffrax.PIDController(rtol, atol),
        jump_ts=sde.schedule.jump_times)` (diffrax >= 0.7 takes `jump_ts` there, not in the
        `PIDController`); the rate of a piecewise-constant schedule jumps at integer times.
    - `adjoint`: the diffrax adjoint (default `RecursiveCheckpointAdjoint()`; e.g.
        `diffrax.DirectAdjoint()`, or `diffrax.BacksolveAdjoint()` with an adaptive
        `stepsize_controller`: diffrax cannot backsolve through the fixed grid that is split
        at the rate's jumps, a `StepTo`).

    The solve runs backwards in time ($t_0 = T > t_1$), which diffrax's ODE solvers support.
    """

    sde: MeanRevertingSDE
    num_steps: int = eqx.field(static=True, converter=_as_steps)
    solver: diffrax.AbstractSolver = diffrax.Heun()
    t_end: float = eqx.field(static=True, default=0.0)
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    adjoint: diffrax.AbstractAdjoint | None = None

    def __check_init__(self):
        if self.num_steps < 1:
            raise SDEInputError("ProbabilityFlowSampler: num_steps must be positive.")
        _check_t_end("ProbabilityFlowSampler", self.t_end, static_horizon(self.sde))

    def save_times(self) -> Float[Array, " n"]:
        r"""The diffusion times $T = t_N > \dots > t_0 = t_{end}$ of `return_path`."""
        return jnp.linspace(static_horizon(self.sde), self.t_end, self.num_steps + 1)

    def solve(
        self,
        score_fn: ScoreFn,
        x_T: Float[Array, "*shape"],
        key: PRNGKey | None = None,
        args: PyTree = None,
        *,
        saveat: diffrax.SaveAt | None = None,
    ) -> diffrax.Solution:
        r"""The whole diffrax solution (`ys`, `ts` in diffusion time, `stats`, `result`);
        `saveat` default: the end only. `key` is accepted for a uniform signature and unused."""
        del key
        _check_score_at_t_end("ProbabilityFlowSampler", score_fn, self.t_end)
        T = static_horizon(self.sde)
        grid = None
        if self.stepsize_controller is None:
            grid = _step_grid(
                T, self.t_end, self.num_steps, self.sde.schedule.jump_times, x_T.dtype
            )
        return _solve(
            self.sde.probability_flow_term(score_fn),
            self.solver,
            T,
            self.t_end,
            self.num_steps,
            x_T,
            args=args,
            controller=self.stepsize_controller,
            grid=grid,
            saveat=saveat,
            adjoint=self.adjoint,
        )

    def __call__(
        self,
        score_fn: ScoreFn,
        x_T: StartLike,
        key: PRNGKey | None = None,
        args: PyTree = None,
        *,
        return_path: bool = False,
    ) -> Float[Array, "*shape"] | tuple[Float[Array, "*shape"], Float[Array, " n *shape"]]:
        r"""Transport `x_T` at the horizon to `t_end` (deterministic).

        **Arguments:** as `ReverseSDESampler.__call__`; `key` is accepted in the same
        position as the other samplers' and ignored (the flow is deterministic), so the three
        samplers are interchangeable.

        **Returns:** the sample at `t_end` (and the states at `save_times` if asked).
        """
        score_fn, x_T, args = prepare_call("ProbabilityFlowSampler", score_fn, x_T, args)
        return self._run(score_fn, x_T, key, args, return_path)

    @eqx.filter_jit
    def _run(self, score_fn, x_T, key, args, return_path: bool):
        saveat = diffrax.SaveAt(ts=self.save_times().astype(x_T.dtype)) if return_path else None
        sol = self.solve(score_fn, x_T, key, args, saveat=saveat)
        return _path_or_sample(sol, x_T, return_path)
