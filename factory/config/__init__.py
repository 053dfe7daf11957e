"""The training config: a validated dict in, frozen typed objects out, without TensorFlow.

``settings.py`` declares every key once (type, default, allowed values, doc);
``loading.py`` holds ``load_config``; ``schema.py`` generates
``schemas/config.schema.json`` from the settings; ``declaration.py`` is how a key
is declared. This module only re-exports.
"""

from factory.config.declaration import defaults
from factory.config.loading import load_config
from factory.config.settings import (
    BestExportConfig,
    ClusterConfig,
    Config,
    DataConfig,
    EarlyStopConfig,
    ExportConfig,
    FinalExportConfig,
    LatestExportConfig,
    NetworkConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)

# The groups `factory-train` composes from these defaults rather than from YAML files.
DEFAULTED_GROUPS = {
    "train": TrainConfig,
    "early_stop": EarlyStopConfig,
    "export": ExportConfig,
    "cluster": ClusterConfig,
}

__all__ = [
    "DEFAULTED_GROUPS",
    "BestExportConfig",
    "ClusterConfig",
    "Config",
    "DataConfig",
    "EarlyStopConfig",
    "ExportConfig",
    "FinalExportConfig",
    "LatestExportConfig",
    "NetworkConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "defaults",
    "load_config",
]
