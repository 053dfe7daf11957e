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


@pytest.fixture(scope="session", autouse=True)
def _record_cache(tmp_path_factory):
    """Bundled datasets are generated once per test session, not into the user's cache."""
    os.environ["FACTORY_CACHE"] = str(tmp_path_factory.mktemp("factory-cache"))


def compose(*overrides: str) -> dict:
    """The resolved config of ``conf/config.yaml`` with Hydra overrides, as a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from factory.spec import resource_dir

    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


# A run that takes a few seconds: a small MLP on the digits, evaluated every 20 steps.
TINY = (
    "network=mlp",
    "network.hidden=[32]",
    "train.batch_size=32",
    "train.max_steps=60",
    "train.eval_every_steps=20",
    "train.steps_per_execution=5",
    "train.progress=none",
)
