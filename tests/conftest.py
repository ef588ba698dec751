"""Suite-wide test configuration.

- Runtime type checking: `pyproject.toml` passes `--jaxtyping-packages=sdepolicy,beartype.beartype`,
  so every annotated function of `sdepolicy` is checked by beartype (shapes and dtypes included)
  while the tests run, the way diffrax's suite runs.
- Maths tests (`tests/sde/`, `tests/policy/test_entropy*`) run in float64 with strict dtype and
  rank promotion through the `maths_precision` fixture (see `tests/sde/conftest.py`); RL tests run
  in the default float32 that training uses.
- Hypothesis: a deterministic profile (derandomised, no deadline) so CI is reproducible.
- `minari_store`: a private Minari store for a module's tiny datasets.
"""

import jax
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "sdepolicy",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile("sdepolicy")


@pytest.fixture(scope="module")
def maths_precision():
    """float64 with strict dtype promotion and rank promotion that raises."""
    with (
        jax.enable_x64(True),
        jax.numpy_dtype_promotion("strict"),
        jax.numpy_rank_promotion("raise"),
    ):
        yield


@pytest.fixture(scope="module")
def minari_store(tmp_path_factory):
    """A fresh, empty Minari store set as `MINARI_DATASETS_PATH` for the module (the previous
    value is restored after it); a module's dataset fixture builds its datasets in it."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        yield root
