"""Agents: data (an `eqx.Module` state) plus pure `init`, `update` and `act` functions.

Each algorithm is a module with the same API; pick one by name with `AGENTS`:

    from sdepolicy.rl.agents import erdpqe
    state = erdpqe.init(config, obs_dim, act_dim, low, high, key)
    state, metrics = eqx.filter_jit(erdpqe.update)(config, state, batch)  # config is static
"""

from . import bc as bc
from . import diffusion_ql as diffusion_ql
from . import erdpqe as erdpqe
from .bc import BCConfig as BCConfig
from .bc import BCState as BCState
from .common import ActorCriticState as ActorCriticState
from .diffusion_ql import DiffusionQLConfig as DiffusionQLConfig
from .erdpqe import ERDPQEConfig as ERDPQEConfig

#: Agent modules by name (the names `sdepolicy.rl.presets` uses), each with `init`, `update` and
#: `act`, and their config classes.
AGENTS = {"erdpqe": erdpqe, "diffusion-ql": diffusion_ql, "bc": bc}
CONFIGS = {"erdpqe": ERDPQEConfig, "diffusion-ql": DiffusionQLConfig, "bc": BCConfig}
