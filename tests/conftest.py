"""Shared pytest setup for the whole tree. Service fixtures (Postgres, Redis, processes) live in
tests/service/conftest.py so grader and reference tests need neither."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
