"""Shared pytest fixtures."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def wordnet() -> Any:
    """nltk's WordNet 3.0 reader, loaded once per test session (~4 s)."""
    from consis_lib.wordnet import load_wordnet

    return load_wordnet()
