"""Helpers that tests import (fixtures live in tests/conftest.py)."""
