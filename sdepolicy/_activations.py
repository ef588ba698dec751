r"""The activation shared by the policy's denoiser and the critics: Mish, with one exponential
and its derivative in closed form.

It lives below both floors that use it (`sdepolicy.policy` re-exports it; the Q-ensemble of
`sdepolicy.rl` takes it as its default activation), so neither network reaches into the other's
module for it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

# Above this, tanh(softplus(x)) equals 1 to within float64 rounding (1 - 2e^{-2x} ~ 1 - 8e-18),
# and e^{2x} would overflow float32 beyond x ~ 44: return x itself.
_MISH_LINEAR_ABOVE = 20.0


def mish_and_slope(
    x: Float[Array, "*shape"],
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    r"""$\operatorname{mish}(x)$ and its derivative $\operatorname{mish}'(x)$ from one exponential.

    With $e = e^x$, $n = e(e + 2)$ and $d = n + 2$ (see `mish`):

    $$\operatorname{mish}(x) = x\,\frac{n}{d}, \qquad
    \operatorname{mish}'(x) = \frac{n}{d} + x\,\frac{4e(e + 1)}{d^2},$$

    since $n' = 2e(e + 1)$ and $(n/d)' = 2n'/d^2$. For $x > 20$ both branches are replaced by $x$
    and $1$ (exact to float64 rounding); the input of the unused branch is set to 0 so that it
    stays finite. It is `mish`'s derivative rule, so the derivative of `mish` in either mode
    is this slope: the Q-ensemble's hand-written backward pass (`sdepolicy.rl.FusedBackward`)
    keeps it from the forward pass instead of differentiating the forward expression.

    **Returns:** `(mish(x), mish'(x))`, elementwise.
    """
    large = x > _MISH_LINEAR_ABOVE
    safe = jnp.where(large, jnp.zeros_like(x), x)
    e = jnp.exp(safe)
    n = e * (e + 2)
    r = 1 / (n + 2)
    ratio = n * r
    value = jnp.where(large, x, safe * ratio)
    slope = jnp.where(large, jnp.ones_like(x), ratio + safe * (4 * e * (e + 1)) * (r * r))
    return value, slope


@jax.custom_jvp
def mish(x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    r"""The Mish activation $x \tanh(\operatorname{softplus}(x))$, with one exponential.

    With $e = e^x$, $\tanh(\log(1 + e)) = \frac{(1+e)^2 - 1}{(1+e)^2 + 1} = \frac{n}{n + 2}$ where
    $n = e(e + 2)$, so

    $$\operatorname{mish}(x) = x\,\frac{n}{n + 2}.$$

    This is exact (not an approximation) and costs one `exp` instead of `exp`, `log1p` and
    `tanh`; on CPU the activation is a large share of a critic-ensemble step (docs/method.md §11). For
    $x > 20$ the function returns $x$ (the two differ by less than float64 rounding), which keeps
    $e^{2x}$ from overflowing; the `where` is applied to the input too so that gradients of the
    unused branch stay finite.

    The derivative is given in closed form (a `jax.custom_jvp`, see `mish_and_slope`): the
    backward pass multiplies by one slope computed with the forward value, instead of replaying
    the dozen elementwise operations of the forward expression (what it saves:
    `benchmarks/README.md`). The rule is itself differentiable, so higher derivatives work
    too.

    **Arguments:**

    - `x`: any floating array.

    **Returns:** $\operatorname{mish}(x)$, elementwise, same shape and dtype.
    """
    return mish_and_slope(x)[0]


@mish.defjvp
def _mish_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    value, slope = mish_and_slope(x)
    return value, slope * dx
