"""The SDE floor: schedules, the mean-reverting SDE and its closed forms, samplers (diffrax),
and a training helper."""

from .errors import SDEInputError as SDEInputError
from .gaussian import DiagonalGaussian as DiagonalGaussian
from .likelihood import LogLikelihood as LogLikelihood
from .likelihood import log_likelihood as log_likelihood
from .mean_reverting import MeanRevertingSDE as MeanRevertingSDE
from .mean_reverting import ScoreFn as ScoreFn
from .predictor_corrector import PredictorCorrectorSampler as PredictorCorrectorSampler
from .samplers import NoiseToScore as NoiseToScore
from .samplers import NoiseToX0 as NoiseToX0
from .samplers import PosteriorSampler as PosteriorSampler
from .samplers import ProbabilityFlowSampler as ProbabilityFlowSampler
from .samplers import ReverseSDESampler as ReverseSDESampler
from .samplers import X0Predictor as X0Predictor
from .samplers import noise_to_score as noise_to_score
from .samplers import noise_to_x0_predictor as noise_to_x0_predictor
from .schedules import AbstractSchedule as AbstractSchedule
from .schedules import ConstantSchedule as ConstantSchedule
from .schedules import LinearSchedule as LinearSchedule
from .schedules import PiecewiseConstantSchedule as PiecewiseConstantSchedule
from .schedules import constant_theta_schedule as constant_theta_schedule
from .schedules import cosine_schedule as cosine_schedule
from .schedules import cosine_thetas as cosine_thetas
from .schedules import ddpm_schedule as ddpm_schedule
from .schedules import linear_theta_schedule as linear_theta_schedule
from .schedules import normalised_schedule as normalised_schedule
from .schedules import vp_betas as vp_betas
from .schedules import vp_schedule as vp_schedule
from .training import denoising_loss as denoising_loss
from .training import draw_noised as draw_noised
from .training import loss_weight as loss_weight
