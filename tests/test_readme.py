"""The README is executable documentation: its examples run and CI runs its test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README should carry at least one Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    quickstart = re.search(r"## Quickstart\n\n```bash\n(.*?)```", README, re.S).group(1)
    test_cmd = [line for line in quickstart.splitlines() if "pytest" in line]
    assert len(test_cmd) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0].strip() in [line.strip() for line in ci.splitlines()]
