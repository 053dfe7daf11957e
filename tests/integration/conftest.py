"""The integration tier: real TensorFlow, real training, real files and processes; all marked ``slow``."""

from __future__ import annotations

import pathlib
import sys

import pytest

from factory.serving.predictor import load_export
from tests.helpers.predict import digits_test_records, train_tiny_run

_HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _float32_after_each_test():
    """Keras' dtype policy is global: a test that trains in mixed precision leaves it set, and a later
    test in the same process that builds a model without ``train()`` would build it in that policy."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_dtype_policy("float32")


# -- one small trained digits run, shared by the predict tests ----------------------------------


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, _record_cache):
    """A tiny digits run with a best export (trained once per session)."""
    return train_tiny_run(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture(scope="session")
def predictor(run_dir):
    return load_export(run_dir)


@pytest.fixture(scope="session")
def test_records(run_dir):
    """The digits test split as serialized records, and their decoded pixels and labels."""
    return digits_test_records()


@pytest.fixture(scope="session")
def reference(predictor, test_records):
    """What the ``tf_example`` signature gives for every test record."""
    return predictor.predict_examples(test_records[1])
