r"""A diffusion policy $\pi(a \mid s)$: a mean-reverting SDE over actions and a state-conditioned
noise predictor (ER-DP-QE; Diffusion-QL with the VP schedule).

Actions live in the unit box $[-1, 1]^d$ inside the policy; `ActionBox` maps them to and
from the environment's box. The SDE has $\mu = 0$, $\lambda = 1$ and a piecewise-constant
schedule on the integer grid $0..T$; diffusion time $t$ is the reference code's step $k = t - 1$.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._activations import mish
from .._typing import PRNGKey
from ..sde import (
    AbstractSchedule,
    MeanRevertingSDE,
    PosteriorSampler,
    constant_theta_schedule,
    cosine_schedule,
    linear_theta_schedule,
    normalised_schedule,
    vp_betas,
    vp_schedule,
)
from ._action_box import ActionBox
from ._losses import _check_loss_kind, mll_error, noise_matching_error
from ._networks import Denoiser

_UNIT = (-1.0, 1.0)

#: The names of the schedules `DiffusionPolicy.create` knows (the keys of `SCHEDULES`).
ScheduleName = Literal["cosine", "vp", "vp_normalised", "linear", "constant"]

#: Schedules `DiffusionPolicy.create` knows by name, as functions of the number of steps.
SCHEDULES = {
    "cosine": cosine_schedule,
    # Diffusion-QL's VP betas read as DDPM: Theta(i-1, i) = -1/2 log(1 - beta_i).
    "vp": vp_schedule,
    # The ER-DP-QE reference code's "vp": the same betas used as rates theta_k, then normalised
    # so that exp(-Theta_T) = 1e-3 like its other schedules.
    "vp_normalised": lambda n: normalised_schedule(vp_betas(n)),
    "linear": linear_theta_schedule,
    "constant": constant_theta_schedule,
}


def make_schedule(schedule: str | AbstractSchedule, num_steps: int) -> AbstractSchedule:
    """A schedule by name (see `SCHEDULES`) with `num_steps` steps, or `schedule` itself."""
    if isinstance(schedule, AbstractSchedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ValueError(
            f"Unknown schedule {schedule!r}; valid names are {', '.join(SCHEDULES)} "
            "(or pass an AbstractSchedule)."
        )
    return SCHEDULES[schedule](num_steps)


class OneStepPrediction(eqx.Module):
    r"""What one evaluation of the diffusion loss gives an agent (docs/method.md §4.3): the
    loss, and the denoiser's one-step prediction $\hat x_0$ at each sample's step (training
    never runs the chain for it).

    **Attributes:**

    - `loss`: the diffusion (behaviour-cloning) loss, averaged over the batch.
    - `x0`: $\hat x_0$ per sample, in the **unit** box and not clipped (what the entropy
        estimators read, `sdepolicy.policy.get_entropy_estimator`).
    - `action`: $\hat x_0$ clipped to the unit box and mapped to the **environment's** box
        (what a critic scores).
    - `steps`: each sample's step $k$ (diffusion time $t = k + 1$), for per-step weights of
        other loss terms.
    """

    loss: Float[Array, ""]
    x0: Float[Array, "batch action"]
    action: Float[Array, "batch action"]
    steps: Int[Array, " batch"]


class DiffusionPolicy(eqx.Module):
    r"""A diffusion policy: sample $a^T \sim \mathcal N(0, I)$, run the posterior sampler to
    $a^0$ with $\hat x_0$ predicted from the denoiser, map $a^0$ to the environment box.

    **Arguments:**

    - `sde`: the `MeanRevertingSDE` over unit-box actions (integer horizon $T$).
    - `denoiser`: the `Denoiser` $\varepsilon_\phi(k, a_t, s)$.
    - `box`: the environment's `ActionBox`.
    - `x0_clip`: clip $\hat x_0$ to $[-1, 1]$ at every sampler step (the reference codes'
        "action clip"; docs/method.md §9.4).

    Build one with `DiffusionPolicy.create`.
    """

    sde: MeanRevertingSDE
    denoiser: Denoiser
    box: ActionBox
    x0_clip: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        horizon = self.sde.horizon
        if float(horizon) != int(horizon) or horizon < 1:
            raise ValueError(
                "DiffusionPolicy: the schedule's horizon must be a positive integer, "
                f"got {horizon}."
            )
        if self.denoiser.action_dim != self.box.dim:
            raise ValueError(
                f"DiffusionPolicy: the denoiser has action_dim {self.denoiser.action_dim}, "
                f"the box has {self.box.dim}."
            )

    @classmethod
    def create(
        cls,
        state_dim: int,
        action_dim: int,
        action_low: Float[ArrayLike, " action"] | Sequence[float],
        action_high: Float[ArrayLike, " action"] | Sequence[float],
        *,
        key: PRNGKey,
        schedule: str | AbstractSchedule = "cosine",
        num_steps: int = 5,
        x0_clip: bool = False,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 16,
        activation: Callable[[Array], Array] = mish,
    ) -> DiffusionPolicy:
        """Build a policy with $\\mu = 0$, $\\lambda = 1$.

        **Arguments:**

        - `state_dim`, `action_dim`: sizes of states and actions.
        - `action_low`, `action_high`: the environment's action box.
        - `key`: PRNG key for the denoiser's initialisation.
        - `schedule`: a name in `SCHEDULES` (`"cosine"`, `"vp"`, `"vp_normalised"`,
            `"linear"`, `"constant"`) built with `num_steps` steps, or an `AbstractSchedule`
            with an integer horizon (then `num_steps` is ignored).
        - `num_steps`: $T$ (default 5).
        - `x0_clip`: see the class docstring.
        - `hidden`, `depth`, `time_dim`: the `Denoiser`'s sizes; `activation`: its
            activation (default `mish`).

        **Returns:** a `DiffusionPolicy`.
        """
        sde = MeanRevertingSDE(make_schedule(schedule, num_steps))
        denoiser = Denoiser(
            state_dim,
            action_dim,
            key=key,
            hidden=hidden,
            depth=depth,
            time_dim=time_dim,
            activation=activation,
        )
        return cls(sde, denoiser, ActionBox(action_low, action_high), x0_clip)

    @property
    def num_steps(self) -> int:
        """$T$, the number of diffusion steps."""
        return int(self.sde.horizon)

    @property
    def action_dim(self) -> int:
        return self.denoiser.action_dim

    @property
    def state_dim(self) -> int:
        return self.denoiser.state_dim

    def trainable_filter(self) -> PyTree[bool]:
        """The filter spec of the trained parameters, for `eqx.partition` / `eqx.filter`: True
        on the denoiser's floating arrays, False elsewhere (the SDE's schedule and the action
        box are fixed)."""
        spec = jax.tree.map(lambda _: False, self)
        return eqx.tree_at(
            lambda p: p.denoiser, spec, jax.tree.map(eqx.is_inexact_array, self.denoiser)
        )

    # --- one sample ----------------------------------------------------------------------

    def predict_noise(
        self, t: Float[Array, ""], x_t: Float[Array, " action"], state: Float[Array, " state"]
    ) -> Float[Array, " action"]:
        r"""$\hat\varepsilon = \varepsilon_\phi(t - 1, x_t, s)$ at diffusion time `t` (the
        network sees $k = t - 1$); a noise predictor `f(t, y, args)` with the state as `args`."""
        return self.denoiser(t - 1, x_t, state)

    def predict_x0(
        self, t: Float[Array, ""], x_t: Float[Array, " action"], state: Float[Array, " state"]
    ) -> Float[Array, " action"]:
        r"""$\hat x_0 = (x_t - \sqrt{v_t}\,\hat\varepsilon)\,e^{\Theta_t}$, clipped to
        $[-1, 1]$ when `x0_clip`."""
        x0 = self.sde.x0_from_noise(x_t, self.predict_noise(t, x_t, state), t=t)
        return jnp.clip(x0, *_UNIT) if self.x0_clip else x0

    # --- sampling --------------------------------------------------------------------------

    def sampler(self) -> PosteriorSampler:
        r"""The posterior sampler on the grid $0..T$: $\hat x_0$ clipped when `x0_clip`, output
        clipped to $[-1, 1]$."""
        return PosteriorSampler(
            self.sde,
            times=jnp.arange(self.num_steps + 1, dtype=float),
            x0_bounds=_UNIT if self.x0_clip else None,
            output_bounds=_UNIT,
        )

    def sample_unit(
        self, states: Float[Array, "batch state"], key: PRNGKey
    ) -> Float[Array, "batch action"]:
        r"""Sample one unit-box action per state with the posterior sampler.

        $a^T \sim \mathcal N(0, I)$ from the first half of `split(key)`, the chain's noise
        from the second. Differentiable in the parameters through the whole chain.

        **Arguments:**

        - `states`: a batch of states.
        - `key`: PRNG key.

        **Returns:** actions in $[-1, 1]^d$, one per state.
        """
        init_key, chain_key = jax.random.split(key)
        shape = (states.shape[0], self.action_dim)
        x_T = self.sde.prior(shape, states.dtype).sample(init_key)
        # The sampler clips x0 itself when asked, so hand it the unclipped prediction; a module
        # (not a fresh closure) so that eager calls hit the sampler's compilation cache. The
        # states travel as the sampler's `args`.
        return self.sampler()(_BatchedX0(self), x_T, chain_key, states)

    def sample(
        self, states: Float[Array, "batch state"], key: PRNGKey
    ) -> Float[Array, "batch action"]:
        """`sample_unit` mapped to the environment's action box."""
        return self.box.from_unit(self.sample_unit(states, key))

    # --- diffusion losses ------------------------------------------------------------------

    def loss(
        self,
        states: Float[Array, "batch state"],
        actions: Float[Array, "batch action"],
        key: PRNGKey,
        kind: str = "nml",
    ) -> tuple[Float[Array, ""], Float[Array, "batch action"]]:
        r"""The diffusion loss on a batch (docs/method.md §4), with random steps and noise.

        Draws $k \sim \mathcal U\{0..T-1\}$ per sample from the first half of `split(key)` and
        $\varepsilon \sim \mathcal N(0, I)$ from the second, then calls `loss_at`.

        **Arguments:**

        - `states`: a batch of states.
        - `actions`: the data actions, in the **environment** box.
        - `key`: PRNG key.
        - `kind`: `"nml"` (noise matching) or `"mll"` (IR-SDE maximum likelihood).

        **Returns:** `(bc_loss, x0_hat)`; `x0_hat` is in the **unit** box and not clipped.
        """
        prediction = self.loss_and_prediction(states, actions, key, kind)
        return prediction.loss, prediction.x0

    def loss_and_prediction(
        self,
        states: Float[Array, "batch state"],
        actions: Float[Array, "batch action"],
        key: PRNGKey,
        kind: str = "nml",
    ) -> OneStepPrediction:
        r"""`loss` with everything an agent's loss needs besides the loss: the one-step
        prediction $\hat x_0$ (unclipped in the unit box, and clipped in the environment's
        box) and the steps drawn (same arguments and draws as `loss`).

        **Returns:** a `OneStepPrediction`.
        """
        _check_loss_kind(kind)
        steps, noise = self.draw_steps_and_noise(actions, key)
        loss, x0 = self.loss_at(states, actions, noise, steps=steps, kind=kind)
        action = self.box.from_unit(jnp.clip(x0, *_UNIT))
        return OneStepPrediction(loss=loss, x0=x0, action=action, steps=steps)

    def x0_gain_inverse(self, steps: Int[Array, " batch"]) -> Float[Array, " batch"]:
        r"""$e^{-\Theta_t} / \sqrt{v_t}$ at each step's time $t = k + 1$: the inverse of
        $|\partial \hat x_0 / \partial \hat\varepsilon| = \sqrt{v_t}\,e^{\Theta_t}$, the factor
        by which the one-step prediction amplifies the network's output (0.70 to 1000 at
        $t = 1..5$ on the $T = 5$ cosine grid; docs/method.md §5.5)."""
        times = (steps + 1).astype(jnp.float32)
        theta = jax.vmap(self.sde.schedule.cumulative)(times)
        variance = jax.vmap(self.sde.marginal_variance)(times)
        return jnp.exp(-theta) / jnp.sqrt(variance)

    def entropy(
        self,
        estimator: str,
        states: Float[Array, "batch state"],
        x0: Float[Array, "batch action"],
        key: PRNGKey,
    ) -> Float[Array, " batch"]:
        r"""ER-DP-QE's entropy term per sample, by the estimator's name (docs/method.md §5).

        - `"reference"`, `"paper"`: estimates of $-\log\pi(\hat a^0 \mid s) + C$ from the
            one-step prediction `x0` (unclipped, unit box), one key per sample from
            `split(key, batch)` (`sdepolicy.policy.get_entropy_estimator`).
        - `"likelihood"`: the policy's own entropy at each state, by its posterior chain from
            fresh noise (`x0` is not used; `sdepolicy.policy.policy_entropy`).

        **Returns:** one estimate per sample (nats, summed over the action dimensions).
        """
        # Imported here: the entropy module builds on this one (`policy_entropy` takes a
        # DiffusionPolicy).
        from ._entropy import POLICY_ENTROPY_ESTIMATORS, get_entropy_estimator, policy_entropy

        if estimator in POLICY_ENTROPY_ESTIMATORS:
            return policy_entropy(self, states, key)
        per_sample = get_entropy_estimator(estimator)
        keys = jax.random.split(key, x0.shape[0])
        return jax.vmap(lambda x, k: per_sample(self.sde, x, k))(x0, keys)

    def draw_steps_and_noise(
        self, actions: Float[Array, "batch action"], key: PRNGKey
    ) -> tuple[Int[Array, " batch"], Float[Array, "batch action"]]:
        r"""The random draws of `loss`: $k \sim \mathcal U\{0..T-1\}$ per sample from the
        first half of `split(key)`, $\varepsilon \sim \mathcal N(0, I)$ from the second.

        **Returns:** `(steps, noise)`, to pass to `loss_at` as `loss_at(states, actions,
        noise, steps=steps)` (for a caller that needs the steps too, such as a per-step
        weighting of another loss term).
        """
        step_key, noise_key = jax.random.split(key)
        steps = jax.random.randint(step_key, (actions.shape[0],), 0, self.num_steps)
        noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
        return steps, noise

    def loss_at(
        self,
        states: Float[Array, "batch state"],
        actions: Float[Array, "batch action"],
        noise: Float[Array, "batch action"],
        *,
        steps: Int[Array, " batch"],
        kind: str = "nml",
    ) -> tuple[Float[Array, ""], Float[Array, "batch action"]]:
        r"""The diffusion loss for given noises $\varepsilon$ and steps $k$ (the steps, like
        every time, keyword-only).

        With $u^0$ the actions in the unit box and $t = k + 1$:
        $a_t = u^0 e^{-\Theta_t} + \sqrt{v_t}\,\varepsilon$, $\hat\varepsilon =
        \varepsilon_\phi(k, a_t, s)$, $\hat x_0 = (a_t - \sqrt{v_t}\hat\varepsilon)e^{\Theta_t}$;
        NML averages $(\hat\varepsilon - \varepsilon)^2$, MLL averages
        $(a_{\text{pred}} - \tilde\mu(a_t, u^0))^2$ (see `_losses.py`), over batch and action.

        **Returns:** `(bc_loss, x0_hat)` as in `loss`.
        """
        _check_loss_kind(kind)
        unit = self.box.to_unit(actions)
        times = (steps + 1).astype(unit.dtype)

        def per_sample(x_0, eps, t, state):
            law = self.sde.marginal(x_0, t=t)
            x_t = law.mean + jnp.sqrt(law.variance) * eps
            eps_hat = self.predict_noise(t, x_t, state)
            x0_hat = self.sde.x0_from_noise(x_t, eps_hat, t=t)
            if kind == "nml":
                error = noise_matching_error(eps_hat, eps)
            else:
                error = mll_error(self.sde, x_t, x_0, eps_hat, t=t)
            return error, x0_hat

        errors, x0_hat = jax.vmap(per_sample)(unit, noise, times, states)
        return jnp.mean(errors), x0_hat

    def _predict_x0_unclipped(self, t, x_t, state):
        return self.sde.x0_from_noise(x_t, self.predict_noise(t, x_t, state), t=t)


class _BatchedX0(eqx.Module):
    r"""The unclipped $\hat x_0$ of a batch, `f(t, x, states)`, as a pytree the sampler can
    cache on."""

    policy: DiffusionPolicy

    def __call__(self, t, x, states):
        batched = jax.vmap(self.policy._predict_x0_unclipped, in_axes=(None, 0, 0))
        return batched(t, x, states)
