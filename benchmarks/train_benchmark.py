"""Training overhead: factory's loop against a bare hand-written loop and Keras ``Model.fit``.

All train the same model on the same ``spec.dataset`` pipeline with the same
``steps_per_execution``. factory evaluates every 500 steps and writes a
checkpoint each time (as a real run does); the baselines do it too in their
"+" variants (``fit`` with ``validation_data`` and ``ModelCheckpoint``), and
train only in the plain ones. Steady-state steps/s are timed
after ``--warmup`` steps, so start-up (imports, tracing, the first shuffle
buffer) is left out: for factory, between its first and last evaluation. Paths are interleaved and the
best of ``--repeats`` is kept, because this machine is noisy.

    python benchmarks/train_benchmark.py [--steps 3000] [--warmup 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("FACTORY_CACHE", tempfile.mkdtemp(prefix="factory-bench-cache-"))

import keras
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from factory.config import load_config
from factory.features.bundled import ensure_generated
from factory.model.builder import build_model
from factory.training.runner import train
from factory.validation import resource_dir

NETWORKS = {"cnn": ["network=cnn"], "mlp": ["network=mlp", "network.hidden=[128,128]"]}


def config_for(network: str, steps: int, run_dir: Path, spe: int, eval_every: int = 500, extra=()) -> dict:
    overrides = [
        *extra,
        *NETWORKS[network],
        f"train.max_steps={steps}",
        f"train.eval_every_steps={eval_every}",
        f"train.steps_per_execution={spe}",
        "train.progress=none",
        "early_stop.patience=1000",
        "data.test=null",
        "train.batch_size=64",
        "export.best.enabled=false",  # exports have their own benchmark (serving_benchmark.py)
    ]
    with initialize_config_dir(config_dir=str(resource_dir("conf")), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    raw = OmegaConf.to_container(cfg, resolve=True)
    raw["run_dir"] = str(run_dir)
    return raw


def time_factory(network: str, steps: int, warmup: int, spe: int, tmp: Path, *extra: str) -> float:
    """Steps/s between the first and the last evaluation (evaluations and checkpoints included)."""
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    config = config_for(network, warmup + steps, run_dir, spe, eval_every=warmup, extra=extra)
    train(config, run_dir=run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["seconds"] - rows[0]["seconds"])


def _setup(network: str, spe: int):
    config = load_config(config_for(network, 10, Path("unused"), spe))
    ensure_generated("digits", config.data.dir, config.features)
    keras.utils.set_random_seed(0)
    model = build_model(config.features, config.network.name, dict(config.network.params))
    ds = config.features.dataset(list(config.data.train), mode="train", batch_size=64, seed=0)
    eval_ds = config.features.dataset(list(config.data.eval), mode="eval", batch_size=64)
    return config, model, ds, eval_ds


def time_bare(network: str, steps: int, warmup: int, spe: int, tmp: Path, every: int | None = None) -> float:
    """A hand-written loop; with ``every``, it also evaluates and checkpoints every that many steps."""
    _, model, ds, eval_ds = _setup(network, spe)
    optimizer = keras.optimizers.Adam(0.002)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=optimizer), str(tempfile.mkdtemp(dir=tmp)), max_to_keep=3
    )

    # The step is its own tf.function, as in Keras' `fit` (inlined into the loop body it runs
    # much slower: Grappler does not optimise while-loop bodies the way it does functions).
    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(features, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def run(iterator, n):
        loss = tf.constant(0.0)
        for _ in tf.range(n):
            loss = step(*next(iterator))
        return loss

    @tf.function
    def eval_step(features, labels):
        accuracy.update_state(labels, model(features, training=False))

    def evaluate_and_save(done: int) -> None:
        accuracy.reset_state()
        for features, labels in eval_ds:
            eval_step(features, labels)
        float(accuracy.result())
        manager.save(checkpoint_number=done)

    iterator = iter(ds)
    for _ in range(warmup // spe):
        float(run(iterator, tf.constant(spe)))
    if every:
        evaluate_and_save(warmup)
    start = time.perf_counter()
    for i in range(steps // spe):
        float(run(iterator, tf.constant(spe)))
        if every and ((i + 1) * spe) % every == 0:
            evaluate_and_save(warmup + (i + 1) * spe)
    return steps / (time.perf_counter() - start)


class _EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.ends = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start
        self.ends.append(time.perf_counter())


def time_fit(network: str, steps: int, warmup: int, spe: int, tmp: Path, every: int | None = None) -> float:
    """``Model.fit``; with ``every``, epochs of that many steps with validation and a ModelCheckpoint."""
    _, model, ds, eval_ds = _setup(network, spe)
    model.compile(
        optimizer=keras.optimizers.Adam(0.002),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=spe,
    )
    if every:  # timed from the end of the first epoch (validated, saved) to the end of the last one
        path = str(Path(tempfile.mkdtemp(dir=tmp)) / "ckpt.weights.h5")
        timer = _EpochTimes()
        model.fit(
            ds,
            steps_per_epoch=every,
            epochs=(warmup + steps) // every,
            verbose=0,
            validation_data=eval_ds,
            callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True), timer],
        )
        return (len(timer.ends) - 1) * every / (timer.ends[-1] - timer.ends[0])
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    timer = _EpochTimes()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    return steps / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=500, help="steps before timing starts (default: 500)")
    parser.add_argument("--spe", type=int, default=10, help="steps_per_execution (default: 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--networks", default="cnn,mlp")
    args = parser.parse_args()
    logging.getLogger("factory").setLevel(logging.WARNING)
    # fit's validation pass ends inside its first execution of `--spe` steps, and it warns about
    # that; and it warns that it cannot shuffle a tf.data.Dataset. Neither concerns the timing.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    warnings.filterwarnings("ignore", message=".*shuffle=True. was passed")
    tmp = Path(tempfile.mkdtemp(prefix="factory-bench-"))
    every = args.warmup  # factory evaluates (and checkpoints) every --warmup steps
    paths = {
        "factory": lambda net: time_factory(net, args.steps, args.warmup, args.spe, tmp),
        # With the tf.data iterator in every checkpoint instead of replaying the input on resume:
        # serialising its shuffle buffer and prefetched batches is most of a checkpoint's cost.
        "factory*": lambda net: time_factory(
            net, args.steps, args.warmup, args.spe, tmp, "train.resume_input=iterator"
        ),
        "bare loop": lambda net: time_bare(net, args.steps, args.warmup, args.spe, tmp),
        "Model.fit": lambda net: time_fit(net, args.steps, args.warmup, args.spe, tmp),
        # The same work as factory: evaluation and a checkpoint every `every` steps.
        "bare loop+": lambda net: time_bare(net, args.steps, args.warmup, args.spe, tmp, every=every),
        "Model.fit+": lambda net: time_fit(net, args.steps, args.warmup, args.spe, tmp, every=every),
    }
    print(f"steady-state steps/s, batch 64, steps_per_execution {args.spe}, best of {args.repeats}")
    print(f"{'network':8} {'path':11} {'steps/s':>9}  factory ratio")
    for net in args.networks.split(","):
        best = {name: 0.0 for name in paths}
        for _ in range(args.repeats):
            for name, fn in paths.items():
                best[name] = max(best[name], fn(net))
        for name, rate in best.items():
            if name.startswith("factory"):
                print(f"{net:8} {name:11} {rate:9.1f}")
                continue
            ratio = best["factory"] / rate
            ratios = (
                f"factory: {ratio:.2f}x {'PASS' if ratio >= 0.95 else 'FAIL'}  factory*: {best['factory*'] / rate:.2f}x"
            )
            print(f"{net:8} {name:11} {rate:9.1f}  {ratios}  (target >= 0.95x)")
    print("factory: the default (train.resume_input=replay); factory*: train.resume_input=iterator")
    print(
        f"bare loop, Model.fit: training only; bare loop+, Model.fit+: also evaluate and checkpoint every {every} steps"
    )


if __name__ == "__main__":
    main()
