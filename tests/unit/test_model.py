"""The model builder's checks that come before Keras: heads, names, parameters."""

from __future__ import annotations

import pytest

from factory.errors import ConfigError, FactoryError
from factory.features.spec import FeatureSpec
from factory.model.builder import build_model, head_spec
from factory.networks.common import building, current_spec, layer_name
from tests.helpers import REPO


@pytest.fixture(scope="module")
def digits_spec() -> FeatureSpec:
    return FeatureSpec.from_yaml(REPO / "conf/features/digits.yaml")


def spec_from(features: dict, labels: dict) -> FeatureSpec:
    return FeatureSpec.from_dict({"features": features, "labels": labels})


def test_layer_name_is_unique_within_a_build(digits_spec):
    with building(digits_spec):
        assert [layer_name("block"), layer_name("block"), layer_name("image"), layer_name("logits")] == [
            "block",
            "block_1",
            "image_1",
            "logits_1",
        ]
        assert current_spec() is digits_spec
    with pytest.raises(FactoryError, match="no feature spec is being built"):
        current_spec()


def test_a_classification_label_holds_one_class_id():
    spec = spec_from(
        {"x": {"dtype": "float32", "shape": [2]}}, {"target": {"dtype": "int64", "shape": [2], "num_classes": 4}}
    )
    with pytest.raises(ConfigError, match=r"labels\.target\.shape: a classification label holds one class id"):
        head_spec(spec)


def test_a_feature_called_logits_is_refused():
    spec = spec_from({"logits": {"dtype": "float32", "shape": [2]}}, {"y": {"dtype": "float32", "shape": []}})
    with pytest.raises(ConfigError, match="features.logits: the name 'logits' is taken"):
        build_model(spec, "linear", {})


def test_ragged_features_are_refused():
    spec = spec_from(
        {"ids": {"dtype": "int64", "shape": [None], "ragged": True}}, {"y": {"dtype": "float32", "shape": []}}
    )
    with pytest.raises(
        ConfigError,
        match=r"features\.ids\.ragged: the model builder feeds padded tensors; set `ragged: false` and a `max_length`",
    ):
        build_model(spec, "mlp", {})
