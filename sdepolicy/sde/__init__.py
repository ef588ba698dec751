"""The SDE floor: schedules, the mean-reverting SDE and its closed forms, samplers (diffrax),
and a training helper."""

from ._errors import SDEInputError as SDEInputError
from ._gaussian import DiagonalGaussian as DiagonalGaussian
from ._likelihood import LogLikelihood as LogLikelihood
from ._likelihood import log_likelihood as log_likelihood
from ._mean_reverting import MeanRevertingSDE as MeanRevertingSDE
from ._mean_reverting import ScoreFn as ScoreFn
from ._predictor_corrector import PredictorCorrectorSampler as PredictorCorrectorSampler
from ._samplers import NoiseToScore as NoiseToScore
from ._samplers import NoiseToX0 as NoiseToX0
from ._samplers import PosteriorSampler as PosteriorSampler
from ._samplers import ProbabilityFlowSampler as ProbabilityFlowSampler
from ._samplers import ReverseSDESampler as ReverseSDESampler
from ._samplers import X0Predictor as X0Predictor
from ._samplers import noise_to_score as noise_to_score
from ._samplers import noise_to_x0_predictor as noise_to_x0_predictor
from ._schedules import AbstractSchedule as AbstractSchedule
from ._schedules import ConstantSchedule as ConstantSchedule
from ._schedules import LinearSchedule as LinearSchedule
from ._schedules import PiecewiseConstantSchedule as PiecewiseConstantSchedule
from ._schedules import constant_theta_schedule as constant_theta_schedule
from ._schedules import cosine_schedule as cosine_schedule
from ._schedules import cosine_thetas as cosine_thetas
from ._schedules import ddpm_schedule as ddpm_schedule
from ._schedules import linear_theta_schedule as linear_theta_schedule
from ._schedules import normalised_schedule as normalised_schedule
from ._schedules import vp_betas as vp_betas
from ._schedules import vp_schedule as vp_schedule
from ._training import denoising_loss as denoising_loss
from ._training import draw_noised as draw_noised
from ._training import loss_weight as loss_weight
