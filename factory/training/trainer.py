"""The step functions of a run under a distribution strategy, and their input pipelines.

``Trainer(config, run_dir)`` builds, in this order: the strategy (before any other
TensorFlow op), the run dir, the bundled data if asked for, seeds and precision, the
``auto`` statistics, the model and optimizer, the feature transform, with
``train.resume_input=iterator`` the training iterator (so a checkpoint can track it),
and the compiled train and eval steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from factory.config import Config
from factory.errors import ConfigError, TrainingError
from factory.features.bundled import ensure_generated
from factory.features.pipeline import explain_errors, resolve_files
from factory.features.scan import resolve_statistics
from factory.features.spec import FeatureSpec
from factory.features.tfrecord import compression_of
from factory.features.transform import FeatureTransform
from factory.model.builder import build_model, head_spec
from factory.model.tasks import Task, accumulate
from factory.names import EVAL_PREFIX
from factory.networks.registry import raw_inputs
from factory.run_dir import STATISTICS, read_json, write_json
from factory.serving.exporter import Exporter
from factory.training.checkpointing import statistics_from_checkpoint, warm_start
from factory.training.optimizers import make_optimizer, reapply_learning_rate
from factory.training.randomness import stateful_random_ops

log = logging.getLogger("factory")
tf.get_logger().setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint saving logs at INFO

# Eval records every export is verified with.
_EXPORT_SAMPLE = 32


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``train.strategy``: default (one device), mirrored, or multi_worker_mirrored (from ``TF_CONFIG``)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_role(strategy: tf.distribute.Strategy) -> str | None:
    """None for the chief (or a single worker), else ``worker-<id>``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return None
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (task_type == "worker" and resolver.task_id == 0 and not has_chief):
        return None
    return f"{task_type}-{resolver.task_id}"


def _resolve_spec(config: Config, run_dir: Path, chief_dir: Path | None = None) -> FeatureSpec:
    """The feature spec with its ``auto`` statistics (``normalize: auto``, ``vocabulary: auto``,
    ``missing.fill``) filled in. Every run keeps the statistics of its training records, also
    without ``auto``: their summaries are what ``factory check --against`` compares new records with.
    A worker other than the chief (``chief_dir``: the run dir) takes the run dir's statistics when
    they are there (computed before the workers started: ``cluster=ray``); else it computes the same."""
    spec = config.features
    statistics_from_checkpoint(run_dir)
    shared = chief_dir / STATISTICS if chief_dir is not None else None
    if shared is not None and shared.exists() and not (run_dir / STATISTICS).exists():
        write_json(run_dir / STATISTICS, read_json(shared))
    return resolve_statistics(spec, list(config.data.train), config.data.compression, run_dir)


class Trainer:
    """The model, optimizer and compiled steps of one run, and the data they read.

    Every worker of a multi-worker run saves checkpoints (saving is collective) and runs the
    same policies; the chief writes ``run_dir``, every other worker ``run_dir/worker-<id>``.
    """

    def __init__(self, config: Config, run_dir: Path):
        self.config = config
        self.strategy = make_strategy(config.train.strategy)  # before any other op
        self.multi_worker = config.train.strategy == "multi_worker_mirrored"
        role = worker_role(self.strategy) if self.multi_worker else None
        self.run_dir = run_dir / role if role else run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = config.data
        if data.generate and ensure_generated(data.generate, data.dir, config.features):
            log.info(f"wrote the {data.generate} records to {Path(data.dir).expanduser()}")
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)
        if config.train.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Keras' dtype policy is global: set it on every run, or a run after one with mixed precision in
        # the same process (a sweep's trials with the basic launcher) would silently train in it too.
        keras.mixed_precision.set_dtype_policy(config.train.mixed_precision or "float32")
        self.spec = _resolve_spec(config, self.run_dir, run_dir if role else None)
        task, num_outputs = head_spec(self.spec)
        self.task = Task(task, num_outputs, config.train.loss)
        replicas = self.strategy.num_replicas_in_sync
        self.global_batch = config.train.batch_size
        if self.global_batch % replicas:
            raise ConfigError(f"train.batch_size: {self.global_batch} is not divisible by the {replicas} replicas")
        with self.strategy.scope():
            self.model = build_model(self.spec, config.network.name, dict(config.network.params))
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self.model.trainable_variables)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # One set of lookup tables: training, eval, export; the network's raw features pass through as read.
        self.transform = FeatureTransform(self.spec, raw=raw_inputs(config.network.name))
        self.distributed = replicas > 1 or config.train.strategy != "default"
        # With resume_input=iterator the checkpoint tracks this iterator; otherwise `start_input` makes it.
        self.train_iter = iter(self._train_dataset(skip=0)) if config.train.resume_input == "iterator" else None
        self._eval_datasets: dict[tuple, dict] = {}
        self.train_steps, self.eval_step = self._compile_steps()
        self._checked_random_ops = False

    @property
    def step(self) -> int:
        """Training steps taken so far (the global step)."""
        return int(self.global_step.numpy())

    # -- after a restore, or instead of one ---------------------------------------------------------

    def reapply_learning_rate(self) -> None:
        """After a restore: the config's constant learning rate replaces the checkpoint's."""
        previous_lr = reapply_learning_rate(self.optimizer, self.config)
        if previous_lr is not None:
            log.info(
                f"train.optimizer.learning_rate: {self.config.train.optimizer.learning_rate:g} from the config "
                f"replaces the checkpoint's {previous_lr:g}"
            )

    def warm_start(self) -> None:
        """Without a checkpoint to resume: the weights of ``train.warm_start_from``, if set."""
        if self.config.train.warm_start_from:
            prefix = warm_start(self.model, self.config.train.warm_start_from)
            log.info(f"initialised the weights from {prefix}")

    # -- training -----------------------------------------------------------------------------------

    def _train_dataset(self, skip: int):
        """The training input from batch ``skip`` on: its order is a function of the seed alone,
        so skipping the batches already trained on (still serialized: not parsed, decoded or
        augmented) continues the sequence exactly where a checkpoint left it."""
        cfg = self.config

        def make(batch_size: int, skip_batches: int, shard=None):
            return self.spec.dataset(
                list(cfg.data.train),
                mode="train",
                batch_size=batch_size,
                seed=cfg.seed if cfg.seed is not None else 0,
                shuffle_buffer=cfg.train.shuffle_buffer,
                compression=cfg.data.compression,
                transform=self.transform,
                skip_batches=skip_batches,
                shard=shard,
            )

        if not self.distributed:
            return make(self.global_batch, skip)

        def per_worker(context: tf.distribute.InputContext):
            # One pipeline per worker, reading its own part of the records, in per-replica
            # batches; each step takes one batch per local replica.
            local_replicas = self.strategy.num_replicas_in_sync // context.num_input_pipelines
            return make(
                context.get_per_replica_batch_size(self.global_batch),
                skip * local_replicas,
                shard=(context.num_input_pipelines, context.input_pipeline_id),
            )

        return self.strategy.distribute_datasets_from_function(per_worker)

    def start_input(self, step: int) -> None:
        """The training iterator at ``step``, by ``train.resume_input``: replay skips the batches
        already trained on, restart begins the sequence again, iterator was restored with the checkpoint."""
        if self.train_iter is not None:
            return
        skip = step if self.config.train.resume_input == "replay" else 0
        self.train_iter = iter(self._train_dataset(skip))
        if skip:
            log.info(f"input: continuing after the {skip} batches already trained on (train.resume_input=replay)")

    def _compile_steps(self):
        model, task, optimizer, strategy = self.model, self.task, self.optimizer, self.strategy
        global_batch, global_step, multi_worker = self.global_batch, self.global_step, self.multi_worker
        scale = hasattr(optimizer, "scale_loss") and self.config.train.mixed_precision == "mixed_float16"

        def step_fn(features, labels, weights=None):
            with tf.GradientTape() as tape:
                logits = model(features, training=True)
                per_example = task.per_example_loss(labels, logits)
                if weights is not None:
                    per_example = per_example * tf.reshape(tf.cast(weights, tf.float32), [-1])
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if scale else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        # The step is a function of its own, called from the multi-step loop: Grappler optimises
        # function bodies (op fusion, layout) but not a body inlined into a while loop. Inlined,
        # the digits CNN trains ~40% slower; this is where Keras' `fit` gained on a plain loop.
        inner = tf.function(step_fn, jit_compile=True if self.config.train.jit_compile else None)

        @tf.function
        def train_steps(iterator, steps):
            total = tf.constant(0.0, tf.float32)
            for _ in tf.range(steps):
                batch = next(iterator)
                per_replica = strategy.run(inner, args=batch)
                total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
                global_step.assign_add(1)
            return total / tf.cast(steps, tf.float32)

        def eval_fn(features, labels, weights=None):
            return task.eval_sums(labels, model(features, training=False), weights)

        @tf.function
        def eval_step(batch):
            if multi_worker:  # every worker evaluates the whole eval set on its own: no collectives
                return eval_fn(*batch)
            sums = strategy.run(eval_fn, args=batch)
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

        return train_steps, eval_step

    def train(self, steps: int) -> float:
        """Take ``steps`` training steps in one call; their mean loss."""
        cfg = self.config
        count = tf.constant(steps, tf.int64)
        with explain_errors(self.spec, list(cfg.data.train), cfg.data.compression, key="data.train"):
            loss = float(self.train_steps(self.train_iter, count))
        if not self._checked_random_ops:
            self._checked_random_ops = True
            self._warn_of_stateful_random_ops(count)
        return loss

    def _warn_of_stateful_random_ops(self, count: tf.Tensor) -> None:
        """Warn once when the traced training step draws from random state no checkpoint holds."""
        if self.config.seed is None:  # no promise of repeating a run to keep
            return
        try:
            graph = self.train_steps.get_concrete_function(self.train_iter, count).graph.as_graph_def()
        except Exception:  # an input type that cannot be traced again: nothing to inspect
            return
        found = stateful_random_ops(graph)
        if found:
            log.warning(
                f"network {self.config.network.name!r}: the training step draws random numbers with stateful "
                f"TensorFlow ops ({', '.join(found)}, e.g. tf.random.uniform), whose state no checkpoint holds; "
                "a resumed run will not repeat an uninterrupted one. Draw them with keras.random and a "
                "keras.random.SeedGenerator kept by the layer (or a tf.random.Generator attribute)"
            )

    def agree(self, stop: bool) -> bool:
        """True when any worker says stop: the workers of a multi-worker run stop together
        (their metrics are the same anyway). A collective: every worker must call it."""
        if not self.multi_worker:
            return stop
        flag = self.strategy.run(lambda: tf.constant(1.0 if stop else 0.0))
        return bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, flag, axis=None) > 0)

    # -- evaluation ---------------------------------------------------------------------------------

    def _eval_dataset(self, files: Sequence[str], max_batches: int | None) -> dict:
        key = (tuple(files), max_batches)
        if key not in self._eval_datasets:
            ds = self.spec.dataset(
                list(files),
                mode="eval",
                batch_size=self.global_batch,
                compression=self.config.data.compression,
                transform=self.transform,
            )
            if max_batches:
                ds = ds.take(max_batches)
            self._eval_datasets[key] = {"dataset": ds, "batches": None, "iterator": None}
        return self._eval_datasets[key]

    def _distribute(self, ds):
        # Several workers each evaluate every batch (evaluation is small next to training): a
        # sharded evaluation would give the workers different numbers of batches, and a
        # collective that one worker never joins hangs the others.
        return self.strategy.experimental_distribute_dataset(ds) if self.distributed and not self.multi_worker else ds

    def evaluate(
        self, files: Sequence[str], prefix: str = EVAL_PREFIX, max_batches: int | None = None
    ) -> dict[str, float]:
        """Metrics of the current weights over ``files`` (one pass, or the first ``max_batches``).

        The first evaluation makes one pass and counts the batches. Later ones pull that many
        batches from one long-lived iterator over the repeated pass, the same batches each
        time: creating an iterator (instantiating the parsing functions) costs more than
        evaluating a small eval set.
        """
        entry = self._eval_dataset(files, max_batches)
        totals = None
        key = "data.eval" if prefix == EVAL_PREFIX else f"data.{prefix.rstrip('_')}"
        with explain_errors(self.spec, list(files), self.config.data.compression, key=key):
            if entry["batches"] is None:
                count = 0
                for batch in self._distribute(entry["dataset"]):
                    totals = accumulate(totals, self.eval_step(batch))
                    count += 1
                entry["batches"] = count
            else:
                if entry["iterator"] is None:
                    entry["iterator"] = iter(self._distribute(entry["dataset"].repeat()))
                for _ in range(entry["batches"]):
                    totals = accumulate(totals, self.eval_step(next(entry["iterator"])))
        if totals is None:
            raise TrainingError(f"{key}: the records are empty")
        return self.task.finalize(totals, prefix)

    def validate(self) -> dict[str, float]:
        """The ``val_*`` metrics over ``data.eval`` (the first ``train.eval_steps`` batches, if set)."""
        return self.evaluate(self.config.data.eval, max_batches=self.config.train.eval_steps)

    def make_exporter(self) -> Exporter:
        """An ``Exporter`` of this model, verifying every export on a few eval records."""
        cfg = self.config
        sample = []
        for path in resolve_files(list(cfg.data.eval)):
            ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, cfg.data.compression))
            sample += [r.numpy() for r in ds.take(_EXPORT_SAMPLE - len(sample))]
            if len(sample) >= _EXPORT_SAMPLE:
                break
        return Exporter(
            self.run_dir,
            self.spec,
            self.transform,
            self.model,
            self.task.task,
            sample,
            cfg.raw,
            output_names=cfg.export.output_names,
            tolerance=cfg.export.verify_tolerance,
            model_name=cfg.export.model_name,
        )
