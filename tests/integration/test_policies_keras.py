"""EarlyStopping against keras.callbacks.EarlyStopping: the same metric sequences stop at the same evaluation."""

from __future__ import annotations

import pytest

from tests.unit.test_policies_early_stopping import EARLY_STOP_CASES, early_stopping, run


def test_early_stopping_matches_keras():
    """The same sequences through keras.callbacks.EarlyStopping stop at the same epoch."""
    keras = pytest.importorskip("keras")

    class Model:  # what the callback touches: `stop_training` (and `metrics` for mode='auto')
        stop_training = False

    compared = 0
    for case_id, kwargs, values, stop, best, best_eval, wait, same in EARLY_STOP_CASES:
        if not same:
            continue
        ours = early_stopping(**kwargs)
        callback = keras.callbacks.EarlyStopping(
            monitor=ours.monitor.name,
            mode=ours.monitor.mode,  # a dummy model has no metric objects for 'auto' to read
            patience=ours.patience,
            min_delta=kwargs.get("min_delta", 0.0),
            baseline=ours.baseline,
            start_from_epoch=ours.start_from_eval,
        )
        model = Model()
        callback.set_model(model)
        callback.on_train_begin()
        keras_stop = None
        for epoch, value in enumerate(values):
            callback.on_epoch_end(epoch, {ours.monitor.name: value})
            if model.stop_training:
                keras_stop = epoch + 1  # epochs count from 0, evaluations from 1
                break
        ours_decisions = run(ours, values, ours.monitor.name)
        assert keras_stop == ours.stopped_eval == stop, case_id
        assert len(ours_decisions) == epoch + 1, case_id
        assert callback.wait == ours.wait, case_id
        assert callback.wait == wait, case_id
        assert (None if callback.best is None else float(callback.best)) == best, case_id
        assert (None if callback.best is None else float(callback.best)) == ours.best_value, case_id
        if best_eval is not None:
            assert callback.best_epoch + 1 == best_eval == ours.best_eval, case_id
        compared += 1
    assert compared == sum(case[-1] for case in EARLY_STOP_CASES)
