"""The README and the guides in docs/ are executable documentation: their Python examples run,
their relative links point at files that exist, and CI runs the README's test command."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_examples_run():
    blocks = _python_blocks(README)
    assert blocks, "the README should carry at least one Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.parametrize("doc", [d for d in DOCS if _python_blocks(d.read_text())], ids=str)
def test_docs_python_examples_run(doc):
    for block in _python_blocks(doc.read_text()):
        exec(compile(block, str(doc.relative_to(ROOT)), "exec"), {})


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *DOCS])
def test_relative_links_resolve(doc):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
    missing = [
        link
        for link in links
        if "://" not in link and not (doc.parent / link).exists()
    ]
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_stays_a_door():
    assert len(README.splitlines()) <= 250, "the README is a door: details go to docs/"


def test_ci_runs_the_readme_test_command():
    quickstart = re.search(r"## Quickstart\n\n```bash\n(.*?)```", README, re.S).group(1)
    test_cmd = [line for line in quickstart.splitlines() if "pytest" in line]
    assert len(test_cmd) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0].strip() in [line.strip() for line in ci.splitlines()]
