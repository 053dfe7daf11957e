"""The end of a run: the final export, the test metrics with the best weights, ``summary.json``.

``summary.json`` holds ``monitor``, ``best_value``, ``best_eval``, ``evaluations``,
``steps``, ``stopped_early``, ``pruned`` (a sweep's pruner stopped it), ``seconds``, ``exports`` (``{policy: path}``), and with
``data.test`` also ``test`` (the test metrics of the best weights) and, with
``compare_with``, ``reference`` (``{name: test metrics}`` of each scikit-learn baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from factory.config import Config
from factory.names import TEST_PREFIX
from factory.policies.monitor import fmt
from factory.run_dir import SUMMARY, write_json
from factory.training.baselines import reference_metrics
from factory.training.checkpointing import RunCheckpoint
from factory.training.hooks import EarlyStop, Exports
from factory.training.trainer import Trainer

log = logging.getLogger("factory")


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())


def close_run(
    config: Config,
    trainer: Trainer,
    checkpoints: RunCheckpoint,
    early_stop: EarlyStop,
    exports: Exports,
    *,
    evals: int,
    stopped: bool,
    pruned: str | None,
    started: float,
    save: Callable[[int], None],
) -> float:
    """Finish the run; returns the best value of the monitored metric (NaN when there is none).

    ``started`` is the ``time.perf_counter()`` value the run's clock started at; ``save(step)``
    checkpoints the run's state again after a final export (so a re-run does not export twice).
    ``pruned`` is the reason a sweep's pruner stopped the run (then ``stopped`` is true too).
    """
    early = early_stop.policy
    summary: dict[str, Any] = {
        "monitor": config.early_stop.monitor,
        "best_value": early.best_value,
        "best_eval": early.best_eval,
        "evaluations": evals,
        "steps": trainer.step,
        "stopped_early": bool(stopped) and not pruned,
        "pruned": bool(pruned),
        "seconds": round(time.perf_counter() - started, 2),
    }
    final = exports.at_end(summary["steps"])
    if final:
        log.info(f"final export: {final}")
        save(summary["steps"])
    summary["exports"] = exports.published()
    checkpoints.load_best()
    if config.data.test:
        test = trainer.evaluate(config.data.test, prefix=TEST_PREFIX)
        summary["test"] = test
        log.info(f"test (best weights): {_metrics_text(test)}")
        if config.compare_with:
            summary["reference"] = {}
            for name in config.compare_with:
                ref = reference_metrics(
                    name,
                    trainer.spec,
                    trainer.transform,
                    config.data.train,
                    config.data.test,
                    config.data.compression,
                )
                summary["reference"][name] = ref
                log.info(f"test ({name}, scikit-learn, same split): {_metrics_text(ref)}")
    write_json(trainer.run_dir / SUMMARY, summary)  # whole or absent: sweeps read it while trials run
    reason = "pruned" if pruned else "stopped early" if stopped else "reached train.max_steps"
    best = early.best_value if early.best_value is not None else float("nan")
    log.info(
        f"done: {reason} at step {summary['steps']}; best {config.early_stop.monitor} {fmt(best)} "
        f"@ eval {early.best_eval}; run dir {trainer.run_dir}"
    )
    for name, path in summary["exports"].items():
        log.info(f"{name} export: {path}")
    if summary["exports"]:
        path = next(iter(summary["exports"].values()))
        files = (config.data.test or config.data.eval)[0]
        log.info(f"try it: factory predict {path} --input '{files}'")
    return float("nan") if early.best_value is None else float(early.best_value)
