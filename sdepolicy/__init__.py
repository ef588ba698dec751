"""sdepolicy: mean-reverting SDEs on diffrax and the diffusion policies of offline RL on them."""

from . import sde as sde
from .sde import DiagonalGaussian as DiagonalGaussian
from .sde import LogLikelihood as LogLikelihood
from .sde import MeanRevertingSDE as MeanRevertingSDE
from .sde import PosteriorSampler as PosteriorSampler
from .sde import PredictorCorrectorSampler as PredictorCorrectorSampler
from .sde import ProbabilityFlowSampler as ProbabilityFlowSampler
from .sde import ReverseSDESampler as ReverseSDESampler
from .sde import SDEInputError as SDEInputError
from .sde import cosine_schedule as cosine_schedule
from .sde import vp_schedule as vp_schedule

__version__ = "0.1.0"
