"""factory: a declarative, config-driven model factory for TensorFlow.

Importing this package does not import TensorFlow (about 0.2 s); the pieces that need it
import it when first used.
"""

from factory.version import __version__  # noqa: I001 - first: modules below may read it
from factory.config import load_config
from factory.errors import ConfigError, FactoryError, RecordError
from factory.features.feature import Feature
from factory.features.spec import FeatureSpec
from factory.networks.registry import register_network
from factory.serving.predictor import load_export
from factory.training.runner import train

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
