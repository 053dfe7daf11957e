"""Serving benchmark: an exported SavedModel against the same Keras model called in-process.

Trains a small digits model with ``factory.training.runner.train`` (or takes an existing
run with ``--run-dir``), loads ``RUN_DIR/export/best/current`` with
``tf.saved_model.load`` and measures per-request latency, in microseconds, of:

- ``serving_default``: ``loaded.signatures["serving_default"](image=uint8 batch)``;
- ``keras forward``: the baseline, the same network rebuilt with
  ``factory.model.builder.build_model`` and given the ``checkpoints/best/weights``, in a
  ``tf.function(jit_compile=False)`` that runs the same preprocessing
  (``FeatureTransform.preprocess``), ``model(features, training=False)`` and the
  output head (``factory.model.builder.predictions``), called with the same tensor;
- ``keras concrete``: for reference, the baseline's traced ``ConcreteFunction``
  called directly (no ``tf.function`` dispatch: the cheapest way to call the
  same graph from Python);
- ``model(x)``: for reference, the bare compiled forward pass on already
  preprocessed inputs (no preprocessing, no head); with ``--eager`` also
  ``model(x) eager``, the same call without ``tf.function`` (kept out by
  default: it is ten times slower and its Python disturbs the others);
- ``restored fn``: for reference, the export's restored ``tf.function``
  (``loaded.serving_default({"image": x})``), the other way to call it;
- ``sig rewrapped``: for reference, ``serving_default`` traced once more into
  a ``ConcreteFunction`` made in this process; calling that skips the Python
  that ``tf.saved_model.load`` runs per captured variable on every call of a
  loaded function (compared with ``keras concrete``);
- ``tf_example``: ``loaded.signatures["tf_example"](examples=...)`` on
  serialized records of the test split (parse and PNG decode included),
  compared with ``serving_default`` on the same records, already decoded.

Each is timed at batch 1 (``--calls-1`` calls) and batch 256
(``--calls-256`` calls) after ``--warmup`` calls. The paths take turns call by
call, so machine noise hits them alike; the whole measurement runs
``--rounds`` times and each path keeps its best median (and that round's
p90). Target: ``serving_default`` at most 1.2x the Keras forward pass at
batch 1. The exit status is 0 whether or not the target is met: this is a
measurement, not a test.

    python benchmarks/serving_benchmark.py [--run-dir RUN_DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Before TensorFlow is imported: its C++ logging and the oneDNN notice would drown the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras
import numpy as np
import tensorflow as tf
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from factory.config import Config, load_config
from factory.features.pipeline import resolve_files
from factory.features.tfrecord import compression_of
from factory.features.transform import FeatureTransform
from factory.model.builder import build_model, head_spec, predictions
from factory.names import DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE, EXAMPLES_INPUT
from factory.training.runner import train
from factory.validation import resource_dir

BATCHES = (1, 256)
TARGET = 1.2  # serving_default / keras forward, at batch 1
KERAS = "keras forward"
SERVING = "serving_default"
CONCRETE = "keras concrete"
REWRAPPED = "sig rewrapped"
EAGER = "model(x) eager"
MODEL = "model(x)"
RESTORED = "restored fn"


# -- the run to serve -------------------------------------------------------------------------


def train_run(run_dir: Path, steps: int) -> None:
    """Train the default digits ``cnn`` for ``steps`` steps into ``run_dir`` (exports ``best``)."""
    overrides = [f"train.max_steps={steps}", f"train.eval_every_steps={max(steps // 2, 1)}", "train.progress=none"]
    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    raw = OmegaConf.to_container(cfg, resolve=True)
    train(raw, run_dir=run_dir)


def load_run(run_dir: Path) -> tuple[Config, Any]:
    """The run's config and its ``best`` export, loaded with ``tf.saved_model.load``."""
    config = load_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    export = run_dir / "export" / "best" / "current"
    if not export.exists():
        raise SystemExit(f"{export} does not exist: train with the `best` export policy enabled")
    return config, tf.saved_model.load(str(export))


def rebuild_model(config: Config, run_dir: Path) -> keras.Model:
    """The run's network, rebuilt in this process with the best weights of the run."""
    model = build_model(config.features, config.network.name, dict(config.network.params))
    status = tf.train.Checkpoint(model=model).read(str(run_dir / "checkpoints" / "best" / "weights"))
    status.assert_existing_objects_matched().expect_partial()  # the optimizer is not wanted
    return model


def test_records(config: Config, count: int) -> list[bytes]:
    """``count`` serialized records of the test split (the eval split if there is none), cycled if short."""
    files = resolve_files(list(config.data.test or config.data.eval))
    records: list[bytes] = []
    for path in files:
        ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, config.data.compression))
        records += [r.numpy() for r in ds.take(count - len(records))]
        if len(records) >= count:
            break
    if not records:
        raise SystemExit(f"no records in {files}")
    return list(itertools.islice(itertools.cycle(records), count))


# -- timing -----------------------------------------------------------------------------------


def time_interleaved(paths: dict[str, Callable[[], Any]], calls: int, warmup: int) -> dict[str, list[float]]:
    """Per-call seconds of each path; the paths take turns call by call."""
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    clock = time.perf_counter
    gc.collect()
    gc.disable()  # a collection inside one call would land on one path only
    try:
        for _ in range(calls):
            for name, fn in paths.items():
                start = clock()
                fn()
                times[name].append(clock() - start)
    finally:
        gc.enable()
    return times


def p90(values: list[float]) -> float:
    """The 90th percentile of ``values``."""
    return float(np.percentile(values, 90))


# -- main -------------------------------------------------------------------------------------


def build_paths(
    config: Config, model: keras.Model, loaded: Any, records: list[bytes], batch: int, eager: bool = False
) -> dict[str, Callable[[], Any]]:
    """The timed callables at one batch size, each bound to its input tensor (``--eager`` adds one)."""
    spec = config.features
    transform = FeatureTransform(spec)
    task, _ = head_spec(spec)
    label_shape = tuple(spec.label.shape)
    examples = tf.constant(records[:batch])
    raw = transform.decode(tf.io.parse_example(examples, spec.parse_spec(labels=False)), labels=False)
    raw = {k: tf.identity(v) for k, v in raw.items()}  # plain eager tensors, decoded once
    preprocessed = {k: tf.identity(v) for k, v in transform.preprocess(raw, labels=False).items()}

    @tf.function(jit_compile=False)
    def keras_forward(inputs):
        features = transform.preprocess(inputs, labels=False)
        return predictions(task, model(features, training=False), label_shape)

    @tf.function(jit_compile=False)
    def model_forward(features):
        return model(features, training=False)

    concrete = keras_forward.get_concrete_function(raw)
    serving = loaded.signatures[DEFAULT_SIGNATURE]
    example = loaded.signatures[EXAMPLE_SIGNATURE]
    restored = getattr(loaded, DEFAULT_SIGNATURE)
    _, input_specs = serving.structured_input_signature
    # Holds the loaded variables only through `loaded`, which must stay alive while it is called.
    rewrapped = tf.function(lambda **inputs: serving(**inputs)).get_concrete_function(**input_specs)
    check_same_outputs(serving(**raw), keras_forward(raw), batch)
    paths = {
        SERVING: lambda: serving(**raw),
        KERAS: lambda: keras_forward(raw),
        CONCRETE: lambda: concrete(raw),
        MODEL: lambda: model_forward(preprocessed),
        RESTORED: lambda: restored(raw),
        REWRAPPED: lambda: rewrapped(**raw),
        EXAMPLE_SIGNATURE: lambda: example(**{EXAMPLES_INPUT: examples}),
    }
    if eager:
        paths[EAGER] = lambda: model(preprocessed, training=False)
    return paths


def check_same_outputs(served: dict, expected: dict, batch: int) -> None:
    """Both sides must compute the same thing, or the comparison means nothing."""
    for name, want in expected.items():
        diff = float(np.max(np.abs(served[name].numpy().astype(np.float64) - want.numpy().astype(np.float64))))
        if diff > 1e-4:
            print(f"warning: batch {batch}: output '{name}' of the export differs from the rebuilt model by {diff:.3g}")


# The ratio column of the table: path -> the path it is divided by.
BASELINES = {
    SERVING: KERAS,
    CONCRETE: KERAS,
    MODEL: KERAS,
    EAGER: KERAS,
    RESTORED: KERAS,
    REWRAPPED: CONCRETE,
    EXAMPLE_SIGNATURE: SERVING,
}
# Listed round by round under the table.
ROUND_RATIOS = [
    (SERVING, KERAS),
    (SERVING, CONCRETE),
    (REWRAPPED, CONCRETE),
    (RESTORED, KERAS),
    (EXAMPLE_SIGNATURE, SERVING),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing run with a best export (default: train one)")
    parser.add_argument("--steps", type=int, default=200, help="training steps when training a run (default: 200)")
    parser.add_argument("--calls-1", type=int, default=2000, help="timed calls per path at batch 1 (default: 2000)")
    parser.add_argument("--calls-256", type=int, default=200, help="timed calls per path at batch 256 (default: 200)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per path first (default: 50)")
    parser.add_argument("--rounds", type=int, default=3, help="repeats; the best median counts (default: 3)")
    parser.add_argument("--eager", action="store_true", help="also time model(x) without tf.function")
    args = parser.parse_args()
    logging.getLogger("factory").setLevel(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="factory-bench-serving-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    """Measure and print the table; a run trained here and its records live in ``scratch``."""
    run_dir = args.run_dir
    if run_dir is None:
        os.environ.setdefault("FACTORY_CACHE", str(scratch / "cache"))
        run_dir = scratch / "run"
        train_run(run_dir, args.steps)
    config, loaded = load_run(run_dir)
    model = rebuild_model(config, run_dir)
    records = test_records(config, max(BATCHES))
    paths = {batch: build_paths(config, model, loaded, records, batch, args.eager) for batch in BATCHES}
    calls = {1: args.calls_1, 256: args.calls_256}

    # best[batch][path] = (median, p90) of the round with the lowest median
    best: dict[int, dict[str, tuple[float, float]]] = {b: {} for b in BATCHES}
    round_ratios: list[dict[tuple[int, str, str], float]] = []
    for _ in range(args.rounds):
        ratios = {}
        for batch in BATCHES:
            times = time_interleaved(paths[batch], calls[batch], args.warmup)
            medians = {name: statistics.median(t) for name, t in times.items()}
            for name, t in times.items():
                if name not in best[batch] or medians[name] < best[batch][name][0]:
                    best[batch][name] = (medians[name], p90(t))
            for name, base in ROUND_RATIOS:
                ratios[(batch, name, base)] = medians[name] / medians[base]
        round_ratios.append(ratios)

    print(f"\nper-request latency, {run_dir / 'export' / 'best' / 'current'}")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    print(
        f"rounds: {args.rounds} (best median kept); calls per path: {calls[1]} at batch 1, {calls[256]} at batch 256\n"
    )
    header = f"{'path':16} {'batch':>5} {'median us':>10} {'p90 us':>10} {'ratio':>7}  {'vs':16} {'target':>7}  result"
    print(header)
    print("-" * len(header))
    for batch in BATCHES:
        for name, (median, tail) in best[batch].items():
            base = BASELINES.get(name)
            ratio = f"{median / best[batch][base][0]:6.2f}x" if base else ""
            target, verdict = "", ""
            if name == SERVING and batch == 1:
                target = f"<={TARGET}x"
                verdict = "PASS" if median / best[batch][base][0] <= TARGET else "FAIL"
            print(
                f"{name:16} {batch:5d} {median * 1e6:10.1f} {tail * 1e6:10.1f} {ratio:>7}  {base or '':16} {target:>7}  {verdict}"
            )
    print("\nratio per round (each round's medians):")
    for key in round_ratios[0]:
        batch, name, base = key
        values = "  ".join(f"{r[key]:.2f}x" for r in round_ratios)
        print(f"  {name:16} / {base:16} batch {batch:3d}: {values}")


if __name__ == "__main__":
    main()
