"""``schemas/config.schema.json`` is generated from ``factory/config/settings.py``, and its
constructs produce the messages users see."""

from __future__ import annotations

import json

import pytest

from factory.config import load_config
from factory.config.schema import config_schema, dumps, main, schema_path
from factory.errors import ConfigError
from tests.helpers import compose


def test_checked_in_schema_is_the_generated_one():
    # If this fails, run `python -m factory.config.schema` and commit the result.
    assert schema_path().read_text() == dumps(config_schema()) + "\n"
    assert main(["--check"]) == 0


def test_dumps_is_json():
    assert json.loads(dumps(config_schema())) == config_schema()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"train": {"batchsize": 3}}, "train.batchsize: unknown key (did you mean 'batch_size'?)"),
        (
            {"train": {"optimizer": {"learnin_rate": 0.1}}},
            "train.optimizer.learnin_rate: unknown key (did you mean 'learning_rate'?)",
        ),
        (
            {"train": {"optimizer": {"name": "adamm"}}},
            "train.optimizer.name: 'adamm' is not one of adam, adamw, sgd, rmsprop",
        ),
        ({"train": {"loss": "huber"}}, "train.loss: 'huber' is not one of None, mse, mae"),
        ({"train": {"batch_size": 0}}, "train.batch_size: 0 is below the minimum of 1"),
        ({"train": {"max_steps": "abc"}}, "train.max_steps: expected integer, got string 'abc'"),
        ({"train": {"eval_steps": "x"}}, "train.eval_steps: expected integer or null, got string 'x'"),
        ({"train": {"optimizer": {"learning_rate": 0}}}, "train.optimizer.learning_rate: 0 is below the minimum of 0"),
        ({"early_stop": {"mode": "up"}}, "early_stop.mode: 'up' is not one of auto, min, max"),
        ({"export": {"best": {"mode": "up"}}}, "export.best.mode: 'up' is not one of auto, min, max"),
        ({"export": {"best": {"keep": 0}}}, "export.best.keep: 0 is below the minimum of 1"),
        ({"export": {"verify_tolerance": 0}}, "export.verify_tolerance: 0 is below the minimum of 0"),
        (
            {"export": {"model_name": "a b"}},
            "export.model_name: 'a b' is not a valid name: The TF Serving model name in the manifest's example request. Default: model.",
        ),
        ({"data": {"train": "", "eval": "x"}}, "data.train: '' should be non-empty"),
        ({"seed": -1}, "seed: -1 is below the minimum of 0"),
    ],
)
def test_schema_messages(overrides, problem):
    composed = compose()
    raw = {key: composed[key] for key in ("features", "network", "data")}
    raw.update(overrides)
    with pytest.raises(ConfigError) as raised:
        load_config(raw)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems
