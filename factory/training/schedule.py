"""When to train, evaluate, checkpoint and stop. No TensorFlow.

``Schedule.run`` trains in calls of up to ``train.steps_per_execution`` steps, never
past the next evaluation (every ``train.eval_every_steps`` steps, and at
``train.max_steps``). After each evaluation it calls the hooks; it checkpoints at
every evaluation, or with ``train.checkpoint_every_steps`` once that many steps have
passed (and always when stopping or at the last step). It ends at ``train.max_steps``,
when a hook sets ``Evaluation.stop``, on Ctrl-C or SIGTERM (after saving a
checkpoint), or with a ``TrainingError`` when the loss is not finite (without saving).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from factory.config import TrainConfig
from factory.errors import TrainingError
from factory.training.hooks import Evaluation, EvaluationHook
from factory.training.interrupts import CtrlC
from factory.training.progress import Progress

log = logging.getLogger("factory")


class Steps(Protocol):
    """What the schedule drives (``trainer.Trainer``)."""

    @property
    def step(self) -> int: ...

    def train(self, steps: int) -> float: ...

    def validate(self) -> dict[str, float]: ...


class Checkpoints(Protocol):
    """Where the schedule saves (``checkpointing.RunCheckpoint``)."""

    @property
    def latest(self) -> str | None: ...

    def save(self, step: int, state: Mapping[str, Any]) -> None: ...


class TrainingSummaries(Protocol):
    def training(self, step: int, loss: float) -> None: ...


def run_state(evals: int, hooks: Sequence[EvaluationHook]) -> dict[str, Any]:
    """The state a checkpoint keeps besides the weights: the evaluation count and each hook's state."""
    return {"evals": evals, **{h.state_key: h.state_dict() for h in hooks if h.state_key}}


def load_run_state(state: Mapping[str, Any], hooks: Sequence[EvaluationHook]) -> int:
    """Give each hook its part of ``state`` (from ``run_state``); returns the evaluation count."""
    for hook in hooks:
        if hook.state_key:
            hook.load_state_dict(state.get(hook.state_key, {}))
    return state["evals"]


class Schedule:
    """Runs ``steps`` from its current step to ``train.max_steps``; see the module docstring.

    ``evals`` is the number of evaluations done before (a resumed run's). Training
    summaries go to ``summaries`` every ``train.log_every_steps`` steps.
    """

    def __init__(
        self,
        train: TrainConfig,
        steps: Steps,
        checkpoints: Checkpoints,
        hooks: Sequence[EvaluationHook],
        summaries: TrainingSummaries,
        evals: int,
    ):
        self.train = train
        self.steps = steps
        self.checkpoints = checkpoints
        self.hooks = list(hooks)
        self.summaries = summaries
        self.evals = evals
        self.progress = Progress(
            train.max_steps, train.batch_size, train.progress, train.log_every_steps, start=steps.step
        )
        # The state from before the evaluation under way, to roll back to if it is cut short.
        self._before_eval: dict[str, Any] | None = None

    def _due(self, step: int) -> bool:
        return step % self.train.eval_every_steps == 0 or step == self.train.max_steps

    def save(self, step: int) -> None:
        """Checkpoint ``step`` with the run's state."""
        self.checkpoints.save(step, run_state(self.evals, self.hooks))

    def run(self, resumed: bool, evaluated: Collection[int], stopped: bool) -> bool:
        """Train to the end; True when stopped early.

        ``evaluated``: the steps whose evaluation is on record. A resumed run whose step is
        due an evaluation not on record (Ctrl-C came before or during it) does it first.
        ``stopped``: a resumed run that had stopped early already (it then only saves).
        """
        tc = self.train
        step = last_ckpt = self.steps.step
        if resumed and step and self._due(step) and step not in evaluated:
            stopped = self._evaluate(step)
            self.save(step)
        ctrl_c = CtrlC()
        try:
            while step < tc.max_steps and not stopped:
                if ctrl_c.pressed:
                    raise KeyboardInterrupt
                next_eval = (step // tc.eval_every_steps + 1) * tc.eval_every_steps
                chunk = min(tc.steps_per_execution, next_eval - step, tc.max_steps - step)
                loss = self.steps.train(chunk)
                step += chunk
                if not math.isfinite(loss):
                    self._fail(loss, step)
                if step // tc.log_every_steps != (step - chunk) // tc.log_every_steps:  # cheap
                    self.summaries.training(step, loss)
                self.progress.update(step, loss)
                if self._due(step):
                    self.progress.clear()
                    stopped = self._evaluate(step)
                    if self._checkpoint_due(step, last_ckpt) or stopped or step == tc.max_steps:
                        self.save(step)
                        last_ckpt = step
                elif tc.checkpoint_every_steps is not None and self._checkpoint_due(step, last_ckpt):
                    self.save(step)
                    last_ckpt = step
        except KeyboardInterrupt:
            self._interrupted()
            raise
        finally:
            ctrl_c.release()
        self.progress.clear()
        if step != last_ckpt:
            self.save(step)
        return stopped

    def _checkpoint_due(self, step: int, last_ckpt: int) -> bool:
        every = self.train.checkpoint_every_steps
        return every is None or step - last_ckpt >= every

    def _fail(self, loss: float, step: int) -> None:
        self.progress.clear()
        kept = self.checkpoints.latest
        raise TrainingError(
            f"the training loss is {loss} at step {step}; stopped without saving. "
            f"{'The last good checkpoint is kept: ' + kept if kept else 'No checkpoint was written yet'}. "
            "Lower train.optimizer.learning_rate, or look for NaN/Inf values in the records"
        )

    def _interrupted(self) -> None:
        """Ctrl-C or SIGTERM: roll back an evaluation cut short, save, and say how to resume."""
        self.progress.clear()
        step = self.steps.step  # the interrupted call may have finished its steps
        if self._before_eval is not None:
            self.evals = load_run_state(self._before_eval, self.hooks)
            self._before_eval = None
        self.save(step)
        log.info(f"interrupted at step {step}: checkpoint saved; run the same command to resume")

    def _evaluate(self, step: int) -> bool:
        # Until the last hook has written its row to metrics.jsonl the evaluation has not
        # happened: an interrupt before that rolls the hooks back (see _interrupted), and the
        # resumed run evaluates this step again.
        self._before_eval = run_state(self.evals, self.hooks)
        metrics = self.steps.validate()
        self.evals += 1
        evaluation = Evaluation(number=self.evals, step=step, metrics=metrics)
        for hook in self.hooks:
            hook.after_evaluation(evaluation)
        self._before_eval = None
        return evaluation.stop
