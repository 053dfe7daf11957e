"""One training job, ``runner.train(config, run_dir)``: ``trainer.py`` (the model and its compiled
steps under a distribution strategy, the input pipelines), ``schedule.py`` (when to train,
evaluate, checkpoint and stop; no TensorFlow), ``hooks.py`` (after each evaluation: early
stopping, exports, the metrics record; no TensorFlow), ``checkpointing.py`` (resume, best and
final weights, warm start), ``closing.py`` (the end of a run: final export, test metrics,
``summary.json``), with ``optimizers.py``, ``progress.py``, ``interrupts.py`` and ``baselines.py``."""
