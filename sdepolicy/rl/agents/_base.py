r"""What every agent shares: its state, its optimisers, the target-network rules, and the one
update step.

An agent is an `eqx.Module` holding its config (a frozen dataclass, so an agent is hashable and
can be a static argument of `jax.jit`; its class is the agent's `config_class`). It states only
what is its own:

- its networks: its policy's SDE (`AbstractAgent.actor_schedule`) and, for an actor-critic
  agent, its ensemble's size and initialisation (`AbstractActorCritic.critic_ensemble`);
- its actor loss (`AbstractAgent.actor_loss`) and its action selection
  (`AbstractAgent.act`);
- for an actor-critic agent, how its TD target reads the target ensemble
  (`AbstractActorCritic.bootstrap`) and its critic loss on the squared TD errors
  (`AbstractActorCritic.critic_loss`).

`AbstractAgent.init` and `AbstractAgent.update` are the same for all agents. One update,
in the reference codes' order (docs/method.md §6.4):

1. **Critic** (actor-critic agents): the agent's TD targets, then one optimiser step on its
   critic loss (the Q-ensemble's own backward, `QEnsemble.regression_loss`);
2. **Actor**, against the freshly updated critic: one optimiser step on the agent's actor loss;
3. **EMA actor** every `ema_every` steps from `ema_start` on (before it: the initial actor, as
   the reference code's `step_ema`);
4. **Polyak** average of the critic target with rate `tau`, every step.

Both optimisers are Adam after global-norm clipping (no clipping when `grad_norm` is 0).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PyTree, UInt32

from ..._activations import mish
from ..._typing import PRNGKey, RealScalarLike
from ...policy import DiffusionPolicy
from .._critics import Activation, AutodiffBackward, QEnsemble
from .._fused_critic import FusedBackward
from .._pessimism import Aggregate
from .._selection import select_actions
from .._transitions import Transitions

Metrics = dict[str, Float[Array, ""]]

#: The names of `AbstractAgent.init`'s `critic_backward`: how the critics are differentiated,
#: `"fused"` (the hand-written backward pass, faster) or `"autodiff"` (the straightforward code;
#: the same maths, see `sdepolicy.rl.FusedBackward`). Not a hyper-parameter: tests and
#: benchmarks compare the two.
CriticBackwardName = Literal["fused", "autodiff"]
#: The Q-ensemble backward each name stands for.
CRITIC_BACKWARDS = {"fused": FusedBackward(), "autodiff": AutodiffBackward()}


class AgentState(eqx.Module):
    r"""The state of an agent: parameters, optimiser states, targets, step counter and key.

    **Attributes:**

    - `actor`: the online diffusion policy (trained; samples evaluation candidates).
    - `ema_actor`: its exponential moving average (samples the TD targets' next actions).
    - `critic`, `target_critic`: the Q-ensemble and its Polyak average (None for BC).
    - `actor_opt_state`, `critic_opt_state`: optax states (the critic's None for BC).
    - `step`: number of updates done so far.
    - `key`: the agent's own PRNG key (raw `uint32[2]`, so checkpoints serialise it as is).
    """

    actor: DiffusionPolicy
    ema_actor: DiffusionPolicy
    critic: QEnsemble | None
    target_critic: QEnsemble | None
    actor_opt_state: PyTree
    critic_opt_state: PyTree
    step: Int[Array, ""]
    key: UInt32[Array, "2"]


def raw_key(key: PRNGKey) -> UInt32[Array, "2"]:
    """A new-style key as its raw `uint32[2]` data (raw keys pass through)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def cosine_every_schedule(lr: float, every: int, t_max: int) -> optax.Schedule:
    r"""The reference codes' learning-rate decay as a function of the update count $n$:

    $$\text{lr}(n) = \text{lr}_0\,\tfrac12\bigl(1 + \cos(\pi \lfloor n / P \rfloor / T_\max)
    \bigr),$$

    PyTorch's `CosineAnnealingLR(T_max, eta_min=0)` stepped once every $P$ = `every` updates
    (both codes step it once per `train()` call, i.e. once per evaluation period;
    `docs/method.md §6.7`).

    **Arguments:**

    - `lr`: the initial learning rate $\text{lr}_0$.
    - `every`: updates per scheduler step $P$ (`eval_every_epochs * steps_per_epoch`).
    - `t_max`: the scheduler's `T_max` in scheduler steps (the reference: the task's epochs).

    **Returns:**

    An optax schedule `count -> lr`.
    """
    if every < 1 or t_max < 1:
        raise ValueError(
            f"cosine_every_schedule: every ({every}) and t_max ({t_max}) must be >= 1."
        )

    def schedule(count):
        k = (count // every).astype(jnp.float32)
        return lr * 0.5 * (1.0 + jnp.cos(jnp.pi * k / t_max))

    return schedule


def make_optimizer(
    lr: float, grad_norm: float, decay: tuple[int, int] | None = None
) -> optax.GradientTransformation:
    r"""Adam after global-norm clipping to `grad_norm` (no clipping when `grad_norm <= 0`, as
    the reference code's `if grad_norm > 0`).

    With `decay = (every, t_max)` the learning rate follows `cosine_every_schedule`. The
    schedule reads the update count kept in the optimiser state, so a run resumed from a
    checkpoint continues the same schedule.
    """
    adam = optax.adam(lr if decay is None else cosine_every_schedule(lr, *decay))
    return optax.chain(optax.clip_by_global_norm(grad_norm), adam) if grad_norm > 0 else adam


def _trainable(tree: PyTree) -> PyTree:
    """The arrays an optimiser updates: every floating array leaf."""
    return eqx.filter(tree, eqx.is_inexact_array)


def _optimizer_step(
    optimizer: optax.GradientTransformation,
    module: PyTree,
    grads: PyTree,
    opt_state: PyTree,
    spec: PyTree = eqx.is_inexact_array,
) -> tuple[PyTree, PyTree, Float[Array, ""]]:
    """One optimiser step on the parameters of `module` that `spec` selects (a filter spec:
    default every floating array); also the global norm of `grads` before any clipping (a
    diagnostic worth logging: it says how often clipping acts)."""
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(module, spec))
    return eqx.apply_updates(module, updates), opt_state, optax.tree.norm(grads)


def ema_update(
    ema: PyTree,
    online: PyTree,
    step: Int[Array, ""],
    decay: float,
    start: int,
    every: int,
) -> PyTree:
    r"""The EMA actor rule of the reference code's `step_ema`.

    On steps where `step % every == 0` and `step >= start`:
    $\bar\phi \leftarrow d\,\bar\phi + (1 - d)\,\phi$. Otherwise the EMA is unchanged; in
    particular before `start` it stays at its initial value (the initial actor), exactly as the
    reference code's `step_ema` returns early there, so the first `start` steps bootstrap from
    the initial actor's actions.

    Not `optax.incremental_update` (which the Polyak target uses): that computes
    $s\phi + (1 - s)\bar\phi$, whose float32 weights and operation order differ from this
    rule's ($d$ and $1 - d$ rounded separately, $\bar\phi$'s product first), so every run past
    `ema_start` would change in its last bits.
    """
    active = (step % every == 0) & (step >= start)
    # Separate weights for old and new (rather than ema + w (online - ema)) so "unchanged" is exact.
    keep = jnp.where(active, decay, 1.0)
    take = jnp.where(active, 1.0 - decay, 0.0)
    return jax.tree.map(
        lambda e, o: keep.astype(e.dtype) * e + take.astype(e.dtype) * o, ema, online
    )


def next_state_values(
    ema_actor: DiffusionPolicy,
    target_critic: QEnsemble,
    next_observations: Float[Array, "batch obs"],
    key: PRNGKey,
    max_q_backup: bool,
    max_q_samples: int,
) -> Float[Array, "members batch"]:
    r"""$\bar Q_m(s', a')$ per member with $a' \sim \pi_\text{EMA}(\cdot \mid s')$ (posterior
    sampler), or with max-Q backup $\max_{j \le N} \bar Q_m(s', a'_j)$ over $N$ = `max_q_samples`
    actions per $s'$, the max taken per member.
    """
    if not max_q_backup:
        return target_critic(next_observations, ema_actor.sample(next_observations, key))
    batch = next_observations.shape[0]
    # Row i*N + j is the j-th sample for s'_i (torch.repeat_interleave in the reference code).
    repeated = jnp.repeat(next_observations, max_q_samples, axis=0)
    q = target_critic(repeated, ema_actor.sample(repeated, key))
    return jnp.max(q.reshape(q.shape[0], batch, max_q_samples), axis=-1)


def td_targets(
    rewards: Float[Array, " batch"],
    terminals: Float[Array, " batch"],
    next_values: Float[Array, "*members batch"],
    gamma: RealScalarLike,
) -> Float[Array, "*members batch"]:
    r"""$y = r + \gamma (1 - \text{terminal})\,\bar Q(s', a')$, gradient stopped."""
    return jax.lax.stop_gradient(rewards + gamma * (1.0 - terminals) * next_values)


class AbstractAgent(eqx.Module):
    """An agent: its config and its own rules; `AbstractAgent.init` and
    `AbstractAgent.update` are shared (module docstring).

    Subclasses name their `config_class`, say which SDE their actor has, what their actor loss
    is, how they act and which optimiser trains the actor; actor-critic agents subclass
    `AbstractActorCritic`.
    """

    config: eqx.AbstractVar[Any]
    #: The config class this agent reads (a subclass of it that adds options has its own
    #: agent: `make_agent` picks it).
    config_class: ClassVar[type]

    def __check_init__(self):
        want = agent_class_for(type(self.config))
        if not isinstance(self.config, self.config_class) or not isinstance(self, want):
            raise TypeError(
                f"{type(self).__name__} takes {self.config_class.__name__}, got "
                f"{type(self.config).__name__} (read by {want.__name__}: "
                "sdepolicy.rl.make_agent(config) builds the agent of a config)."
            )

    def actor_schedule(self) -> tuple[Any, bool]:
        r"""The actor's rate schedule (a name of `sdepolicy.policy.SCHEDULES`, built with the
        config's `diffusion_steps`, or a schedule) and whether its sampler clips $\hat x_0$:
        the config's `schedule` and `x0_clip` unless the agent says otherwise."""
        return self.config.schedule, self.config.x0_clip

    @abc.abstractmethod
    def actor_optimizer(self) -> optax.GradientTransformation:
        """The actor's optimiser (built from the config; one place for `init` and `update`)."""

    @abc.abstractmethod
    def actor_loss(
        self,
        actor: DiffusionPolicy,
        critic: QEnsemble | None,
        batch: Transitions,
        key: PRNGKey,
    ) -> tuple[Float[Array, ""], Metrics]:
        """The actor's loss and scalar diagnostics, as a function of the (trained) actor,
        against the freshly updated critic (None for BC)."""

    @abc.abstractmethod
    def act(
        self, state: AgentState, observations: Float[Array, "n obs"], key: PRNGKey
    ) -> Float[Array, "n act"]:
        """Evaluation actions, one per observation, in the environment's box."""

    def init(
        self,
        obs_dim: int,
        action_dim: int,
        action_low: Float[ArrayLike, " act"],
        action_high: Float[ArrayLike, " act"],
        key: PRNGKey,
        *,
        activation: Activation = mish,
        critic_backward: CriticBackwardName = "fused",
    ) -> AgentState:
        """A fresh agent: random actor (the EMA actor is its copy), the critics (the target is
        their copy), optimiser states, step 0.

        **Arguments:**

        - `obs_dim`, `action_dim`: sizes of states and actions.
        - `action_low`, `action_high`: the environment's action box.
        - `key`: PRNG key.
        - `activation`: the networks' activation (default Mish, the reference codes').
        - `critic_backward`: how the critics are differentiated (`CriticBackwardName`:
            the same maths either way; not a hyper-parameter, so not in the config).
        """
        config = self.config
        actor_critic = isinstance(self, AbstractActorCritic)
        keys = jax.random.split(key, 3 if actor_critic else 2)
        schedule, x0_clip = self.actor_schedule()
        actor = DiffusionPolicy.create(
            obs_dim,
            action_dim,
            action_low,
            action_high,
            key=keys[0],
            schedule=schedule,
            num_steps=config.diffusion_steps,
            x0_clip=x0_clip,
            hidden=config.hidden,
            activation=activation,
        )
        critic = critic_opt_state = None
        if actor_critic:
            members, init = self.critic_ensemble()
            layer_norm = config.critic_layer_norm
            critic = QEnsemble(
                obs_dim,
                action_dim,
                members,
                config.critic_hidden or config.hidden,
                init=init,
                key=keys[1],
                activation=activation,
                # The fused kernel has no LayerNorm: such critics are differentiated by autodiff.
                backward=CRITIC_BACKWARDS["autodiff" if layer_norm else critic_backward],
                layer_norm=layer_norm,
            )
            critic_opt_state = self.critic_optimizer().init(_trainable(critic))
        return AgentState(
            actor=actor,
            ema_actor=actor,
            critic=critic,
            target_critic=critic,
            actor_opt_state=self.actor_optimizer().init(
                eqx.filter(actor, actor.trainable_filter())
            ),
            critic_opt_state=critic_opt_state,
            step=jnp.zeros((), jnp.int32),
            key=raw_key(keys[-1]),
        )

    def update(self, state: AgentState, batch: Transitions) -> tuple[AgentState, Metrics]:
        """One update (module docstring); pure, `jit` it with the agent static.

        **Returns:** `(state, metrics)` with scalar metrics: `actor_loss`, the actor loss's
        diagnostics (`bc_loss`, ...), `actor_grad_norm` (the gradient's global norm before
        clipping) and, for actor-critic agents, `critic_loss` (the regression loss, without
        `AbstractActorCritic.critic_penalty`), `q_mean` (mean of $Q_m(s, a)$
        over batch and members, before the critic step), `critic_grad_norm` and the penalty's
        diagnostics.
        """
        critic, critic_opt_state, metrics = state.critic, state.critic_opt_state, {}
        if isinstance(self, AbstractActorCritic):
            key, k_critic, k_actor = jax.random.split(state.key, 3)
            targets = self.critic_targets(state, batch, k_critic)
            # A key of its own for the penalty, folded in so the other streams do not move.
            penalty_context = self.critic_penalty_context(
                state, batch, jax.random.fold_in(k_critic, 1)
            )

            def critic_objective(critic):
                obs, actions = batch.observations, batch.actions
                loss, q = critic.regression_loss(obs, actions, targets, self.critic_loss)
                penalty, diagnostics = self.critic_penalty(critic, batch, penalty_context)
                return loss + penalty, (loss, q, diagnostics)

            (_, (c_loss, q, c_aux)), c_grads = eqx.filter_value_and_grad(
                critic_objective, has_aux=True
            )(state.critic)
            critic, critic_opt_state, c_norm = _optimizer_step(
                self.critic_optimizer(), state.critic, c_grads, state.critic_opt_state
            )
            metrics = {
                "critic_loss": c_loss,
                "q_mean": jnp.mean(q),
                "critic_grad_norm": c_norm,
                **c_aux,
            }
        else:
            key, k_actor = jax.random.split(state.key)

        # The policy says which of its parameters are trained (its denoiser's).
        spec = state.actor.trainable_filter()
        params, fixed = eqx.partition(state.actor, spec)

        def actor_objective(params):
            return self.actor_loss(eqx.combine(params, fixed), critic, batch, k_actor)

        (a_loss, aux), a_grads = jax.value_and_grad(actor_objective, has_aux=True)(params)
        actor, actor_opt_state, a_norm = _optimizer_step(
            self.actor_optimizer(), state.actor, a_grads, state.actor_opt_state, spec
        )
        config = self.config
        ema_params, ema_fixed = eqx.partition(state.ema_actor, spec)
        ema_params = ema_update(
            ema_params,
            eqx.filter(actor, spec),
            state.step,
            config.ema_decay,
            config.ema_start,
            config.ema_every,
        )
        target_critic = None
        if critic is not None:  # Polyak averaging of the critic target
            target_critic = optax.incremental_update(critic, state.target_critic, config.tau)
        new_state = AgentState(
            actor=actor,
            ema_actor=eqx.combine(ema_params, ema_fixed),
            critic=critic,
            target_critic=target_critic,
            actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state,
            step=state.step + 1,
            key=key,
        )
        return new_state, {**metrics, "actor_loss": a_loss, **aux, "actor_grad_norm": a_norm}


class AbstractActorCritic(AbstractAgent):
    """An agent with a Q-ensemble (ER-DP-QE, Diffusion-QL). Besides `AbstractAgent`'s
    methods it says how large its ensemble is and how it is initialised, how its TD target
    reads the target ensemble and what its critics' loss is; both optimisers are Adam on the
    config's `actor_lr` and `critic_lr` after clipping to its `grad_norm`, with its
    `lr_decay`."""

    @abc.abstractmethod
    def critic_ensemble(self) -> tuple[int, Literal["edac", "default"]]:
        """The number of critics and their initialisation (`QEnsemble`'s `init`)."""

    @abc.abstractmethod
    def bootstrap(
        self, next_values: Float[Array, "members batch"]
    ) -> Float[Array, "*members batch"]:
        r"""The values the TD targets bootstrap from, given the target members'
        $\bar Q_m(s', a')$ (`next_state_values`): per member `(members, batch)` or one
        shared `(batch,)`."""

    def critic_targets(
        self, state: AgentState, batch: Transitions, key: PRNGKey
    ) -> Float[Array, "*members batch"]:
        r"""The TD targets $r + \gamma(1 - \text{terminal})\,v$ with $v$ the agent's
        `AbstractActorCritic.bootstrap` of the target members' values at
        $a' \sim \pi_\text{EMA}(\cdot \mid s')$ (max-Q backup: the max over
        `max_q_samples` actions, per member)."""
        config = self.config
        next_q = next_state_values(
            state.ema_actor,
            state.target_critic,
            batch.next_observations,
            key,
            config.max_q_backup,
            config.max_q_samples,
        )
        return td_targets(batch.rewards, batch.terminals, self.bootstrap(next_q), config.gamma)

    @abc.abstractmethod
    def critic_loss(self, squared_errors: Float[Array, "members batch"]) -> Float[Array, ""]:
        r"""The critics' loss from their squared TD errors $(Q_m(s_i, a_i) - y_{mi})^2$ (linear
        in them, so the fused kernel can compute it group by group)."""

    def critic_penalty_context(self, state: AgentState, batch: Transitions, key: PRNGKey) -> Any:
        """What `AbstractActorCritic.critic_penalty` needs from the state
        before the critic step (e.g. the actor's actions, gradient stopped); None by default."""
        return None

    def critic_penalty(
        self, critic: QEnsemble, batch: Transitions, context: Any
    ) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
        """A term added to the critics' regression loss, and its diagnostics (metrics); none
        by default. `context` is what
        `AbstractActorCritic.critic_penalty_context` returned.
        `critic_loss` in the metrics stays the regression loss alone."""
        return jnp.zeros(()), {}

    @abc.abstractmethod
    def eval_aggregate(self) -> tuple[Aggregate, float]:
        r"""How `AbstractActorCritic.act` scores candidates: an aggregate of the target
        critics for `select_actions` and its LCB $\beta$ (ignored by `"min"`)."""

    def act(self, state, observations, key):
        """Evaluation actions (docs/method.md §6.5): `eval_candidates` samples per state from
        the online actor (or the EMA actor: the config's `eval_actor`), one drawn by a softmax
        over the target critics' `AbstractActorCritic.eval_aggregate` at
        `eval_temperature` in `eval_temperature_scale`'s units (`sdepolicy.rl.select_actions`)."""
        config = self.config
        aggregate, lcb_beta = self.eval_aggregate()
        return select_actions(
            state.ema_actor if config.eval_actor == "ema" else state.actor,
            state.target_critic,
            observations,
            key,
            num_candidates=config.eval_candidates,
            aggregate=aggregate,
            lcb_beta=lcb_beta,
            temperature=config.eval_temperature,
            temperature_scale=config.eval_temperature_scale,
        )

    def actor_optimizer(self) -> optax.GradientTransformation:
        config = self.config
        return make_optimizer(config.actor_lr, config.grad_norm, config.lr_decay)

    def critic_optimizer(self) -> optax.GradientTransformation:
        """The critics' optimiser."""
        config = self.config
        return make_optimizer(config.critic_lr, config.grad_norm, config.lr_decay)


def agent_class_for(config_class: type) -> type[AbstractAgent]:
    """The agent that reads a config class: the agent whose `config_class` is the nearest
    class of `config_class`'s MRO (an agent declares the config it reads; a subclass of a config
    that adds no options keeps its base's agent).

    **Raises:** `TypeError` for a class no agent reads.
    """
    claims: dict[type, type[AbstractAgent]] = {}
    todo = [AbstractAgent]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "config_class" in vars(cls):
            claims.setdefault(cls.config_class, cls)
    for cls in config_class.__mro__:
        if cls in claims:
            return claims[cls]
    raise TypeError(f"No agent reads a {config_class.__name__}.")


def make_agent(config: Any) -> AbstractAgent:
    """The agent of a config: `ERDPQE(config)` for an `ERDPQEConfig`, and so on
    (`agent_class_for`); an experimental config (`sdepolicy.rl.experimental`) gets its
    experimental agent."""
    return agent_class_for(type(config))(config)
