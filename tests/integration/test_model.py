"""The model builder and the built-in networks, run on real records through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from factory.errors import ConfigError, FactoryError
from factory.features.spec import FeatureSpec
from factory.model.builder import build_model, head_spec, predictions
from factory.networks import registry
from factory.networks.common import dense_inputs
from factory.networks.registry import register_network
from tests import helpers

REPO = helpers.REPO


@pytest.fixture(autouse=True)
def clean_registry():
    registry.known_networks()
    networks = dict(registry._networks)
    yield
    registry._networks.clear()
    registry._networks.update(networks)


@pytest.fixture(scope="module")
def digits_spec() -> FeatureSpec:
    return FeatureSpec.from_yaml(REPO / "conf/features/digits.yaml")


@pytest.fixture(scope="module")
def digits_batch(digits_spec, tmp_path_factory):
    """Six digits-like records written with the spec's writer, read back as one eval batch of 6."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(6, dtype=np.int64)
    prefix = tmp_path_factory.mktemp("digits") / "digits"
    with digits_spec.writer(prefix) as writer:
        writer.write_many({"image": images, "label": labels})
    features, label = next(iter(digits_spec.dataset(f"{prefix}-*", mode="eval", batch_size=6)))
    return features, label


def spec_from(features: dict, labels: dict) -> FeatureSpec:
    return FeatureSpec.from_dict({"features": features, "labels": labels})


def first_batch(spec: FeatureSpec, directory: Path, records: list[dict], batch_size: int):
    with spec.writer(directory / "records") as writer:
        for record in records:
            writer.write(record)
    return next(iter(spec.dataset(f"{directory}/records-*", mode="eval", batch_size=batch_size)))


# -- built-in networks on the digits spec --------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "params", "layers"),
    [
        (
            "cnn",
            {"filters": [4, 8], "dense": 16},
            ["image_conv0", "image_pool0", "image_conv1", "image_pool1", "cnn_dense"],
        ),
        ("cnn", {"filters": [2, 2, 2, 2], "dense": 0, "dropout": 0.0}, ["image_pool1", "image_conv3"]),
        (
            "mlp",
            {"hidden": [16, 8], "dropout": 0.1, "batch_norm": True},
            ["mlp_dense1", "mlp_batch_norm1", "mlp_dropout1"],
        ),
        ("linear", {}, ["image_flat"]),
    ],
)
def test_builtin_networks_on_digits(digits_spec, digits_batch, network, params, layers):
    features, label = digits_batch
    model = build_model(digits_spec, network, params)
    names = [layer.name for layer in model.layers]
    assert set(layers) <= set(names)
    assert names[-1] == "logits" and model.name == network
    assert set(model.input) == {"image"}
    assert model.input["image"].dtype == "float32"  # scaled by the spec's preprocess
    logits = model(features, training=False)
    assert logits.shape == (6, 10) and logits.dtype == tf.float32
    assert np.isfinite(logits.numpy()).all()
    assert model(features, training=True).shape == (6, 10)
    assert label.shape == (6,)


def test_cnn_stops_pooling_before_the_image_gets_too_small(digits_spec):
    model = build_model(digits_spec, "cnn", {"filters": [2, 2, 2, 2], "dense": 0, "dropout": 0.0})
    pools = [layer for layer in model.layers if "_pool" in layer.name]
    # 8x8 -> 4x4 -> 2x2, then no more pooling.
    assert [tuple(p.output.shape[1:3]) for p in pools] == [(4, 4), (2, 2)]
    assert model.get_layer("image_flatten").output.shape == (None, 2 * 2 * 2)


def test_uint8_images_without_preprocess_are_cast_not_scaled(tmp_path):
    spec = spec_from(
        {"image": {"dtype": "uint8", "shape": [4, 4, 1]}, "x": {"dtype": "float32", "shape": [2]}},
        {"y": {"dtype": "float32", "shape": []}},
    )
    image = np.full((4, 4, 1), 200, np.uint8)
    features, _ = first_batch(spec, tmp_path, [{"image": image, "x": [1.0, 2.0], "y": 0.5}], 1)
    model = build_model(spec, "cnn", {"filters": [2], "dense": 4})
    assert model.input["image"].dtype == "uint8"
    cast = keras.Model(model.input, model.get_layer("image_float").output)
    np.testing.assert_array_equal(cast(features).numpy(), np.full((1, 4, 4, 1), 200.0))
    # The non-image feature joins the image tower before the dense layer.
    assert model.get_layer("cnn_dense").input.shape == (None, 2 * 2 * 2 + 2)
    assert model(features).shape == (1, 1)


def test_mixed_precision_keeps_logits_float32(digits_spec, digits_batch):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(digits_spec, "mlp", {"hidden": [8]})
        assert model.get_layer("mlp_dense0").compute_dtype == "float16"
        assert model(digits_batch[0]).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


# -- dense inputs --------------------------------------------------------------------------------


def test_vocabulary_and_float_features_through_mlp(tmp_path):
    spec = spec_from(
        {
            "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green", "blue"], "oov_buckets": 1},
            "tags": {"dtype": "string", "shape": [2], "vocabulary": ["a", "b"]},
            "x": {"dtype": "float32", "shape": [3]},
        },
        {"clicked": {"dtype": "int64", "shape": [], "task": "binary"}},
    )
    records = [
        {"color": "green", "tags": ["b", "a"], "x": [1.0, 2.0, 3.0], "clicked": 1},
        {"color": "purple", "tags": ["a", "a"], "x": [4.0, 5.0, 6.0], "clicked": 0},
    ]
    features, labels = first_batch(spec, tmp_path, records, 2)
    model = build_model(spec, "mlp", {"hidden": [5]})
    assert model.input["color"].dtype == "int64" and model.input["tags"].dtype == "int64"
    assert model.get_layer("mlp_dense0").kernel.shape == (4 + 2 * 2 + 3, 5)

    encoded = keras.Model(model.input, model.get_layer("inputs_concat").output)(features).numpy()
    expected = np.array(
        [
            [*[0, 1, 0, 0], *[0, 1, 1, 0], *[1, 2, 3]],  # green; b, a; x
            [*[0, 0, 0, 1], *[1, 0, 1, 0], *[4, 5, 6]],  # purple -> the OOV bucket; a, a; x
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(encoded, expected)
    assert model(features).shape == (2, 1)
    assert labels.dtype == tf.float32


def test_padded_variable_length_ids_are_one_hot_per_position(tmp_path):
    spec = spec_from(
        {"words": {"dtype": "string", "shape": [None], "vocabulary": ["x", "y", "z"], "max_length": 3}},
        {"y": {"dtype": "float32", "shape": []}},
    )
    features, _ = first_batch(spec, tmp_path, [{"words": ["z", "x"], "y": 1.0}], 1)
    model = build_model(spec, "linear", {})
    assert model.get_layer("logits").kernel.shape == (3 * 3, 1)
    assert model(features).shape == (1, 1)


def test_variable_length_without_max_length_needs_max_length():
    spec = spec_from({"values": {"dtype": "float32", "shape": [None]}}, {"y": {"dtype": "float32", "shape": []}})
    with pytest.raises(ConfigError, match=r"features\.values\.max_length: the network 'mlp' needs a fixed size"):
        build_model(spec, "mlp", {})


def test_a_string_without_vocabulary_needs_one():
    spec = spec_from({"city": {"dtype": "string", "shape": []}}, {"y": {"dtype": "float32", "shape": []}})
    with pytest.raises(ConfigError, match=r"features\.city\.vocabulary: the network 'linear' needs numbers"):
        build_model(spec, "linear", {})


def test_layer_names_never_collide_with_feature_names(tmp_path):
    spec = spec_from(
        {"mlp_dense0": {"dtype": "float32", "shape": [2]}, "other": {"dtype": "float32", "shape": [1]}},
        {"y": {"dtype": "float32", "shape": []}},
    )
    model = build_model(spec, "mlp", {"hidden": [3]})
    assert "mlp_dense0_1" in [layer.name for layer in model.layers]
    features, _ = first_batch(spec, tmp_path, [{"mlp_dense0": [1.0, 2.0], "other": [3.0], "y": 0.0}], 1)
    assert model(features).shape == (1, 1)


def test_dense_inputs_needs_the_build_context():
    with pytest.raises(FactoryError, match="no feature spec is being built"):
        dense_inputs({"x": keras.Input(shape=(2,), name="x")})


# -- heads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "head"),
    [
        ({"dtype": "int64", "shape": [], "num_classes": 10}, ("classification", 10)),
        ({"dtype": "string", "shape": [1], "vocabulary": ["cat", "dog", "emu"]}, ("classification", 3)),
        ({"dtype": "int64", "shape": [], "task": "binary"}, ("binary", 1)),
        ({"dtype": "float32", "shape": [3], "task": "binary"}, ("binary", 3)),
        ({"dtype": "float32", "shape": []}, ("regression", 1)),
        ({"dtype": "float32", "shape": [3]}, ("regression", 3)),
        ({"dtype": "float32", "shape": [2, 2]}, ("regression", 4)),
    ],
)
def test_head_spec_and_model_output_size(label, head):
    spec = spec_from({"x": {"dtype": "float32", "shape": [2]}}, {"target": label})
    assert head_spec(spec) == head
    model = build_model(spec, "linear", {})
    assert model({"x": np.zeros((3, 2), np.float32)}).shape == (3, head[1])


def test_a_normalized_regression_label_is_predicted_in_its_units():
    spec = spec_from(
        {"x": {"dtype": "float32", "shape": [2]}},
        {"y": {"dtype": "float32", "shape": [2], "normalize": {"mean": [100.0, -5.0], "std": [10.0, 0.5]}}},
    )
    model = build_model(spec, "linear", {})
    x = np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)
    logits = model.get_layer("logits")(x).numpy()  # what the network learns: (y - mean) / std
    np.testing.assert_allclose(model({"x": x}).numpy(), logits * [10.0, 0.5] + [100.0, -5.0], rtol=1e-6)
    assert model.get_layer("denormalize").dtype == "float32"


def test_predictions_classification():
    logits = tf.constant([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    out = predictions("classification", logits)
    assert set(out) == {"probabilities", "class_ids", "logits"}
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"].numpy(), tf.nn.softmax(logits).numpy())
    assert out["class_ids"].dtype == tf.int64
    assert out["class_ids"].numpy().tolist() == [2, 0]
    assert predictions("classification", logits, (1,))["class_ids"].shape == (2, 1)


def test_predictions_binary_are_shaped_like_the_label():
    out = predictions("binary", tf.constant([[-1.0], [0.0], [2.0]]))
    assert set(out) == {"probability", "class_ids", "logits"}
    assert out["probability"].shape == (3,) and out["logits"].shape == (3,)
    np.testing.assert_allclose(out["probability"].numpy(), 1 / (1 + np.exp([1.0, 0.0, -2.0])), rtol=1e-6)
    assert out["class_ids"].dtype == tf.int64
    assert out["class_ids"].numpy().tolist() == [0, 0, 1]
    assert predictions("binary", tf.zeros([4, 3]), (3,))["probability"].shape == (4, 3)


def test_predictions_regression_are_shaped_like_the_label():
    assert set(predictions("regression", tf.zeros([5, 1]))) == {"predictions"}
    assert predictions("regression", tf.zeros([5, 1]))["predictions"].shape == (5,)
    out = predictions("regression", tf.reshape(tf.range(8, dtype=tf.float32), [2, 4]), (2, 2))
    assert out["predictions"].numpy().tolist() == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]


def test_predictions_work_in_a_graph():
    fn = tf.function(lambda logits: predictions("binary", logits), input_signature=[tf.TensorSpec([None, 1])])
    assert fn(tf.zeros([7, 1]))["class_ids"].shape == (7,)


# -- errors ----------------------------------------------------------------------------------------


def test_a_network_that_returns_no_tensor_is_named(digits_spec):
    @register_network("returns_dict")
    def returns_dict(features, num_outputs):
        return features

    @register_network("returns_number")
    def returns_number(features, num_outputs):
        return 3

    with pytest.raises(
        ConfigError, match=r"network 'returns_dict': the build function returned dict \(return one tensor"
    ):
        build_model(digits_spec, "returns_dict", {})
    with pytest.raises(
        ConfigError, match="network 'returns_number': the build function returned int; it must return one KerasTensor"
    ):
        build_model(digits_spec, "returns_number", {})


def test_a_network_that_returns_an_unflattened_tensor_is_named(digits_spec):
    @register_network("returns_image")
    def returns_image(features, num_outputs):
        return keras.layers.Conv2D(2, 3, name="conv")(features["image"])

    with pytest.raises(
        ConfigError,
        match=r"network 'returns_image': returned a tensor of shape \[null, 6, 6, 2\]; return \[batch, units\]",
    ):
        build_model(digits_spec, "returns_image", {})


def test_a_name_clash_inside_a_custom_network_is_explained():
    spec = spec_from({"hidden": {"dtype": "float32", "shape": [2]}}, {"y": {"dtype": "float32", "shape": []}})

    @register_network("clashing")
    def clashing(features, num_outputs):
        return keras.layers.Dense(4, name="hidden")(features["hidden"])  # named like the input

    with pytest.raises(ConfigError, match="network 'clashing': the name 'hidden' is used twice in the model"):
        build_model(spec, "clashing", {})


def test_cnn_needs_an_image():
    spec = spec_from({"x": {"dtype": "float32", "shape": [3]}}, {"y": {"dtype": "float32", "shape": []}})
    with pytest.raises(
        ConfigError,
        match=r"network\.name: 'cnn' needs at least one image feature .* x \(float32 \[3\]\); use mlp or linear",
    ):
        build_model(spec, "cnn", {})


@pytest.mark.parametrize(
    ("network", "params", "message"),
    [
        ("mlp", {"hiden": [8]}, r"network\.hiden: unknown parameter of network 'mlp' \(did you mean 'hidden'\?\)"),
        ("mlp", {"hidden": [8, 0]}, r"network\.hidden\[1\]: expected a positive number of units, got 0"),
        ("mlp", {"dropout": 1.0}, r"network\.dropout: 1\.0 is out of range; expected at least 0\.0 and below 1\.0"),
        ("mlp", {"activation": "rleu"}, r"network\.activation: unknown activation 'rleu' \(did you mean 'relu'\?\)"),
        ("cnn", {"filters": [8, -1]}, r"network\.filters\[1\]: expected a positive number of filters, got -1"),
        ("cnn", {"kernel_size": 0}, r"network\.kernel_size: 0 is out of range; expected at least 1"),
        ("nope", {}, r"network\.name: unknown network 'nope'"),
    ],
)
def test_bad_network_params(digits_spec, network, params, message):
    with pytest.raises(ConfigError, match=message):
        build_model(digits_spec, network, params)
