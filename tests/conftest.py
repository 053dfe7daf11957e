"""Shared test setup: quiet TensorFlow, and small helpers to build specs and records in tmp_path."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest

DIGITS_LIKE = {
    "features": {
        "image": {
            "dtype": "uint8",
            "shape": [8, 8, 1],
            "encoding": "png",
            "preprocess": {"scale": 1 / 255},
            "augment": {"translate": 1, "brightness": 0.1},
        }
    },
    "labels": {"label": {"dtype": "int64", "shape": [], "num_classes": 10}},
}


@pytest.fixture
def digits_like():
    import copy

    return copy.deepcopy(DIGITS_LIKE)
