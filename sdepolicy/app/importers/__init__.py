"""Importers of offline-RL data recorded by others (D4RL, d3rlpy, stable-baselines, cs285,
hand_dapg files) into local Minari datasets, with an optional replay check."""

from ._core import KNOWN_FILES as KNOWN_FILES
from ._core import describe as describe
from ._core import import_dataset as import_dataset
from ._readers import FORMATS as FORMATS
from ._readers import read_episodes as read_episodes
from ._replay import check_replay as check_replay
