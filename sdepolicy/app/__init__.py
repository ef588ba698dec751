"""The application layer: Minari datasets (loading, the embedded default dataset, importers of
files recorded by others), task presets, vectorised evaluation in Gymnasium, checkpoints, plots
and the training run with its outputs. It builds on the algorithm core, `sdepolicy.rl`, which
knows nothing of it."""

from . import importers as importers
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import read_header as read_header
from ._checkpoint import save_checkpoint as save_checkpoint
from ._cli import add_run_arguments as add_run_arguments
from ._cli import run_spec_from_args as run_spec_from_args
from ._data import REWARD_TRANSFORMS as REWARD_TRANSFORMS
from ._data import check_spaces as check_spaces
from ._data import datasets_root as datasets_root
from ._data import episodes_to_transitions as episodes_to_transitions
from ._data import flatten_observation as flatten_observation
from ._data import load_dataset as load_dataset
from ._data import load_transitions as load_transitions
from ._data import recover_env as recover_env
from ._data import transform_rewards as transform_rewards
from ._default_dataset import DEFAULT_DATASET_ID as DEFAULT_DATASET_ID
from ._default_dataset import ensure_default_dataset as ensure_default_dataset
from ._errors import BackendError as BackendError
from ._errors import CheckpointMismatchError as CheckpointMismatchError
from ._errors import ConfigError as ConfigError
from ._errors import DatasetExistsError as DatasetExistsError
from ._errors import DatasetNotFoundError as DatasetNotFoundError
from ._errors import DataValidationError as DataValidationError
from ._errors import EnvMismatchError as EnvMismatchError
from ._errors import MissingExtraError as MissingExtraError
from ._errors import OutputWriteError as OutputWriteError
from ._errors import RunFolderError as RunFolderError
from ._errors import RunInterruptedError as RunInterruptedError
from ._errors import RunTerminatedError as RunTerminatedError
from ._errors import SdepolicyError as SdepolicyError
from ._errors import SpaceMismatchError as SpaceMismatchError
from ._errors import TrainingDivergedError as TrainingDivergedError
from ._errors import UnknownTaskError as UnknownTaskError
from ._evaluation import EpisodeStats as EpisodeStats
from ._evaluation import run_episodes as run_episodes
from ._evaluation import run_episodes_stats as run_episodes_stats
from ._model_selection import offline_choice as offline_choice
from ._model_selection import offline_selection_summary as offline_selection_summary
from ._overrides import apply_overrides as apply_overrides
from ._overrides import config_from_record as config_from_record
from ._overrides import config_record as config_record
from ._overrides import option_names as option_names
from ._plots import plot_learning_curve as plot_learning_curve
from ._plots import plot_performance_profiles as plot_performance_profiles
from ._presets import PROJECT_DEFAULTS as PROJECT_DEFAULTS
from ._presets import TaskPreset as TaskPreset
from ._presets import get_preset as get_preset
from ._presets import list_presets as list_presets
from ._runner import RunSpec as RunSpec
from ._runner import run as run
from ._scores import normalized_score as normalized_score
from ._scores import reference_scores as reference_scores
from ._scores import success_rate as success_rate
from ._statistics import Interval as Interval
from ._statistics import Profile as Profile
from ._statistics import aggregate_iqm as aggregate_iqm
from ._statistics import aggregate_mean as aggregate_mean
from ._statistics import compare as compare
from ._statistics import describe as describe
from ._statistics import difference_interval as difference_interval
from ._statistics import improvement_interval as improvement_interval
from ._statistics import interquartile_mean as interquartile_mean
from ._statistics import interval_estimate as interval_estimate
from ._statistics import jsonable as jsonable
from ._statistics import performance_profile as performance_profile
from ._statistics import probability_of_improvement as probability_of_improvement
from ._statistics import profile_thresholds as profile_thresholds
from ._statistics import stratified_bootstrap as stratified_bootstrap
from .importers import check_replay as check_replay
from .importers import import_dataset as import_dataset
from .importers import read_episodes as read_episodes


def __getattr__(name: str):
    # The project's defaults had a name that did not say whose they are.
    if name == "DEFAULT_AGENT_OVERRIDES":
        import warnings

        warnings.warn(
            "sdepolicy.app.DEFAULT_AGENT_OVERRIDES is now sdepolicy.app.PROJECT_DEFAULTS.",
            DeprecationWarning,
            stacklevel=2,
        )
        return PROJECT_DEFAULTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
