"""factory: a declarative, config-driven model factory for TensorFlow.

Importing this package does not import TensorFlow; the pieces that need it
import it when first used.
"""

from factory.errors import ConfigError, FactoryError, RecordError
from factory.features.feature import Feature
from factory.features.spec import FeatureSpec
from factory.networks.registry import register_network
from factory.version import __version__

__all__ = [
    "ConfigError",
    "FactoryError",
    "Feature",
    "FeatureSpec",
    "RecordError",
    "__version__",
    "load_config",
    "load_export",
    "register_network",
    "train",
]


def __getattr__(name: str):
    # Lazy: `factory.train` and `factory.load_config` pull in more modules than a spec needs.
    if name == "train":
        from factory.training.runner import train

        return train
    if name == "load_export":
        from factory.serving.predictor import load_export

        return load_export
    if name == "load_config":
        from factory.config import load_config

        return load_config
    raise AttributeError(f"module 'factory' has no attribute {name!r}")
