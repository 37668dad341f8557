"""Fixtures for the admin API tests: ``admin`` (harness/admin.py) on both database kinds."""

from __future__ import annotations

import pytest
from harness.admin import Admin, make_admin
from harness.served import Served


@pytest.fixture
def admin(served: Served) -> Admin:
    return make_admin(served)
