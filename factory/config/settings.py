"""Every key of the training config, declared once: type, default, allowed values and doc.

These frozen dataclasses are what ``load_config`` returns, and everything else about
the config is derived from them: ``schemas/config.schema.json`` (``python -m
factory.config.schema``), the defaults ``load_config`` fills in for absent keys, and
the ``train``, ``early_stop``, ``export`` and ``cluster`` groups ``factory-train`` composes (so
``factory.train(dict)`` and ``factory-train`` train the same model). A default
changes here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from factory.config.declaration import config_class, keys, setting
from factory.features.bundled import GENERATORS
from factory.features.spec import FeatureSpec
from factory.names import DEFAULT_MODEL_NAME, EVAL_PREFIX, MODEL_NAME_PATTERN, metric_names
from factory.networks.registry import split_network_group
from factory.policies import EXPORT_POLICIES
from factory.policies.monitor import MODES

# The JSON Schema generated from this module, in schemas/.
SCHEMA_FILE = "config.schema.json"
_FILES = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
}
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


def _files(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


# AdamW's weight decay when `train.optimizer.weight_decay` is null (Keras' own default).
ADAMW_WEIGHT_DECAY = 0.004


@config_class
class OptimizerConfig:
    name: str = setting("adam", "The optimizer.", enum=("adam", "adamw", "sgd", "rmsprop"))
    learning_rate: float = setting(0.002, "Peak learning rate (after warm-up).", exclusive_minimum=0)
    weight_decay: float | None = setting(
        None, f"Decoupled weight decay; null: none, or {ADAMW_WEIGHT_DECAY} for adamw.", minimum=0
    )
    momentum: float = setting(0.0, "Momentum of sgd and rmsprop.", minimum=0)
    clipnorm: float | None = setting(None, "Clip each gradient to this norm; null: no clipping.", exclusive_minimum=0)


@config_class
class ScheduleConfig:
    name: str = setting(
        "constant",
        "Learning-rate schedule: constant, cosine (to alpha at max_steps), exponential or step decay.",
        enum=("constant", "cosine", "exponential", "step"),
    )
    warmup_steps: int = setting(0, "Steps of linear warm-up from 0.", minimum=0)
    decay_steps: int = setting(1000, "Steps per decay (exponential, step).", minimum=1)
    decay_rate: float = setting(0.5, "Factor per decay_steps (exponential, step).", exclusive_minimum=0)
    alpha: float = setting(0.0, "cosine: final learning rate as a fraction of the initial.", minimum=0)


@config_class
class TrainConfig:
    batch_size: int = setting(64, "Examples per training step (across all replicas).", minimum=1)
    max_steps: int = setting(2000, "Training stops after this many steps.", minimum=1)
    eval_every_steps: int = setting(100, "Steps between evaluations.", minimum=1)
    eval_steps: int | None = setting(None, "Batches per evaluation; null: one full pass over data.eval.", minimum=1)
    steps_per_execution: int = setting(10, "Training steps per tf.function call.", minimum=1)
    loss: str | None = setting(
        None,
        "Regression loss (null: mse); classification and binary labels train with cross-entropy.",
        enum=(None, "mse", "mae"),
    )
    log_every_steps: int = setting(100, "Steps between training-loss log lines and summaries.", minimum=1)
    shuffle_buffer: int = setting(10_000, "Examples in the training input's shuffle buffer.", minimum=1)
    optimizer: OptimizerConfig = setting(OptimizerConfig, "The optimizer and its parameters.")
    lr_schedule: ScheduleConfig = setting(ScheduleConfig, "How the learning rate changes over the steps.")
    checkpoint_every_steps: int | None = setting(
        None, "Steps between checkpoints; null: at every evaluation.", minimum=1
    )
    keep_checkpoints: int = setting(3, "Newest checkpoints to keep.", minimum=1)
    resume_input: str = setting(
        "replay",
        "How a resumed run continues the input: replay (skip the batches already trained on, exact), "
        "iterator (checkpoint the tf.data iterator, exact, strategy default only), restart (start the input over).",
        enum=("replay", "iterator", "restart"),
    )
    deterministic: bool = setting(False, "Op determinism (slower); with `seed`, runs repeat bit for bit.")
    mixed_precision: str | None = setting(
        None, "Mixed-precision policy; null: float32.", enum=(None, "mixed_float16", "mixed_bfloat16")
    )
    jit_compile: bool = setting(False, "Compile the step functions with XLA.")
    strategy: str = setting(
        "default",
        "Distribution strategy (multi_worker_mirrored reads TF_CONFIG).",
        enum=("default", "mirrored", "multi_worker_mirrored"),
    )
    warm_start_from: str | None = setting(
        None, "A run dir or checkpoint whose weights (not optimizer) initialise the model."
    )
    progress: str = setting(
        "auto", "auto: a bar on a terminal, plain lines otherwise.", enum=("auto", "bar", "lines", "none")
    )
    resume_changes: tuple[str, ...] = setting(
        (),
        "Keys (or groups) a resume may change besides those always allowed (factory.config.resume.RESUMABLE), "
        "e.g. [train.optimizer.learning_rate]; any other difference from the run dir's config.yaml is refused.",
        schema={"type": "array", "items": {"type": "string", "pattern": _NAME}},
        convert=tuple,
    )


@config_class
class EarlyStopConfig:
    """Counted in evaluations, not steps; ``monitor`` also picks the best weights when disabled."""

    enabled: bool = setting(True, "Stop when the monitored metric stops improving.")
    monitor: str = setting("val_loss", "The metric that decides (and picks the best weights, even when disabled).")
    mode: str = setting("auto", "auto: max for accuracy and auc, min for loss, mae and mse.", enum=MODES)
    patience: int = setting(5, "Evaluations without improvement before stopping.", minimum=0)
    min_delta: float = setting(0.0, "Smallest change that counts as an improvement.", minimum=0)
    baseline: float | None = setting(None, "A value the metric must beat before the count resets; null: none.")
    start_from_eval: int = setting(0, "Initial evaluations to ignore (a warm-up).", minimum=0)


_FOLLOW = "; null: early_stop's."


@config_class
class BestExportConfig:
    enabled: bool = setting(True, "Export when the monitored metric improves.")
    monitor: str | None = setting(None, "The metric that ranks exports" + _FOLLOW)
    mode: str | None = setting(None, "auto, min or max" + _FOLLOW, enum=MODES)
    min_delta: float = setting(0.0, "Smallest improvement that exports.", minimum=0)
    keep: int = setting(2, "Best exports (by metric) to keep.", minimum=1)


@config_class
class LatestExportConfig:
    enabled: bool = setting(False, "Export at every evaluation.")
    keep: int = setting(1, "Newest exports to keep.", minimum=1)


@config_class
class FinalExportConfig:
    enabled: bool = setting(False, "Export once at the end of training.")
    weights: str = setting("best", "The best evaluation's weights, or the last ones.", enum=("best", "last"))
    monitor: str | None = setting(None, "The metric that picks the best weights" + _FOLLOW)
    mode: str | None = setting(None, "auto, min or max" + _FOLLOW, enum=MODES)
    min_delta: float = setting(0.0, "Smallest improvement that makes new best weights.", minimum=0)


@config_class
class ExportConfig:
    """The export policies (several may be on at once) and what every export shares."""

    best: BestExportConfig = setting(BestExportConfig, "Export on improvement; keep the `keep` best.")
    latest: LatestExportConfig = setting(LatestExportConfig, "Export at every evaluation; keep the `keep` newest.")
    final: FinalExportConfig = setting(FinalExportConfig, "Export once at the end, with the best or the last weights.")
    output_names: Mapping[str, str] = setting(
        {},
        "Rename signature outputs, e.g. {probabilities: probs}.",
        schema={"type": "object", "additionalProperties": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"}},
        convert=dict,
    )
    verify_tolerance: float = setting(
        1e-5, "Max difference between the loaded export and the trained model.", exclusive_minimum=0
    )
    model_name: str = setting(
        DEFAULT_MODEL_NAME,
        "The TF Serving model name in the manifest's example request.",
        schema={"type": "string", "pattern": MODEL_NAME_PATTERN},
    )

    @property
    def policies(self) -> dict[str, dict[str, Any]]:
        """``{name: constructor keyword arguments}`` of the enabled policies (``factory.policies.EXPORT_POLICIES``)."""
        groups = {name: getattr(self, name) for name in EXPORT_POLICIES}
        return {
            name: {f.name: getattr(group, f.name) for f in keys(type(group)) if f.name != "enabled"}
            for name, group in groups.items()
            if group.enabled
        }


# `cluster.backend` values; `ray` trains under this strategy in every worker (conf/cluster/ray.yaml sets it).
CLUSTER_BACKENDS = ("local", "ray")
CLUSTER_STRATEGY = "multi_worker_mirrored"


@config_class
class ClusterConfig:
    """Where the run trains: in this process (or the workers ``TF_CONFIG`` names), or across Ray workers."""

    backend: str = setting(
        "local",
        "local: this process trains (under train.strategy); ray: cluster.workers Ray workers train it together, "
        f"each under train.strategy={CLUSTER_STRATEGY} (pick it with cluster=ray).",
        enum=CLUSTER_BACKENDS,
    )
    workers: int = setting(2, "ray: the workers that train the run together, one TensorFlow worker each.", minimum=1)
    address: str | None = setting(
        None,
        "ray: the Ray cluster this machine is part of (ray.init's address: auto, or its head's HOST:PORT); "
        "null: a Ray instance of its own on this machine, started for the run and stopped after it.",
    )
    cpus_per_worker: int = setting(1, "ray: CPUs reserved for each worker.", minimum=1)


@config_class
class DataConfig:
    train: tuple[str, ...] = setting(
        doc="Training records: a glob of TFRecord files, or a list of globs.", schema=_FILES, convert=_files
    )
    eval: tuple[str, ...] = setting(doc="Evaluation records: a glob or a list of globs.", schema=_FILES, convert=_files)
    test: tuple[str, ...] | None = setting(
        None,
        "Test records, evaluated once at the end; null: none.",
        schema={"anyOf": [_FILES, {"type": "null"}]},
        convert=_files,
    )
    compression: str | None = setting(
        None, "null: from the file names.", enum=(None, "none", "GZIP", "ZLIB", "gzip", "zlib")
    )
    generate: str | None = setting(
        None,
        "Write a bundled dataset into `dir` when its records are missing.",
        enum=(None, *GENERATORS),
    )
    dir: str | None = setting(None, "Where `generate` writes the records.")


@config_class
class NetworkConfig:
    """A registered network: its registry key and the arguments of its build function."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _network(raw: Mapping[str, Any]) -> NetworkConfig:
    name, params = split_network_group(raw)
    return NetworkConfig(name=name, params=params)


@config_class
class Config:
    """One training run, validated. ``raw`` is the resolved dict it came from, absent keys filled in."""

    features: FeatureSpec = setting(
        doc="The feature spec: inputs, labels and their preprocessing.", schema={"$ref": "feature_spec.schema.json"}
    )
    network: NetworkConfig = setting(
        doc="`name` picks a registered network; every other key is passed to its build function.",
        schema={
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "description": "Registry key of the network."}},
            "additionalProperties": True,
        },
        convert=_network,
    )
    data: DataConfig = setting(doc="The records to train, evaluate and test on.")
    train: TrainConfig = setting(TrainConfig, "Steps, batches, optimizer, checkpoints and devices.")
    early_stop: EarlyStopConfig = setting(
        EarlyStopConfig, "When to stop; the monitored metric also picks the best weights."
    )
    export: ExportConfig = setting(ExportConfig, "Export policies; each writes RUN_DIR/export/<policy>/<version>/.")
    cluster: ClusterConfig = setting(
        ClusterConfig, "Where the run trains: here, or across the workers of a Ray cluster."
    )
    seed: int | None = setting(0, "Seeds weights, shuffling and augmentation.", minimum=0)
    imports: tuple[str, ...] = setting(
        (),
        "Python modules to import before the network is looked up (they register networks with @register_network).",
        schema={"type": "array", "items": {"type": "string", "pattern": _NAME}},
        convert=tuple,
    )
    compare_with: tuple[str, ...] = setting(
        (),
        "scikit-learn reference models fitted on the same split, reported next to the test metrics "
        "(ridge: RidgeCV for regression; logistic: LogisticRegression for classification).",
        schema={"type": "array", "items": {"enum": ["ridge", "logistic"]}},
        convert=tuple,
    )
    run_dir: str | None = setting(
        None, "Where the run writes everything (the Hydra app sets hydra.run.dir); null: runs/<timestamp>."
    )
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def task(self) -> str:
        return self.features.label.task

    def metric_names(self, prefix: str = EVAL_PREFIX) -> list[str]:
        return metric_names(self.task, prefix)
