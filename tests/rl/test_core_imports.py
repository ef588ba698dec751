"""The algorithm core (`sdepolicy.rl`) stands without the application layer: it imports and
trains with Gymnasium, Minari and the run's other libraries blocked, and no module of the
lower floors imports a higher one (docs: README "Four floors")."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sdepolicy"
BLOCKED = ("gymnasium", "minari", "matplotlib", "h5py", "tqdm")

CORE_WITHOUT_THE_APPLICATION = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
import sdepolicy.rl as rl

agent = rl.ERDPQE(rl.ERDPQEConfig(num_critics=2, hidden=8, batch_size=4, diffusion_steps=3))
state = agent.init(3, 1, np.array([-2.0]), np.array([2.0]), jax.random.key(0))
k = jax.random.split(jax.random.key(1), 4)
batch = rl.Transitions(
    jax.random.normal(k[0], (4, 3)), jax.random.uniform(k[1], (4, 1), minval=-2, maxval=2),
    jax.random.normal(k[2], (4,)), jax.random.normal(k[3], (4, 3)), jnp.zeros(4),
)
state, metrics = eqx.filter_jit(agent.update)(state, batch)
assert int(state.step) == 1 and all(bool(jnp.isfinite(v)) for v in metrics.values()), metrics
loaded = sorted(m for m in sys.modules if m.startswith("sdepolicy.app"))
try:
    import sdepolicy.app
except ImportError:
    print("app-blocked", loaded)
else:
    print("app-imported", loaded)
"""


def test_core_trains_with_gymnasium_and_minari_blocked():
    out = subprocess.run(
        [sys.executable, "-c", CORE_WITHOUT_THE_APPLICATION],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # The block is real (the application layer cannot be imported), and the core loaded none
    # of it.
    assert out.stdout.strip().splitlines()[-1] == "app-blocked []", out.stdout


def _imported_modules(path: pathlib.Path) -> set[str]:
    """The absolute module names a source file imports (relative imports resolved)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = ".".join(parts[:-1])  # where a relative import starts (also for an __init__.py)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def test_imports_point_down_only():
    """sde < policy < rl < app: no file of a floor imports a floor above it, and the core
    imports none of the application's third-party libraries, not even inside a function."""
    above = {
        "sde": ("sdepolicy.policy", "sdepolicy.rl", "sdepolicy.app"),
        "policy": ("sdepolicy.rl", "sdepolicy.app"),
        "rl": ("sdepolicy.app", *BLOCKED),
    }
    checked = 0
    for floor, forbidden in above.items():
        for path in sorted((PACKAGE / floor).rglob("*.py")):
            bad = sorted(
                name
                for name in _imported_modules(path)
                if any(name == f or name.startswith(f + ".") for f in forbidden)
            )
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
            checked += 1
    assert checked > 20
    # The check sees relative imports: the application's runner imports the core.
    runner = _imported_modules(PACKAGE / "app" / "_runner.py")
    assert "sdepolicy.rl" in runner and "sdepolicy.app._checkpoint" in runner
