"""Helpers shared by the test tiers: the repository root, tiny configs, Hydra composition."""

from __future__ import annotations

import copy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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


def digits_like() -> dict:
    """A fresh copy of a digits-like feature spec (PNG images and a 10-class label)."""
    return copy.deepcopy(DIGITS_LIKE)


def compose(*overrides: str) -> dict:
    """The resolved config of ``conf/config.yaml`` with Hydra overrides, as a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    import factory.cli.train  # noqa: F401  (registers the train, early_stop and export defaults with Hydra)
    from factory.validation import resource_dir

    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)
