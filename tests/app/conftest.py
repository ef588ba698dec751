"""Fixtures shared by the application tests."""

import pytest


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A fresh Minari datasets root (MINARI_DATASETS_PATH) for the importer's tests."""
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path
