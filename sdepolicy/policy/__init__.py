"""The policy floor: denoiser networks, diffusion policies, diffusion losses, entropy estimators."""

from .._activations import mish as mish
from .._activations import mish_and_slope as mish_and_slope
from ._action_box import ActionBox as ActionBox
from ._diffusion_policy import SCHEDULES as SCHEDULES
from ._diffusion_policy import DiffusionPolicy as DiffusionPolicy
from ._diffusion_policy import OneStepPrediction as OneStepPrediction
from ._diffusion_policy import make_schedule as make_schedule
from ._entropy import ENTROPY_ESTIMATORS as ENTROPY_ESTIMATORS
from ._entropy import POLICY_ENTROPY_ESTIMATORS as POLICY_ENTROPY_ESTIMATORS
from ._entropy import TERMINALS as TERMINALS
from ._entropy import EntropyEstimator as EntropyEstimator
from ._entropy import chain_entropy as chain_entropy
from ._entropy import get_entropy_estimator as get_entropy_estimator
from ._entropy import paper_entropy as paper_entropy
from ._entropy import paper_entropy_coefficients as paper_entropy_coefficients
from ._entropy import paper_entropy_residual_coefficient as paper_entropy_residual_coefficient
from ._entropy import policy_entropy as policy_entropy
from ._entropy import reference_entropy as reference_entropy
from ._entropy import reference_entropy_coefficients as reference_entropy_coefficients
from ._losses import LOSS_KINDS as LOSS_KINDS
from ._losses import mll_error as mll_error
from ._losses import mll_prediction as mll_prediction
from ._losses import mll_target as mll_target
from ._losses import noise_matching_error as noise_matching_error
from ._networks import Denoiser as Denoiser
from ._networks import SinusoidalTimeEmbedding as SinusoidalTimeEmbedding
