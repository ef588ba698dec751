r"""The options every agent config shares, each declared once with its range and its line of
documentation; the agents' configs (`ERDPQEConfig`, `DiffusionQLConfig`, `BCConfig`) subclass
these and add only their own.

Which values a config holds by default: the paper's (`ERDPQEConfig()` is ER-DP-QE's locomotion
setting, `DiffusionQLConfig()` Diffusion-QL's, `BCConfig()` the codes' `Diffusion_BC`). What the
command line runs without `--task` (the embedded task and every `--dataset` run) is those plus
the project's own choices, `sdepolicy.app.PROJECT_DEFAULTS` (docs/method.md §8.6); a D4RL task
is those plus the task's row of the papers' tables (`sdepolicy.app.get_preset`, §8).

A config is a frozen dataclass (hashable, so an agent holding it is a static argument of
`jax.jit`); `__post_init__` checks every field against its declaration
(`sdepolicy.rl._options.check_options`) and then what couples fields.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from .._options import MAX_STEPS, Ints, Reals, check_options, option
from .._selection import TemperatureScale

#: The range of a global-norm clip (0: none), shared by the fields that redeclare its default.
GRAD_NORM = Reals(0.0, note="0: no clipping")
#: The range of a learning rate.
LEARNING_RATE = Reals(0.0, low_open=True)
#: The range of a network width.
WIDTH = Ints(1, 8192)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    r"""What every agent has: a diffusion policy of $T$ steps, trained on minibatches, with an
    EMA copy.

    - `diffusion_steps`: $T$, the steps of the policy's SDE.
    - `batch_size`, `hidden`: batch size and width of every network.
    - `grad_norm`: the global-norm clip of the gradients (0: none).
    - `ema_decay`, `ema_start`, `ema_every`: the EMA actor's schedule (its decay, the first
        update that moves it, and every how many updates).
    """

    diffusion_steps: int = option(5, Ints(1, 1000))
    batch_size: int = option(256, Ints(1, 65_536))
    hidden: int = option(256, WIDTH)
    grad_norm: float = option(0.0, GRAD_NORM)
    ema_decay: float = option(0.995, Reals(0.0, 1.0))
    ema_start: int = option(1000, Ints(0, MAX_STEPS))
    ema_every: int = option(5, Ints(1, MAX_STEPS))

    def __post_init__(self):
        check_options(self)


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(AgentConfig):
    r"""What ER-DP-QE and Diffusion-QL share besides `AgentConfig`'s options: a Q term,
    critics with Polyak targets, the reference codes' evaluation by a softmax over candidates.

    - `eta`: weight $\eta$ of the actor's Q term.
    - `actor_lr`, `critic_lr`: the two Adam learning rates.
    - `gamma`, `tau`: discount and Polyak rate.
    - `max_q_backup`, `max_q_samples`: max-Q backup and its number of next actions.
    - `critic_hidden`: the critics' width when it should differ from `hidden` (None: `hidden`).
    - `critic_layer_norm`: LayerNorm in the critics' hidden layers (Ball et al., ICML 2023;
        ReBRAC; a known remedy for Q-value divergence in offline RL, docs/method.md §6.1); off
        in the reference codes. Such critics are differentiated by autodiff (the fused kernel
        does not have it).
    - `eval_candidates`: candidates sampled per state at evaluation; `eval_temperature`: the
        temperature of the softmax that picks one (1 in the reference codes, 0 = the best);
        `eval_temperature_scale`: `"absolute"` (the reference codes) or `"disagreement"`
        (in units of the critics' disagreement about the candidates at that state:
        `sdepolicy.rl.select_actions`); `eval_actor`: which actor proposes the candidates,
        `"online"` (the reference codes) or `"ema"`.
    - `lr_decay`: the reference codes' cosine learning-rate decay of both optimisers,
        `(every, t_max)`: stepped every `every` updates with `T_max` = `t_max`
        (`cosine_every_schedule` in `sdepolicy/rl/agents/_base.py`; docs/method.md §6.7);
        None (the default): constant. On the command line `--set lr_decay=50000,2000`.
    """

    eta: float = option(1.0, Reals(0.0))
    actor_lr: float = option(3e-4, LEARNING_RATE)
    critic_lr: float = option(3e-4, LEARNING_RATE)
    gamma: float = option(0.99, Reals(0.0, 1.0, high_open=True))
    tau: float = option(0.005, Reals(0.0, 1.0, low_open=True))
    max_q_backup: bool = False
    max_q_samples: int = option(10, Ints(1, 1000))
    critic_hidden: int | None = option(None, WIDTH)
    critic_layer_norm: bool = False
    eval_candidates: int = option(50, Ints(1, 10_000))
    eval_temperature: float = option(1.0, Reals(0.0))
    eval_temperature_scale: TemperatureScale = "absolute"
    eval_actor: Literal["online", "ema"] = "online"
    lr_decay: tuple[int, int] | None = option(None, (Ints(1, MAX_STEPS), Ints(1, MAX_STEPS)))

    #: Options these configs had and no longer have, with what replaces each (an override that
    #: names one is refused with it: `sdepolicy.app.apply_overrides`).
    retired: ClassVar[dict[str, str]] = {
        "lr_decay_every": "lr_decay=EVERY,T_MAX holds both numbers (e.g. lr_decay=50000,2000)",
        "lr_decay_t_max": "lr_decay=EVERY,T_MAX holds both numbers (e.g. lr_decay=50000,2000)",
        "critic_backward": (
            "how the critics are differentiated is not a hyper-parameter: it is "
            "agent.init(..., critic_backward='autodiff') (same maths)"
        ),
    }
