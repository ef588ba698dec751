"""The optimised update step is pinned to the straightforward one (issue #5: speed without
changing the maths).

Optimised: the library as it runs by default, Mish with its closed-form derivative
(`jax.custom_jvp`) and the Q-ensemble's hand-written backward pass (`init`'s default
`critic_backward="fused"`, `FusedBackward`, members in groups). Straightforward: the textbook
`x tanh(softplus(x))` as both networks' activation, differentiated by JAX, and the plain
batch-major ensemble differentiated by JAX (`critic_backward="autodiff"`, `AutodiffBackward`),
both arguments of `init` (how the maths is computed, not hyper-parameters). Both
start from the same parameters and draw the same batches; after several fused updates every
parameter, optimiser moment and metric agrees to float32 rounding.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdepolicy.rl._fused_critic as fused_critic
from sdepolicy.policy import mish
from sdepolicy.rl import AutodiffBackward, FusedBackward, make_train_fn
from sdepolicy.rl.agents import ERDPQE, DiffusionQL, DiffusionQLConfig, ERDPQEConfig

OBS, ACT, N, BATCH, STEPS = 4, 2, 256, 32, 4


def textbook_mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


@pytest.fixture(scope="module")
def dataset(make_transitions):
    return make_transitions(0, N, OBS, ACT, terminal_every=10)


def train(agent, dataset, monkeypatch, straightforward):
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    activation = textbook_mish if straightforward else mish
    backward = "autodiff" if straightforward else "fused"
    state = agent.init(
        OBS, ACT, low, high, jax.random.key(0), activation=activation, critic_backward=backward
    )
    with monkeypatch.context() as m:
        if not straightforward:
            # Several groups of members even at these small sizes: the grouped code path runs.
            m.setattr(fused_critic, "_CPU_GROUP_BYTES", 4 * agent.config.hidden * BATCH)
        step = make_train_fn(agent.update, dataset, BATCH, STEPS)
        return jax.block_until_ready(step(state, jax.random.key(1)))


@pytest.mark.parametrize("algo", ["erdpqe", "dql"])
def test_optimised_step_equals_the_straightforward_step(algo, dataset, monkeypatch):
    agent_cls = {"erdpqe": ERDPQE, "dql": DiffusionQL}[algo]
    make = {"erdpqe": ERDPQEConfig, "dql": DiffusionQLConfig}[algo]
    extra = {"num_critics": 4, "ema_start": 1, "ema_every": 1} if algo == "erdpqe" else {}
    agent = agent_cls(make(hidden=32, batch_size=BATCH, **extra))
    fast, fast_metrics = train(agent, dataset, monkeypatch, straightforward=False)
    plain, plain_metrics = train(agent, dataset, monkeypatch, straightforward=True)
    assert isinstance(fast.critic.backward, FusedBackward)
    assert isinstance(plain.critic.backward, AutodiffBackward)
    assert plain.critic.activation is textbook_mish
    assert plain.actor.denoiser.activation is textbook_mish
    assert int(fast.step) == int(plain.step) == STEPS

    start = agent.init(OBS, ACT, -np.ones(ACT), np.ones(ACT), jax.random.key(0))
    leaves = lambda s: jax.tree.leaves(eqx.filter(s, eqx.is_inexact_array))
    moved = 0
    for got, want, before in zip(leaves(fast), leaves(plain), leaves(start), strict=True):
        scale = float(jnp.max(jnp.abs(want))) + 1e-12
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)
        moved += bool(jnp.any(want != before))
    assert moved > 10  # the comparison is between trained states, not two copies of the start
    for name in plain_metrics:
        np.testing.assert_allclose(fast_metrics[name], plain_metrics[name], rtol=2e-5, atol=1e-6)
