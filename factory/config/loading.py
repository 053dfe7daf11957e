"""``load_config``: a composed config dict in, a validated, frozen ``Config`` out, without TensorFlow.

Absent keys take their defaults from ``settings.py``, so a dict that leaves out the
``train``, ``early_stop`` and ``export`` groups trains what ``factory-train`` trains.
The dict is checked against ``schemas/config.schema.json`` (which embeds the feature
spec schema), then against the rules a schema cannot express (the monitored metric
exists for this task, the network's parameters match its build function); every
problem is reported at once with its dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.config.declaration import build, fill
from factory.config.resume import flatten
from factory.config.settings import SCHEMA_FILE, Config, ExportConfig, TrainConfig
from factory.errors import ConfigError
from factory.features.spec import FeatureSpec
from factory.names import metric_names, output_names
from factory.networks import plugins, registry
from factory.policies import EXPORT_POLICIES
from factory.validation import did_you_mean, plain, schema_problems


def load_config(config: Mapping[str, Any], source: str | None = None, check_network: bool = True) -> Config:
    """Validate a composed config dict (every problem at once) and build a ``Config``.

    Keys left out take the defaults of ``factory.config.settings``; ``features``,
    ``network`` and ``data`` (its ``train`` and ``eval``) are required. A ``hydra``
    key is ignored. ``check_network`` also imports ``imports:`` and checks the network
    name and its parameters against the registry; the built-in networks import
    without TensorFlow, so this stays fast unless a listed module imports it.
    """
    raw = plain(config)
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {type(config).__name__}", source)
    raw.pop("hydra", None)
    raw = fill(raw, Config)
    problems = schema_problems(raw, SCHEMA_FILE)
    if problems:
        # Feature-spec problems carry their place in the composed config.
        raise ConfigError(problems, source)
    try:
        spec = FeatureSpec.from_dict(raw["features"], prefix="features")
    except ConfigError as err:
        raise ConfigError(err.problems, source) from None
    _follow_early_stop(raw)
    config = build(Config, raw, features=spec, raw=raw)

    problems = []
    if len(spec.labels) != 1:
        problems.append(f"features.labels: training needs exactly one label, found {len(spec.labels)}")
    problems += _train_problems(config.train, spec)
    problems += _resume_changes_problems(config.train.resume_changes, raw)
    if config.data.generate and not config.data.dir:
        problems.append("data.dir: `generate` needs a directory to write the records into")
    if not problems:  # the monitor also picks the best weights when early stopping is off
        problems += _monitor_problems("early_stop.monitor", config.early_stop.monitor, spec.label.task)
    if not problems:
        named = spec.label.vocabulary is not None or spec.label.auto_vocabulary is not None
        problems += _export_problems(config.export, spec.label.task, named)
    problems += [
        f"compare_with: the reference models read columns of numbers, but features.{f.name}.text.output is "
        "`sequence` (word ids in text order); use `multi_hot` or `tf_idf` for them, or drop compare_with"
        for f in spec.features
        if config.compare_with and f.text is not None and f.text.output == "sequence"
    ]
    if check_network:
        try:
            plugins.import_modules(list(config.imports))
            problems += registry.check_params(config.network.name, dict(config.network.params))
            problems += registry.raw_input_problems(config.network.name, spec)
            raw = registry.raw_inputs(config.network.name)
            if config.compare_with and raw:
                problems.append(
                    f"compare_with: the reference models read the encoded features, but network "
                    f"'{config.network.name}' takes {', '.join(raw)} as read (register_network(raw=...)); "
                    "drop compare_with for this network"
                )
        except ConfigError as err:
            problems += err.problems
    if problems:
        raise ConfigError(problems, source)
    return config


def _follow_early_stop(raw: dict[str, Any]) -> None:
    """Set each export policy's null ``monitor`` and ``mode`` to early stopping's, in ``raw``
    itself: the run dir's ``config.yaml`` and every manifest record what was used."""
    for group in raw["export"].values():
        if isinstance(group, dict) and "monitor" in group:  # the policies that judge by a metric
            for key in ("monitor", "mode"):
                if group[key] is None:
                    group[key] = raw["early_stop"][key]


def _train_problems(train: TrainConfig, spec: FeatureSpec) -> list[str]:
    problems = []
    if train.steps_per_execution > train.eval_every_steps:
        problems.append(
            f"train.steps_per_execution: {train.steps_per_execution} is larger than train.eval_every_steps "
            f"({train.eval_every_steps}); evaluations happen between executions"
        )
    if train.loss is not None and spec.labels and spec.labels[0].task != "regression":
        problems.append(
            f"train.loss: '{train.loss}' is a regression loss; a {spec.labels[0].task} label trains with cross-entropy (drop train.loss)"
        )
    if train.resume_input == "iterator" and train.strategy != "default":
        problems.append(
            f"train.resume_input: 'iterator' needs train.strategy=default (a distributed iterator cannot be "
            f"checkpointed); use 'replay', which continues the input exactly under '{train.strategy}' too"
        )
    return problems


def _resume_changes_problems(names: tuple[str, ...], raw: dict[str, Any]) -> list[str]:
    """Each name in ``train.resume_changes`` is a key of the config, or a group of keys."""
    known = [k for k in flatten(raw) if not k.startswith("features.")]
    groups = {k.rsplit(".", i)[0] for k in known for i in range(1, k.count(".") + 1)}
    problems = []
    for i, name in enumerate(names):
        if name not in known and name not in groups and not name.startswith("features"):
            problems.append(
                f"train.resume_changes[{i}]: '{name}' is not a key of this config{did_you_mean(name, known)}; "
                "list dotted keys such as train.optimizer.learning_rate"
            )
    return problems


def _monitor_problems(key: str, monitor: str, task: str) -> list[str]:
    available = metric_names(task)
    if monitor in available:
        return []
    return [
        f"{key}: no evaluation produces '{monitor}'{did_you_mean(monitor, available)}; a {task} run reports {', '.join(available)}"
    ]


def _export_problems(export: ExportConfig, task: str, named_classes: bool = False) -> list[str]:
    problems = []
    for name, args in export.policies.items():
        if "monitor" in args and args.get("weights") != "last":
            found = _monitor_problems(f"export.{name}.monitor", args["monitor"], task)
            if found:
                problems += found
                continue
        try:
            EXPORT_POLICIES[name](**args)
        except ConfigError as err:
            problems += [
                p if p.startswith(f"export.{name}") else p.replace("export.", f"export.{name}.", 1)
                for p in err.problems
            ]
    outputs = output_names(task, named_classes)
    for key in export.output_names:
        if key not in outputs:
            problems.append(
                f"export.output_names.{key}: a {task} export has no output '{key}'{did_you_mean(key, outputs)}; outputs: {', '.join(outputs)}"
            )
    return problems
