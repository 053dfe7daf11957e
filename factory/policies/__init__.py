"""Training policies: when to stop early and when to export, in plain Python.

A policy takes the metrics of one evaluation and returns a decision. Its whole
state is a small strict-JSON dict (``state_dict()``) that the runner stores with
the checkpoint, so a resumed run decides exactly as an uninterrupted one would.
Nothing here imports TensorFlow or Keras.

One ``Monitor`` (``monitor.py``) decides what "better" means for every policy;
``early_stopping.py`` holds ``EarlyStopping``, ``exports.py`` the export
policies and ``retention.py`` the versions and retention they share. Every
constructor argument is required: the values come from the config, whose
defaults are declared once in ``factory.config.settings``.

The rules are those of Keras 3's callbacks with one evaluation in place of one
epoch, except that bad settings and missing metrics raise where Keras warns. Evaluations are counted from 1 (``best_eval=1`` is the first
evaluation), where Keras counts epochs from 0.
"""

from factory.policies.early_stopping import EarlyStopping
from factory.policies.exports import EXPORT_POLICIES, BestExport, FinalExport, LatestExport
from factory.policies.monitor import MetricError, Monitor, PolicyStateError

__all__ = [
    "EXPORT_POLICIES",
    "BestExport",
    "EarlyStopping",
    "FinalExport",
    "LatestExport",
    "MetricError",
    "Monitor",
    "PolicyStateError",
]
