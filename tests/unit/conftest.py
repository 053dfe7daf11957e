"""The fast tier: rules, tables and files, without TensorFlow.

Every test here fails if it imports TensorFlow or Keras (in this process), so the
tier stays fast and the layers it covers stay free of them.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_tensorflow():
    before = {m for m in ("tensorflow", "keras") if m in sys.modules}
    yield
    heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules and m not in before)
    if heavy:
        pytest.fail(f"a unit test imported {', '.join(heavy)}; move it to tests/integration", pytrace=False)
