"""The algorithm core of offline RL: critics, agents, fused multi-seed training, action
selection. It needs JAX and the floors below it only (no Gymnasium, no Minari): datasets,
presets, evaluation in environments and runs are the application layer, `sdepolicy.app`."""

from . import agents as agents
from . import experimental as experimental
from ._critics import AbstractCriticBackward as AbstractCriticBackward
from ._critics import AutodiffBackward as AutodiffBackward
from ._critics import QEnsemble as QEnsemble
from ._critics import action_gradient_similarity as action_gradient_similarity
from ._errors import ConfigError as ConfigError
from ._errors import SdepolicyError as SdepolicyError
from ._fused_critic import FusedBackward as FusedBackward
from ._pessimism import aggregate_q as aggregate_q
from ._pessimism import ensemble_min as ensemble_min
from ._pessimism import lcb as lcb
from ._selection import candidate_disagreement as candidate_disagreement
from ._selection import select_actions as select_actions
from ._sharding import seed_mesh as seed_mesh
from ._sharding import shard_seeds as shard_seeds
from ._training import SeedStrategy as SeedStrategy
from ._training import init_seeds as init_seeds
from ._training import make_checked_seeds_train_fn as make_checked_seeds_train_fn
from ._training import make_seeds_train_fn as make_seeds_train_fn
from ._training import make_train_fn as make_train_fn
from ._training import select_seed as select_seed
from ._transitions import Transitions as Transitions
from .agents import AGENTS as AGENTS
from .agents import BC as BC
from .agents import CONFIGS as CONFIGS
from .agents import ERDPQE as ERDPQE
from .agents import AbstractActorCritic as AbstractActorCritic
from .agents import AbstractAgent as AbstractAgent
from .agents import AgentName as AgentName
from .agents import AgentState as AgentState
from .agents import BCConfig as BCConfig
from .agents import DiffusionQL as DiffusionQL
from .agents import DiffusionQLConfig as DiffusionQLConfig
from .agents import ERDPQEConfig as ERDPQEConfig
from .agents import make_agent as make_agent
