"""Shared fixtures."""

import pytest

from helpers import random_cohort
from model_helpers import torch_threads


@pytest.fixture
def cohort():
    return random_cohort()


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module's tests (2-thread OpenMP stalls under CPU contention)."""
    with torch_threads(1):
        yield
