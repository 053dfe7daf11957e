"""factory: a declarative, config-driven model factory for TensorFlow.

Importing this package does not import TensorFlow; the pieces that need it
import it when first used.
"""

from factory.errors import ConfigError, FactoryError, RecordError
from factory.features.spec import Feature, FeatureSpec

__version__ = "0.1.0"

__all__ = ["ConfigError", "FactoryError", "Feature", "FeatureSpec", "RecordError", "__version__"]
