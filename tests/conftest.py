"""Shared fixtures."""

import pytest

from helpers import random_cohort


@pytest.fixture
def cohort():
    return random_cohort()
