"""Where a run trains besides this process: ``cluster.backend`` (``factory-train cluster=ray``).

``preflight.check_cluster`` checks a config's ``cluster`` without Ray or TensorFlow;
``ray_train.train_on_ray`` trains one run across Ray workers; ``log_relay`` brings the chief
worker's log back to the starting process. Ray is an optional dependency (``factory[ray]``),
imported only when a run uses it. This module only re-exports.
"""

from factory.cluster.preflight import check_cluster
from factory.cluster.ray_train import train_on_ray

__all__ = ["check_cluster", "train_on_ray"]
