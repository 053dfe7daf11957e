"""Optimizer and learning-rate schedule from the ``train`` config."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from factory.config import Config
from factory.config.settings import ADAMW_WEIGHT_DECAY


def make_optimizer(config: Config):
    opt, sched, total = config.train.optimizer, config.train.lr_schedule, config.train.max_steps
    lr = opt.learning_rate
    if sched.name == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if sched.warmup_steps else lr,
            max(total - sched.warmup_steps, 1),
            alpha=sched.alpha,
            warmup_target=lr if sched.warmup_steps else None,
            warmup_steps=sched.warmup_steps,
        )
    elif sched.name in ("exponential", "step"):
        schedule = keras.optimizers.schedules.ExponentialDecay(
            lr, sched.decay_steps, sched.decay_rate, staircase=sched.name == "step"
        )
    else:
        schedule = lr
    if sched.warmup_steps and sched.name != "cosine":
        schedule = warmup_schedule(schedule, sched.warmup_steps)
    kwargs = {"learning_rate": schedule}
    if opt.clipnorm:
        kwargs["clipnorm"] = opt.clipnorm
    if opt.name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=opt.momentum, **kwargs)
    elif opt.name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(momentum=opt.momentum, **kwargs)
    elif opt.name == "adamw":
        optimizer = keras.optimizers.AdamW(
            weight_decay=ADAMW_WEIGHT_DECAY if opt.weight_decay is None else opt.weight_decay, **kwargs
        )
    else:
        optimizer = keras.optimizers.Adam(weight_decay=opt.weight_decay, **kwargs)
    if config.train.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def warmup_schedule(schedule, warmup_steps):
    """Linear warm-up in front of another schedule (or a constant)."""

    class Warmup(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            base = schedule(step) if callable(schedule) else schedule
            frac = tf.minimum(1.0, tf.cast(step + 1, tf.float32) / float(warmup_steps))
            return base * frac

    return Warmup()


def reapply_learning_rate(optimizer, config: Config) -> float | None:
    """After a restore: set a constant learning rate back to the config's value.

    Keras keeps a constant learning rate in a variable, so a checkpoint carries it; a
    run resumed with another ``train.optimizer.learning_rate`` gets the new value. Returns
    the checkpoint's value when it differed, else None. Schedules are functions of the
    step, so they follow the config already.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    variable = getattr(inner, "_learning_rate", None)
    if not isinstance(variable, keras.Variable):  # a schedule
        return None
    wanted = np.float32(config.train.optimizer.learning_rate)
    restored = np.float32(variable.numpy())
    if restored == wanted:
        return None
    variable.assign(wanted)
    return float(restored)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))
