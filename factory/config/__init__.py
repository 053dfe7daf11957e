"""The training config: a validated dict in, frozen typed objects out, without TensorFlow.

``load_config`` checks the composed config against ``schemas/config.schema.json``
(which embeds the feature spec schema), then the rules a schema cannot express
(the monitored metric exists for this task, the network's parameters match
its build function), and reports every problem at once with its dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from factory.errors import ConfigError
from factory.features.spec import FeatureSpec
from factory.names import OUTPUTS, metric_names
from factory.validation import did_you_mean, plain, schema_problems


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adam"
    learning_rate: float = 0.001
    weight_decay: float | None = None
    momentum: float = 0.0
    clipnorm: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"
    warmup_steps: int = 0
    decay_rate: float = 0.5
    decay_steps: int = 1000
    alpha: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    max_steps: int = 2000
    eval_every_steps: int = 100
    eval_steps: int | None = None
    steps_per_execution: int = 10
    loss: str | None = None
    log_every_steps: int = 100
    shuffle_buffer: int = 10_000
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 3
    resume_input: str = "replay"
    deterministic: bool = False
    mixed_precision: str | None = None
    jit_compile: bool = False
    strategy: str = "default"
    warm_start_from: str | None = None
    progress: str = "auto"


@dataclass(frozen=True)
class EarlyStopConfig:
    enabled: bool = True
    monitor: str = "val_loss"
    mode: str = "auto"
    patience: int = 5
    min_delta: float = 0.0
    baseline: float | None = None
    start_from_eval: int = 0


@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...]
    eval: tuple[str, ...]
    test: tuple[str, ...] | None = None
    compression: str | None = None
    generate: str | None = None
    dir: str | None = None


@dataclass(frozen=True)
class ExportConfig:
    best: Mapping[str, Any] | None = None      # BestExport arguments, or None when disabled
    latest: Mapping[str, Any] | None = None    # LatestExport arguments
    final: Mapping[str, Any] | None = None     # FinalExport arguments
    output_names: Mapping[str, str] = field(default_factory=dict)
    verify_tolerance: float = 1e-5
    model_name: str = "model"

    @property
    def policies(self) -> dict[str, Mapping[str, Any]]:
        """Enabled policies by name, with their constructor arguments."""
        return {name: args for name in ("best", "latest", "final") if (args := getattr(self, name)) is not None}


def _export_config(raw: Mapping[str, Any]) -> ExportConfig:
    def enabled(name: str) -> dict | None:
        group = dict(raw.get(name) or {})
        return None if not group.pop("enabled", False) else group

    return ExportConfig(
        best=enabled("best"),
        latest=enabled("latest"),
        final=enabled("final"),
        output_names=dict(raw.get("output_names") or {}),
        verify_tolerance=float(raw.get("verify_tolerance", 1e-5)),
        model_name=raw.get("model_name", "model"),
    )


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """One training run, validated. ``raw`` is the resolved dict it came from."""

    features: FeatureSpec
    network: NetworkConfig
    train: TrainConfig
    early_stop: EarlyStopConfig
    data: DataConfig
    export: ExportConfig = field(default_factory=ExportConfig)
    seed: int | None = 0
    imports: tuple[str, ...] = ()
    compare_with: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def task(self) -> str:
        return self.features.label.task

    def metric_names(self, prefix: str = "val_") -> list[str]:
        return metric_names(self.task, prefix)


def _files(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _known(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _export_problems(export: ExportConfig, task: str) -> list[str]:
    from factory.policies import EXPORT_POLICIES

    problems = []
    available = metric_names(task)
    for name, args in export.policies.items():
        monitor = args.get("monitor")
        if monitor is not None and monitor not in available and args.get("weights") != "last":
            problems.append(
                f"export.{name}.monitor: no evaluation produces '{monitor}'{did_you_mean(monitor, available)}; "
                f"a {task} run reports {', '.join(available)}"
            )
            continue
        try:
            EXPORT_POLICIES[name](**args)
        except ConfigError as err:
            problems += [p if p.startswith(f"export.{name}") else p.replace("export.", f"export.{name}.", 1) for p in err.problems]
    outputs = OUTPUTS[task]
    for key in export.output_names:
        if key not in outputs:
            problems.append(f"export.output_names.{key}: a {task} export has no output '{key}'{did_you_mean(key, outputs)}; outputs: {', '.join(outputs)}")
    return problems


def load_config(config: Mapping[str, Any], source: str | None = None, check_network: bool = True) -> Config:
    """Validate a composed config dict (every problem at once) and build a ``Config``.

    ``check_network`` also imports ``imports:`` and checks the network name and
    its parameters against the registry; the built-in networks import without
    TensorFlow, so this stays fast unless a listed module imports it.
    """
    raw = plain(config)
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {type(config).__name__}", source)
    raw.pop("hydra", None)
    problems = schema_problems(raw, "config.schema.json")
    if problems:
        # Feature-spec problems carry their place in the composed config.
        raise ConfigError(problems, source)
    try:
        spec = FeatureSpec.from_dict(raw["features"], prefix="features")
    except ConfigError as err:
        raise ConfigError(err.problems, source) from None

    problems = []
    if len(spec.labels) != 1:
        problems.append(f"features.labels: training needs exactly one label, found {len(spec.labels)}")
    train_raw = dict(raw["train"])
    optimizer = OptimizerConfig(**_known(OptimizerConfig, train_raw.pop("optimizer", {}) or {}))
    schedule = ScheduleConfig(**_known(ScheduleConfig, train_raw.pop("lr_schedule", {}) or {}))
    train = TrainConfig(optimizer=optimizer, lr_schedule=schedule, **_known(TrainConfig, train_raw))
    early = EarlyStopConfig(**_known(EarlyStopConfig, raw["early_stop"]))
    data_raw = raw["data"]
    data = DataConfig(
        train=_files(data_raw["train"]),
        eval=_files(data_raw["eval"]),
        test=_files(data_raw.get("test")),
        compression=data_raw.get("compression"),
        generate=data_raw.get("generate"),
        dir=data_raw.get("dir"),
    )
    from factory.networks.registry import split_network_group

    name, params = split_network_group(raw["network"])
    network = NetworkConfig(name=name, params=params)
    imports = tuple(raw.get("imports") or ())

    if train.steps_per_execution > train.eval_every_steps:
        problems.append(
            f"train.steps_per_execution: {train.steps_per_execution} is larger than train.eval_every_steps "
            f"({train.eval_every_steps}); evaluations happen between executions"
        )
    if train.loss is not None and spec.labels and spec.labels[0].task != "regression":
        problems.append(f"train.loss: '{train.loss}' is a regression loss; a {spec.labels[0].task} label trains with cross-entropy (drop train.loss)")
    if train.resume_input == "iterator" and train.strategy != "default":
        problems.append(
            f"train.resume_input: 'iterator' needs train.strategy=default (a distributed iterator cannot be "
            f"checkpointed); use 'replay', which continues the input exactly under '{train.strategy}' too"
        )
    if data.generate and not data.dir:
        problems.append("data.dir: `generate` needs a directory to write the records into")
    if not problems:  # the monitor also picks the best weights when early stopping is off
        available = metric_names(spec.label.task)
        if early.monitor not in available:
            problems.append(
                f"early_stop.monitor: no evaluation produces '{early.monitor}'{did_you_mean(early.monitor, available)}; "
                f"a {spec.label.task} run reports {', '.join(available)}"
            )
    export = _export_config(raw.get("export") or {})
    if not problems:
        problems += _export_problems(export, spec.label.task)
    if check_network:
        from factory.networks import plugins, registry

        try:
            plugins.import_modules(list(imports))
            problems += registry.check_params(network.name, dict(network.params))
        except ConfigError as err:
            problems += err.problems
    if problems:
        raise ConfigError(problems, source)
    return Config(
        features=spec,
        network=network,
        train=train,
        early_stop=early,
        data=data,
        export=export,
        seed=raw.get("seed", 0),
        imports=imports,
        compare_with=tuple(raw.get("compare_with") or ()),
        raw=raw,
    )
