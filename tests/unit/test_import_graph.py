"""The package's layers import downward only, without cycles, and TensorFlow stays out of the
layers that validate configs, decide policies and write records (read from the source, and
checked once in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import helpers
from tests.helpers import import_graph

# Bottom to top. A module may import modules of its own layer or of a lower one.
LAYERS = [
    (
        "factory.errors",
        "factory.names",
        "factory.run_dir",
        "factory.validation",
        "factory.processes",
        "factory.version",
    ),
    ("factory.features", "factory.policies"),
    ("factory.networks",),
    ("factory.model",),
    ("factory.config",),
    ("factory.serving",),
    ("factory.training",),
    ("factory.sweeps",),
    ("factory.cluster",),
    ("factory.cli",),
]
HEAVY = {"tensorflow", "keras"}
# Modules that must not import TensorFlow or Keras, directly or through other modules (module-level imports).
TF_FREE = (
    "factory",
    "factory.errors",
    "factory.names",
    "factory.run_dir",
    "factory.validation",
    "factory.processes",
    "factory.features.feature",
    "factory.features.spec",
    "factory.features.rules",
    "factory.features.encoder",
    "factory.features.writer",
    "factory.features.wire",
    "factory.features.images",
    "factory.features.conversion",
    "factory.features.sources",
    "factory.features.checks",
    "factory.features.tfrecord",
    "factory.features.statistics",
    "factory.features.accumulators",
    "factory.features.shards",
    "factory.features.drift",
    "factory.features.infer",
    "factory.features.infer_columns",
    "factory.features.table_sample",
    "factory.policies",
    "factory.networks",
    "factory.networks.registry",
    "factory.networks.wide_deep",
    "factory.config",
    "factory.config.settings",
    "factory.config.schema",
    "factory.config.resume",
    "factory.config.globs",
    "factory.serving.manifest",
    "factory.serving.export_tree",
    "factory.serving.inputs",
    "factory.serving.predictor",
    "factory.serving.batching",
    "factory.serving.rest_json",
    "factory.serving.json_values",
    "factory.serving.options",
    "factory.training.runner",
    "factory.training.schedule",
    "factory.training.hooks",
    "factory.training.randomness",
    "factory.sweeps.results",
    "factory.sweeps.trials",
    "factory.sweeps.sweep_dir",
    "factory.sweeps.hparams",
    "factory.sweeps.plots",
    "factory.sweeps.study",
    "factory.sweeps.search_space",
    "factory.sweeps.optimize",
    "factory.sweeps.optuna_config",
    "factory.cluster",
    "factory.cluster.preflight",
    "factory.cluster.log_relay",
    "factory.cluster.ray_train",
    "factory.cli",
    "factory.cli.summarize",
    "factory.cli.train_sweep",
    "factory.cli.train",
    "factory.cli.logs",
    "factory.cli.check",
    "factory.cli.init",
    "factory.cli.train_job",
    "factory.cli.serve",
)
# Packages a function may import on first use: TensorFlow and Keras (and protobuf, which comes
# with them), and optional dependencies a command needs for one flag or backend only: scikit-learn
# (`compare_with`), matplotlib (`summarize --plot`), Optuna (a sweep's study) and Ray (`cluster=ray`),
# and TensorBoard's protos (a sweep trial's hparams: 0.1 s that every factory-train start would pay).
DEFERRABLE = {"tensorflow", "keras", "google", "sklearn", "matplotlib", "optuna", "ray", "tensorboard", "pyarrow"}


def _layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return len(LAYERS)  # the package itself: the public API on top


EDGES = import_graph.edges()


def test_the_graph_is_read():
    modules = import_graph.modules()
    assert "factory.training.runner" in modules and "factory.features.spec" in modules
    assert any(e.source == "factory.features.spec" and e.target == "factory.features.rules" for e in EDGES)
    assert any(e.deferred for e in EDGES)


def test_no_cycles():
    assert import_graph.cycles(EDGES) == []


def test_layers_import_downward_only():
    upward = [
        f"{e.source} -> {e.target} (line {e.line})"
        for e in EDGES
        if e.target.startswith("factory") and _layer(e.target) > _layer(e.source)
    ]
    assert upward == []


@pytest.mark.parametrize("module", TF_FREE)
def test_tensorflow_stays_out(module):
    assert module in import_graph.modules()
    assert import_graph.reaches(module, EDGES, HEAVY) is None


def _imports_tensorflow(module: str) -> bool:
    return import_graph.reaches(module, EDGES, HEAVY) is not None or any(
        e.source == module and e.target in HEAVY and not e.deferred for e in EDGES
    )


def test_function_level_imports_only_defer_tensorflow():
    """An import inside a function exists to load TensorFlow (or an optional package) late,
    and says so in a comment on its line or the line above."""
    modules = import_graph.modules()
    wrong = []
    for e in EDGES:
        if not e.deferred:
            continue
        where = f"{e.source}:{e.line} imports {e.target} inside a function"
        if e.target.startswith("factory") and not _imports_tensorflow(e.target):
            wrong.append(f"{where}, but it loads no TensorFlow: import it at the top")
        elif not e.target.startswith("factory") and e.target not in DEFERRABLE:
            wrong.append(f"{where}: import it at the top")
        lines = modules[e.source].read_text().splitlines()
        if "#" not in lines[e.line - 1] and not lines[e.line - 2].lstrip().startswith("#"):
            wrong.append(f"{where} without a comment saying why")
    assert wrong == []


def test_config_validation_and_records_run_without_tensorflow(tmp_path):
    """Validating the default config, deciding policies and writing records load no TensorFlow."""
    code = f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(helpers.REPO)!r})
from tests.helpers import compose
from factory.config import load_config
from factory.policies import EarlyStopping
config = load_config(compose())
spec = config.features
with spec.writer({str(tmp_path / "r")!r}) as w:
    w.write_many({{"image": np.zeros((3, 8, 8, 1), np.uint8), "label": np.arange(3)}})
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert list(tmp_path.glob("r-*.tfrecord"))
