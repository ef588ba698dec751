"""Repeated eager calls reuse one compilation (issue 11: fresh lambdas recompiled every call,
0.6-1.3 s each).

A Python side effect in the predictor runs only while JAX traces it, so counting calls counts
traces: after the first sampler call, further calls with new arrays (new x_T, new keys, new
predictor parameters) must not trace again.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

import sdepolicy.sde as sp


class _Eps(eqx.Module):
    c: jax.Array
    traces: list = eqx.field(static=True)

    def __call__(self, t, x, args):
        self.traces.append(1)
        return self.c * jnp.tanh(x)


def test_noise_to_x0_and_score_modules_hit_the_cache():
    sde = sp.MeanRevertingSDE(sp.cosine_schedule(5))
    traces = []
    post = sp.PosteriorSampler(sde)
    flow = sp.ProbabilityFlowSampler(sde, 4, t_end=0.01)
    x = jnp.asarray([0.3, -0.2])
    for i in range(3):
        eps = _Eps(jnp.asarray(0.1 * i), traces)
        assert isinstance(sp.noise_to_x0_predictor(sde, eps), eqx.Module)
        post(sp.noise_to_x0_predictor(sde, eps), x + i, jax.random.key(i))
    after_posterior = len(traces)
    assert after_posterior >= 1
    for i in range(3):
        flow(sp.noise_to_score(sde, _Eps(jnp.asarray(0.1 * i), traces)), x + i)
    assert len(traces) > after_posterior  # the flow traced once...
    once = len(traces)
    flow(sp.noise_to_score(sde, _Eps(jnp.asarray(0.7), traces)), x)
    post(sp.noise_to_x0_predictor(sde, _Eps(jnp.asarray(0.7), traces)), x, jax.random.key(9))
    assert len(traces) == once  # ...and nothing traced again


def test_diffusion_policy_sample_traces_once(monkeypatch):
    from sdepolicy.policy import Denoiser, DiffusionPolicy

    traces = []
    original = Denoiser.__call__

    def counting(self, *args, **kwargs):
        traces.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Denoiser, "__call__", counting)
    policy = DiffusionPolicy.create(
        3, 2, [-1.0, -1.0], [1.0, 1.0], key=jax.random.key(0), hidden=8, depth=1
    )
    states = jnp.zeros((4, 3))
    policy.sample(states, jax.random.key(1))
    first = len(traces)
    for i in range(2):
        policy.sample(states + i, jax.random.key(2 + i))
    assert len(traces) == first, (first, len(traces))
