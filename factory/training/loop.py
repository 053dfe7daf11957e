"""The TensorFlow side of the runner (imported only after the config is valid)."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import tensorflow as tf
import yaml

from factory.config import Config
from factory.errors import ConfigError, TrainingError
from factory.features.pipeline import compression_of, explain_errors, resolve_files
from factory.features.transform import FeatureTransform
from factory.model.tasks import Task, accumulate
from factory.policies.monitor import fmt
from factory.run_dir import read_json_lines, write_json_lines
from factory.serving.exporter import Exporter
from factory.training.checkpointing import warm_start
from factory.training.interrupts import CtrlC
from factory.training.optimizers import current_lr, make_optimizer, reapply_learning_rate
from factory.training.progress import Progress
from factory.training.publishing import Publisher

log = logging.getLogger("factory")
tf.get_logger().setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint saving logs at INFO


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


class Loop:
    """One run: build from the config, restore if the run dir has a checkpoint, train, evaluate,
    apply the early-stop and export policies, checkpoint, and finish with the test metrics."""

    def __init__(self, config: Config, run_dir: Path):
        self.config = config
        self.strategy = make_strategy(config.train.strategy)  # before any other op
        self.multi_worker = config.train.strategy == "multi_worker_mirrored"
        role = worker_role(self.strategy) if self.multi_worker else None
        # Every worker saves checkpoints (saving is collective) and runs the same policies;
        # the chief writes the run dir, the others a subdirectory each of their own.
        self.run_dir = run_dir / role if role else run_dir
        self.spec = config.features
        self.train_cfg = config.train
        self._eval_datasets: dict = {}

    # -- set-up -------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        data = self.config.data
        if data.generate:
            from factory.features.bundled import ensure_generated

            if ensure_generated(data.generate, data.dir, self.spec):
                log.info(f"wrote the {data.generate} records to {Path(data.dir).expanduser()}")

    def _build(self) -> None:
        import keras

        from factory.model.builder import build_model, head_spec

        cfg = self.config
        if cfg.seed is not None:
            keras.utils.set_random_seed(cfg.seed)
        if cfg.train.deterministic:
            tf.config.experimental.enable_op_determinism()
        if cfg.train.mixed_precision:
            keras.mixed_precision.set_dtype_policy(cfg.train.mixed_precision)
        if self.spec.needs_statistics:  # `normalize: auto`, `vocabulary: auto`: one pass over data.train
            from factory.features.stats import resolve_statistics

            self._statistics_from_checkpoint()
            self.spec = resolve_statistics(self.spec, list(cfg.data.train), cfg.data.compression, self.run_dir)
        task, num_outputs = head_spec(self.spec)
        self.task = Task(task, num_outputs, cfg.train.loss)
        replicas = self.strategy.num_replicas_in_sync
        self.global_batch = cfg.train.batch_size
        if self.global_batch % replicas:
            raise ConfigError(f"train.batch_size: {self.global_batch} is not divisible by the {replicas} replicas")
        with self.strategy.scope():
            self.model = build_model(self.spec, cfg.network.name, dict(cfg.network.params))
            self.optimizer = make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The policies' state (JSON) is this worker's own: outside the scope, nothing to mirror.
        self.state = tf.Variable("{}", dtype=tf.string, trainable=False, name="policy_state")
        self.transform = FeatureTransform(self.spec)  # one set of lookup tables: training, eval, export
        self.distributed = self.strategy.num_replicas_in_sync > 1 or cfg.train.strategy != "default"
        tracked = {"model": self.model, "optimizer": self.optimizer, "step": self.step, "state": self.state}
        self.train_iter = None
        if cfg.train.resume_input == "iterator":  # the iterator's state (shuffle buffer and all) is in every checkpoint
            self.train_iter = iter(self._train_dataset(skip=0))
            tracked["iterator"] = self.train_iter
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.run_dir / "checkpoints"), max_to_keep=cfg.train.keep_checkpoints
        )
        self.best_path = str(self.run_dir / "checkpoints" / "best" / "weights")
        self.final_path = str(self.run_dir / "checkpoints" / "final" / "weights")
        self._compile_steps()

    def _statistics_from_checkpoint(self) -> None:
        """A resumed run whose ``statistics.json`` is gone takes the statistics its weights were
        trained with from the checkpoint, rather than computing new ones from today's data."""
        from factory.features.stats import STATISTICS_FILE

        path = self.run_dir / STATISTICS_FILE
        latest = tf.train.latest_checkpoint(str(self.run_dir / "checkpoints"))
        if path.exists() or not latest:
            return
        reader = tf.train.load_checkpoint(latest)
        key = "state/.ATTRIBUTES/VARIABLE_VALUE"
        stats = json.loads(reader.get_tensor(key)).get("statistics") if reader.has_tensor(key) else None
        if stats:
            tmp = path.with_name(f".{STATISTICS_FILE}.tmp")
            tmp.write_text(json.dumps(stats, indent=2) + "\n")
            tmp.replace(path)
            log.info(f"restored {path.name} from the checkpoint {latest}")

    def _train_dataset(self, skip: int):
        """The training input from batch ``skip`` on: its order is a function of the seed alone,
        so skipping the batches already trained on (still serialized: not parsed, decoded or
        augmented) continues the sequence exactly where a checkpoint left it."""
        cfg = self.config

        def make(batch_size: int, skip_batches: int, shard=None):
            return self.spec.dataset(
                list(cfg.data.train), mode="train", batch_size=batch_size,
                seed=cfg.seed if cfg.seed is not None else 0, shuffle_buffer=cfg.train.shuffle_buffer,
                compression=cfg.data.compression, transform=self.transform, skip_batches=skip_batches, shard=shard,
            )

        if not self.distributed:
            return make(self.global_batch, skip)

        def per_worker(context: tf.distribute.InputContext):
            # One pipeline per worker, reading its own part of the records, in per-replica
            # batches; each step takes one batch per local replica.
            local_replicas = self.strategy.num_replicas_in_sync // context.num_input_pipelines
            return make(
                context.get_per_replica_batch_size(self.global_batch), skip * local_replicas,
                shard=(context.num_input_pipelines, context.input_pipeline_id),
            )

        return self.strategy.distribute_datasets_from_function(per_worker)

    def _start_input(self, step: int) -> None:
        if self.train_iter is not None:  # resume_input: iterator, restored with the checkpoint
            return
        skip = step if self.train_cfg.resume_input == "replay" else 0
        self.train_iter = iter(self._train_dataset(skip))
        if skip:
            log.info(f"input: continuing after the {skip} batches already trained on (train.resume_input=replay)")

    def _compile_steps(self) -> None:
        model, task, optimizer, strategy = self.model, self.task, self.optimizer, self.strategy
        global_batch = self.global_batch
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
                self.step.assign_add(1)
            return total / tf.cast(steps, tf.float32)

        def eval_fn(features, labels, weights=None):
            return task.eval_sums(labels, model(features, training=False), weights)

        @tf.function
        def eval_step(batch):
            if self.multi_worker:  # every worker evaluates the whole eval set on its own: no collectives
                return eval_fn(*batch)
            sums = strategy.run(eval_fn, args=batch)
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

        self.train_steps, self.eval_step = train_steps, eval_step

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> float:
        from factory.policies import EarlyStopping

        cfg, tc = self.config, self.train_cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_data()
        self._build()
        es = cfg.early_stop
        self.early = EarlyStopping(
            monitor=es.monitor, mode=es.mode, patience=es.patience if es.enabled else 10**9,
            min_delta=es.min_delta, baseline=es.baseline, start_from_eval=es.start_from_eval,
        )
        self.evals = 0
        self._before_eval = None
        self.publisher = Publisher(
            cfg.export, self._make_exporter,
            keep_final_weights=lambda: tf.train.Checkpoint(model=self.model).write(self.final_path),
            load_final_weights=lambda: tf.train.Checkpoint(model=self.model).read(self.final_path).expect_partial(),
        )
        resumed = self._restore()
        self._write_run_files()
        writers = {
            "train": tf.summary.create_file_writer(str(self.run_dir / "tensorboard" / "train")),
            "eval": tf.summary.create_file_writer(str(self.run_dir / "tensorboard" / "eval")),
        }
        step = int(self.step.numpy())
        self._start_input(step)
        if resumed:
            log.info(f"resumed from step {step} (evaluation {self.evals}) in {self.run_dir}")
        progress = Progress(tc.max_steps, self.global_batch, tc.progress, tc.log_every_steps, start=step)
        ckpt_every = tc.checkpoint_every_steps
        stopped = self.early.stopped_eval is not None and es.enabled
        last_ckpt = step
        started = self._started = time.perf_counter()
        train_files = list(cfg.data.train)
        evaluated = {r["step"] for r in read_json_lines(self.run_dir / "metrics.jsonl")}
        if resumed and step and (step % tc.eval_every_steps == 0 or step == tc.max_steps) and step not in evaluated:
            # Saved by Ctrl-C before (or during) this step's evaluation: do it now.
            stopped = self._evaluate(step, writers["eval"]) and es.enabled
            self._save(step)
        ctrl_c = CtrlC()
        try:
            while step < tc.max_steps and not stopped:
                if ctrl_c.pressed:
                    raise KeyboardInterrupt
                next_eval = (step // tc.eval_every_steps + 1) * tc.eval_every_steps
                chunk = min(tc.steps_per_execution, next_eval - step, tc.max_steps - step)
                with explain_errors(self.spec, train_files, cfg.data.compression):
                    loss = float(self.train_steps(self.train_iter, tf.constant(chunk, tf.int64)))
                step += chunk
                if not math.isfinite(loss):
                    progress.clear()
                    kept = self.manager.latest_checkpoint
                    raise TrainingError(
                        f"the training loss is {loss} at step {step}; stopped without saving. "
                        f"{'The last good checkpoint is kept: ' + kept if kept else 'No checkpoint was written yet'}. "
                        "Lower train.optimizer.learning_rate, or look for NaN/Inf values in the records"
                    )
                if step // tc.log_every_steps != (step - chunk) // tc.log_every_steps:
                    with writers["train"].as_default(step=step):  # every log_every_steps: cheap
                        tf.summary.scalar("loss", loss)
                        tf.summary.scalar("learning_rate", current_lr(self.optimizer))
                progress.update(step, loss)
                if step % tc.eval_every_steps == 0 or step == tc.max_steps:
                    progress.clear()
                    stopped = self._evaluate(step, writers["eval"]) and es.enabled
                    if ckpt_every is None or step - last_ckpt >= ckpt_every or stopped or step == tc.max_steps:
                        self._save(step)
                        last_ckpt = step
                elif ckpt_every is not None and step - last_ckpt >= ckpt_every:
                    self._save(step)
                    last_ckpt = step
        except KeyboardInterrupt:
            progress.clear()
            step = int(self.step.numpy())  # the interrupted call may have finished its steps
            if self._before_eval is not None:  # cut short mid-evaluation: undo its half
                evals, early, exports = self._before_eval
                self.evals = evals
                self.early.load_state_dict(early)
                self.publisher.load_state_dict(exports)
            self._save(step)
            log.info(f"interrupted at step {step}: checkpoint saved; run the same command to resume")
            raise
        finally:
            ctrl_c.release()
        progress.clear()
        if step != last_ckpt:
            self._save(step)
        return self._finish(started, stopped)

    def _restore(self) -> bool:
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise TrainingError(
                    f"cannot resume from {latest}: it does not match this config ({str(err).splitlines()[0][:200]}). "
                    "Resume with the config the run was started with, or use another hydra.run.dir"
                ) from None
            previous_lr = reapply_learning_rate(self.optimizer, self.config)
            if previous_lr is not None:
                log.info(
                    f"train.optimizer.learning_rate: {self.config.train.optimizer.learning_rate:g} from the config "
                    f"replaces the checkpoint's {previous_lr:g}"
                )
            state = json.loads(self.state.numpy().decode())
            self.early.load_state_dict(state["early_stop"])
            self.evals = state["evals"]
            self.publisher.load_state_dict(state.get("exports", {}))
            step = int(self.step.numpy())
            metrics = [r for r in read_json_lines(self.run_dir / "metrics.jsonl") if r["step"] <= step]
            write_json_lines(self.run_dir / "metrics.jsonl", metrics)
            return True
        if self.train_cfg.warm_start_from:
            prefix = warm_start(self.model, self.train_cfg.warm_start_from)
            log.info(f"initialised the weights from {prefix}")
        return False

    def _make_exporter(self) -> Exporter:
        cfg = self.config
        files = resolve_files(list(cfg.data.eval))
        sample = []
        for path in files:  # a few eval records to verify every export with
            ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path, cfg.data.compression))
            sample += [r.numpy() for r in ds.take(32 - len(sample))]
            if len(sample) >= 32:
                break
        return Exporter(
            self.run_dir, self.spec, self.transform, self.model, self.task.task, sample, cfg.raw,
            output_names=cfg.export.output_names, tolerance=cfg.export.verify_tolerance, model_name=cfg.export.model_name,
        )

    def _save(self, step: int) -> None:
        state = {"early_stop": self.early.state_dict(), "evals": self.evals, "exports": self.publisher.state_dict()}
        stats = self.run_dir / "statistics.json"
        if stats.exists():  # the `auto` statistics travel with the weights they were trained with
            state["statistics"] = json.loads(stats.read_text())
        self.state.assign(json.dumps(state))
        self.manager.save(checkpoint_number=step)

    def _write_run_files(self) -> None:
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(dict(self.config.raw), sort_keys=False))

    # -- evaluation ------------------------------------------------------------------------------

    def _eval_dataset(self, files, max_batches: int | None):
        key = (tuple(files), max_batches)
        if key not in self._eval_datasets:
            cfg = self.config
            ds = self.spec.dataset(
                list(files), mode="eval", batch_size=self.global_batch, compression=cfg.data.compression,
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

    def evaluate(self, files, prefix: str = "val_", max_batches: int | None = None) -> dict[str, float]:
        """Metrics of the current weights over ``files`` (one pass, or the first ``max_batches``).

        The first evaluation makes one pass and counts the batches. Later ones pull that many
        batches from one long-lived iterator over the repeated pass, the same batches each
        time: creating an iterator (instantiating the parsing functions) costs more than
        evaluating a small eval set.
        """
        cfg = self.config
        entry = self._eval_dataset(files, max_batches)
        totals = None
        with explain_errors(self.spec, list(files), cfg.data.compression):
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
            raise TrainingError(f"data.{prefix.rstrip('_') if prefix != 'val_' else 'eval'}: the records are empty")
        return self.task.finalize(totals, prefix)

    def _evaluate(self, step: int, writer) -> bool:
        # Until its row is in metrics.jsonl an evaluation has not happened: Ctrl-C before that
        # rolls the policies back (see run), and the resumed run evaluates this step again.
        self._before_eval = (self.evals, self.early.state_dict(), self.publisher.state_dict())
        metrics = self.evaluate(self.config.data.eval, max_batches=self.train_cfg.eval_steps)
        self.evals += 1
        previous_best = self.early.best_eval
        stop = self.early.update(metrics)
        if self.multi_worker:  # the workers stop together (their metrics are the same anyway)
            flag = self.strategy.run(lambda: tf.constant(1.0 if stop else 0.0))
            stop = bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, flag, axis=None) > 0)
        if self.early.best_eval != previous_best:
            tf.train.Checkpoint(model=self.model).write(self.best_path)
        info = {"step": step, "eval": self.evals, "metrics": metrics}
        notes = self.publisher.after_evaluation(metrics, info)
        values = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        exported = f" | {'; '.join(notes)}" if notes else ""
        log.info(f"eval {self.evals} @ step {step}: {values} | {self.early.describe()}{exported}")
        row = {
            "eval": self.evals, "step": step, **metrics, "best": self.early.best_value, "wait": self.early.wait,
            "stop": bool(stop), "seconds": round(time.perf_counter() - self._started, 3),
        }
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self._before_eval = None
        with writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(k, v)
        writer.flush()
        return stop

    def _finish(self, started: float, stopped: bool) -> float:
        cfg = self.config
        summary = {
            "monitor": cfg.early_stop.monitor,
            "best_value": self.early.best_value,
            "best_eval": self.early.best_eval,
            "evaluations": self.evals,
            "steps": int(self.step.numpy()),
            "stopped_early": bool(stopped),
            "seconds": round(time.perf_counter() - started, 2),
        }
        final = self.publisher.at_end({"step": summary["steps"], "metrics": {}})
        if final:
            log.info(f"final export: {final}")
            self._save(summary["steps"])
        summary["exports"] = self.publisher.published()
        if tf.io.gfile.exists(self.best_path + ".index"):
            tf.train.Checkpoint(model=self.model).read(self.best_path).expect_partial()
        if cfg.data.test:
            test = self.evaluate(cfg.data.test, prefix="test_")
            summary["test"] = test
            log.info("test (best weights): " + ", ".join(f"{k} {fmt(v)}" for k, v in test.items()))
            if cfg.compare_with:
                from factory.training.baselines import reference_metrics

                summary["reference"] = {}
                for name in cfg.compare_with:
                    ref = reference_metrics(name, self.spec, self.transform, cfg.data.train, cfg.data.test, cfg.data.compression)
                    summary["reference"][name] = ref
                    log.info(f"test ({name}, scikit-learn, same split): " + ", ".join(f"{k} {fmt(v)}" for k, v in ref.items()))
        tmp = self.run_dir / "summary.json.tmp"  # whole or absent: sweeps read it while trials run
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.run_dir / "summary.json")
        reason = "stopped early" if stopped else "reached train.max_steps"
        best = self.early.best_value if self.early.best_value is not None else float("nan")
        log.info(
            f"done: {reason} at step {summary['steps']}; best {cfg.early_stop.monitor} {fmt(best)} "
            f"@ eval {self.early.best_eval}; run dir {self.run_dir}"
        )
        for name, path in summary["exports"].items():
            log.info(f"{name} export: {path}")
        if summary["exports"]:
            path = next(iter(summary["exports"].values()))
            files = (cfg.data.test or cfg.data.eval)[0]
            log.info(f"try it: factory predict {path} --input '{files}'")
        return float("nan") if self.early.best_value is None else float(self.early.best_value)
