import pytest


@pytest.fixture(scope="module", autouse=True)
def _maths(maths_precision):
    """Every test under tests/sde/ runs in float64 with strict promotion."""
    yield
