"""Names that several layers share: an export's signatures, inputs and outputs, the metrics by
task and the export tree's directory names. Plain constants: this module imports nothing.
"""

from __future__ import annotations

# The signatures of every export (TF Serving calls the first one when a request names none).
DEFAULT_SIGNATURE = "serving_default"
EXAMPLE_SIGNATURE = "tf_example"
# The one input of the `tf_example` signature: a 1-D string tensor of serialized tf.train.Example.
EXAMPLES_INPUT = "examples"

TASKS = ("classification", "binary", "regression")
# The model's output layer and the raw scores among the outputs.
HEAD = "logits"
# The outputs of both signatures, by task (renamed with `export.output_names`).
OUTPUTS = {
    "classification": ("probabilities", "class_ids", HEAD),
    "binary": ("probability", "class_ids", HEAD),
    "regression": ("predictions",),
}
# The class names (a string tensor shaped like ``class_ids``): an output of a classification
# export whose label has a string vocabulary, after the others.
CLASSES = "classes"


def output_names(task: str, named_classes: bool = False) -> tuple[str, ...]:
    """The outputs of an export for ``task``; ``named_classes``: its label has a string vocabulary."""
    return (*OUTPUTS[task], CLASSES) if named_classes and task == "classification" else OUTPUTS[task]


# Evaluation metrics by task, reported as `val_<name>` (and `test_<name>` on the test split).
TASK_METRICS = {
    "classification": ("loss", "accuracy"),
    "binary": ("loss", "accuracy", "auc"),
    "regression": ("loss", "mae", "mse"),
}
EVAL_PREFIX = "val_"
TEST_PREFIX = "test_"

# The export tree: RUN_DIR/export/<policy>/<version>/ holds a SavedModel and its manifest, and
# <policy>/current links to the version the policy stands behind.
SAVED_MODEL = "saved_model.pb"
MANIFEST = "assets.extra/manifest.json"
# The statistics of the training records the export's weights were trained on (a copy of the
# run's statistics.json): what `factory check --against` compares new records with.
EXPORT_STATISTICS = "assets.extra/statistics.json"
# TF Serving's warmup file (a TFRecord of PredictionLog, at most WARMUP_LIMIT records): it replays
# them when it loads the version, and so does `factory serve`, before the version is AVAILABLE.
WARMUP_REQUESTS = "assets.extra/tf_serving_warmup_requests"
WARMUP_LIMIT = 1000
# The TF Serving model name (export.model_name, `factory serve --model-name`): its default and form.
DEFAULT_MODEL_NAME = "model"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
CURRENT = "current"
# Which policy an export dir (or a run dir) stands for, in order of preference.
POLICY_PREFERENCE = ("best", "final", "latest")


def metric_names(task: str, prefix: str = EVAL_PREFIX) -> list[str]:
    """``['val_loss', 'val_accuracy']`` for a classification task, and so on."""
    return [prefix + m for m in TASK_METRICS[task]]
