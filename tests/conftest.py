"""Test setup shared by both tiers: quiet TensorFlow, and bundled datasets cached per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest

# Asserts inside the shared helpers report their values as asserts in tests do.
pytest.register_assert_rewrite("tests.helpers")

from tests import helpers  # noqa: E402


@pytest.fixture
def digits_like():
    return helpers.digits_like()


@pytest.fixture(scope="session", autouse=True)
def _record_cache(tmp_path_factory):
    """Bundled datasets are generated once per test session, not into the user's cache."""
    os.environ["FACTORY_CACHE"] = str(tmp_path_factory.mktemp("factory-cache"))
