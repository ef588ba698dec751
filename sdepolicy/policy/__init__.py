"""The policy floor: denoiser networks, diffusion policies, diffusion losses, entropy estimators."""

from .._activations import mish as mish
from .._activations import mish_and_slope as mish_and_slope
from .action_box import ActionBox as ActionBox
from .diffusion_policy import SCHEDULES as SCHEDULES
from .diffusion_policy import DiffusionPolicy as DiffusionPolicy
from .diffusion_policy import OneStepPrediction as OneStepPrediction
from .diffusion_policy import make_schedule as make_schedule
from .entropy import ENTROPY_ESTIMATORS as ENTROPY_ESTIMATORS
from .entropy import POLICY_ENTROPY_ESTIMATORS as POLICY_ENTROPY_ESTIMATORS
from .entropy import TERMINALS as TERMINALS
from .entropy import EntropyEstimator as EntropyEstimator
from .entropy import chain_entropy as chain_entropy
from .entropy import get_entropy_estimator as get_entropy_estimator
from .entropy import paper_entropy as paper_entropy
from .entropy import paper_entropy_coefficients as paper_entropy_coefficients
from .entropy import paper_entropy_residual_coefficient as paper_entropy_residual_coefficient
from .entropy import policy_entropy as policy_entropy
from .entropy import reference_entropy as reference_entropy
from .entropy import reference_entropy_coefficients as reference_entropy_coefficients
from .losses import LOSS_KINDS as LOSS_KINDS
from .losses import mll_error as mll_error
from .losses import mll_prediction as mll_prediction
from .losses import mll_target as mll_target
from .losses import noise_matching_error as noise_matching_error
from .networks import Denoiser as Denoiser
from .networks import SinusoidalTimeEmbedding as SinusoidalTimeEmbedding
