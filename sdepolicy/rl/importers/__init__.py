"""Importers of offline-RL data recorded by others (D4RL, d3rlpy, stable-baselines, cs285,
hand_dapg files) into local Minari datasets, with an optional replay check."""

from .core import KNOWN_FILES as KNOWN_FILES
from .core import describe as describe
from .core import import_dataset as import_dataset
from .readers import FORMATS as FORMATS
from .readers import read_episodes as read_episodes
from .replay import check_replay as check_replay
