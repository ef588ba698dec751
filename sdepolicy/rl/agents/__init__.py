"""Agents: an `eqx.Module` holding a config, with `init`, `update` and `act`; the state they
work on is data (`AgentState`), and `update` is pure.

    from sdepolicy.rl.agents import ERDPQE, ERDPQEConfig
    agent = ERDPQE(ERDPQEConfig())
    state = agent.init(obs_dim, act_dim, low, high, key)
    state, metrics = eqx.filter_jit(agent.update)(state, batch)   # the agent is static

Each agent states only what is its own (networks, critic target and loss, actor loss, action
selection); the update step is shared (`AbstractAgent.update`). Each config states only its own
options; the shared ones are declared once, in `AgentConfig` (every agent) and
`ActorCriticConfig` (ER-DP-QE and Diffusion-QL). `ERDPQEConfig()` and the others are the papers'
settings; the command line's default run adds `sdepolicy.app.PROJECT_DEFAULTS` to them.
"""

from typing import Literal

from ._base import AbstractActorCritic as AbstractActorCritic
from ._base import AbstractAgent as AbstractAgent
from ._base import AgentState as AgentState
from ._base import agent_class_for as agent_class_for
from ._base import make_agent as make_agent
from ._bc import BC as BC
from ._bc import BCConfig as BCConfig
from ._config import ActorCriticConfig as ActorCriticConfig
from ._config import AgentConfig as AgentConfig
from ._diffusion_ql import DiffusionQL as DiffusionQL
from ._diffusion_ql import DiffusionQLConfig as DiffusionQLConfig
from ._erdpqe import ERDPQE as ERDPQE
from ._erdpqe import ERDPQEConfig as ERDPQEConfig

#: Agent classes by name (the names the presets of `sdepolicy.app` use), each built from its
#: config, and their config classes.
AGENTS = {"erdpqe": ERDPQE, "diffusion-ql": DiffusionQL, "bc": BC}
#: The agents' names (the keys of `AGENTS`).
AgentName = Literal["erdpqe", "diffusion-ql", "bc"]
CONFIGS = {"erdpqe": ERDPQEConfig, "diffusion-ql": DiffusionQLConfig, "bc": BCConfig}
