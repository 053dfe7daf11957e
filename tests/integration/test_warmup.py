"""The warmup file, checked against TF Serving's own protos (``tensorflow-serving-api``, a test-only
dependency) in both directions, and its limits and faults."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

from factory.errors import FactoryError
from factory.features.tfrecord import frame
from factory.names import DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE, EXAMPLES_INPUT, WARMUP_LIMIT, WARMUP_REQUESTS
from factory.serving.warmup import WarmupError, read_warmup, write_warmup


def _example(value: float) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString()


DEFAULT_INPUTS = {
    "dense": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "count": np.array([3, -(2**40)], dtype=np.int64),
    "image": np.arange(128, dtype=np.uint8).reshape(2, 8, 8, 1),
    "city": np.array([b"Paris", "Zürich".encode()], dtype=object),
}
EXAMPLE_INPUTS = {EXAMPLES_INPUT: np.array([_example(0.5), _example(-1.0), b""], dtype=object)}
REQUESTS = [(DEFAULT_SIGNATURE, DEFAULT_INPUTS), (EXAMPLE_SIGNATURE, EXAMPLE_INPUTS)]


def _official(path) -> list:
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def _assert_same(inputs: dict, expected: dict) -> None:
    assert list(inputs) == list(expected)
    for name, value in expected.items():
        assert inputs[name].dtype == value.dtype and inputs[name].shape == value.shape, name
        np.testing.assert_array_equal(inputs[name], value)


def test_tf_serving_reads_what_we_write(tmp_path):
    path = write_warmup(tmp_path, "digits", REQUESTS)
    assert path == tmp_path / WARMUP_REQUESTS
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    logs = _official(path)
    assert len(logs) == 2
    for log, (signature, expected) in zip(logs, REQUESTS, strict=True):
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "digits"
        assert request.model_spec.signature_name == signature
        assert sorted(request.inputs) == sorted(expected)
        _assert_same({name: tf.make_ndarray(request.inputs[name]) for name in expected}, expected)
    examples = tf.make_ndarray(logs[1].predict_log.request.inputs[EXAMPLES_INPUT])
    assert tf.train.Example.FromString(examples[1]).features.feature["x"].float_list.value == [-1.0]
    # And back through our reader.
    read = read_warmup(tmp_path)
    assert [signature for signature, _ in read] == [DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE]
    for (_, inputs), (_, expected) in zip(read, REQUESTS, strict=True):
        _assert_same(inputs, expected)


def test_we_read_what_tf_serving_protos_write(tmp_path):
    first = prediction_log_pb2.PredictionLog()
    first.log_metadata.model_spec.name = "digits"
    first.log_metadata.sampling_config.sampling_rate = 0.5
    request = first.predict_log.request
    request.model_spec.name = "digits"
    request.model_spec.version.value = 7  # signature_name left empty: serving_default
    request.output_filter.append("probabilities")
    for name, value in DEFAULT_INPUTS.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    first.predict_log.response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
    classify = prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classification_pb2.ClassificationRequest())
    )
    classify.classify_log.request.model_spec.name = "digits"
    last = prediction_log_pb2.PredictionLog()
    last.predict_log.request.CopyFrom(predict_pb2.PredictRequest())
    last.predict_log.request.model_spec.signature_name = EXAMPLE_SIGNATURE
    last.predict_log.request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(EXAMPLE_INPUTS[EXAMPLES_INPUT]))
    path = tmp_path / WARMUP_REQUESTS
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in (first, classify, last):
            writer.write(log.SerializeToString())

    skipped = []
    read = read_warmup(tmp_path, on_skip=lambda index, kind: skipped.append((index, kind)))
    assert skipped == [(1, "classify_log")]
    assert [signature for signature, _ in read] == [DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE]
    _assert_same(dict(sorted(read[0][1].items())), dict(sorted(DEFAULT_INPUTS.items())))
    _assert_same(read[1][1], EXAMPLE_INPUTS)


def test_missing_file_is_no_requests(tmp_path):
    assert read_warmup(tmp_path) == []


def test_too_many_requests_write_nothing(tmp_path):
    one = (DEFAULT_SIGNATURE, {"count": np.array([1], dtype=np.int64)})
    with pytest.raises(ValueError, match=str(WARMUP_LIMIT)):
        write_warmup(tmp_path, "digits", [one] * (WARMUP_LIMIT + 1))
    assert list(tmp_path.rglob("*")) == []


def test_too_many_records(tmp_path):
    one = (DEFAULT_SIGNATURE, {"count": np.array([1], dtype=np.int64)})
    path = write_warmup(tmp_path, "digits", [one] * WARMUP_LIMIT)
    assert len(read_warmup(tmp_path)) == WARMUP_LIMIT
    with open(path, "ab") as f:
        f.write(frame(_official(path)[0].SerializeToString()))
    with pytest.raises(WarmupError, match=rf"{WARMUP_REQUESTS}, record {WARMUP_LIMIT}: more than {WARMUP_LIMIT}"):
        read_warmup(tmp_path)


def _two_records(tmp_path):
    path = write_warmup(tmp_path, "digits", REQUESTS)
    data = path.read_bytes()
    return path, data, 12 + int.from_bytes(data[:8], "little") + 4  # the first record's length, framed


@pytest.mark.parametrize("cut", [-1, -20, "header"])
def test_truncated_file(tmp_path, cut):
    path, data, second = _two_records(tmp_path)
    # Cut inside the second record's header: tf.data (like TF Serving) takes that for the end of the file.
    path.write_bytes(data[: second + 3] if cut == "header" else data[:cut])
    with pytest.raises(WarmupError, match=rf"{WARMUP_REQUESTS}, record 1: the file is truncated"):
        read_warmup(tmp_path)


def test_corrupt_file(tmp_path):
    path, data, _ = _two_records(tmp_path)
    corrupt = bytearray(data)
    corrupt[20] ^= 0x01  # inside the first record's data
    path.write_bytes(bytes(corrupt))
    with pytest.raises(WarmupError, match=r"record 0: the file is corrupt \(the record's data fails its CRC\)"):
        read_warmup(tmp_path)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff",  # a varint that never ends
        b"\x32\x40abc",  # predict_log: 64 bytes announced, 3 there
        b"\x0f",  # wire type 7
        b"\x32\x05\x0a\x03\x12\x01\x80",  # predict_log > request > inputs entry: truncated varint
    ],
)
def test_record_of_garbage(tmp_path, garbage):
    with pytest.raises(DecodeError):
        prediction_log_pb2.PredictionLog.FromString(garbage)
    path = write_warmup(tmp_path, "digits", REQUESTS[:1])
    with open(path, "ab") as f:
        f.write(frame(garbage))
    with pytest.raises(WarmupError, match=r"record 1: not a PredictionLog") as raised:
        read_warmup(tmp_path)
    assert isinstance(raised.value, FactoryError)
    assert str(path) in str(raised.value)


def test_input_that_is_not_a_tensor(tmp_path):
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["x"].dtype = 0  # an entry whose value is an empty TensorProto
    path = tmp_path / WARMUP_REQUESTS
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())
    with pytest.raises(WarmupError, match=r"record 0: not a PredictionLog: input 'x' is not a valid TensorProto"):
        read_warmup(tmp_path)
