"""TF Serving's REST JSON codec: request bodies to arrays, arrays to response bodies, with TF Serving's error texts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from factory.serving.inputs import TensorInfo
from factory.serving.rest_json import (
    RestError,
    encode_predictions,
    error_body,
    parse_predict,
    signature_name,
    unknown_signature,
)

X = {"x": TensorInfo("x", "float32", (2,))}
TWO = {"a": TensorInfo("a", "int32", (2,)), "s": TensorInfo("s", "string", ())}


def parse(body, signature=X):
    doc, name = signature_name(body if isinstance(body, str | bytes) else json.dumps(body))
    return parse_predict(doc, signature, name)


def fails(body, signature=X) -> RestError:
    with pytest.raises(RestError) as info:
        parse(body, signature)
    return info.value


def one(dtype: str, value, shape=()):
    """The single value of a one-input columnar request for ``dtype``."""
    return parse({"inputs": [value]}, {"x": TensorInfo("x", dtype, shape)}).inputs["x"]


def test_signature_name_defaults_when_absent_or_empty():
    assert signature_name(b'{"instances": [1]}')[1] == "serving_default"
    assert signature_name('{"signature_name": "", "inputs": 1}', default="predict")[1] == "predict"
    doc, name = signature_name(b'{"signature_name": "classify", "inputs": 1}')
    assert (doc, name) == ({"signature_name": "classify", "inputs": 1}, "classify")


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b" \n", "JSON Parse error: The document is empty. at offset: 2"),
        (b'{"a":', "JSON Parse error: Expecting value at offset: 5"),
        ('{"\u00e9": x}'.encode(), "JSON Parse error: Expecting value at offset: 7"),  # offsets count bytes
        (b"[1, 2]", "JSON Value: [1, 2] Is not object"),
        (
            b'{"signature_name": 5}',
            "JSON Value: {\"signature_name\": 5} not formatted correctly. 'signature_name' key ",
        ),
        (b'{"signature_name": null}', "'signature_name' key must be a string value."),
    ],
)
def test_parse_errors(body, message):
    with pytest.raises(RestError) as info:
        signature_name(body)
    assert info.value.message.startswith("JSON ")
    assert message in info.value.message
    assert info.value.status == 400


def test_parse_accepts_what_rapidjson_accepts():
    # a UTF-8 BOM, NaN and infinities, and anything after the document
    request = parse(b'\xef\xbb\xbf{"instances": [[NaN, -Infinity], [1, 2.5]]} trailing')
    x = request.inputs["x"]
    assert np.isnan(x[0, 0]) and x[0, 1] == -np.inf and x[1].tolist() == [1.0, 2.5]


def test_long_values_are_cut_in_messages():
    message = fails({"inputs": 1, "instances": list(range(500))}).message
    assert message.startswith('JSON Value: {"inputs": 1, "instances": [0, 1, 2')
    assert "..." in message and len(message) < 250


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [1], "inputs": [1]}, "Not formatted correctly expecting only one of 'inputs' or 'instances' "),
        ({"instance": [[1, 2]]}, "Missing 'inputs' or 'instances' key"),
        ({"instances": {"x": [1, 2]}}, "Expecting 'instances' to be an list/array"),
        ({"instances": []}, "No values in 'instances' array"),
        (
            {"instances": [[1, 2], [3]]},
            "element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 ",
        ),
        ({"instances": [[1, 2], [[3, 4]]]}, "Expecting shape [2] but got: [1,2]"),
        ({"instances": [[1, [2]]]}, "Encountered list at unexpected level: 1 expected < 1"),
        ({"inputs": [[1], 2]}, "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
        ({"inputs": [[1, 2], [3]]}, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
        ({"instances": [[1, "a"]]}, 'JSON Value: "a" Type: String is not of expected type: float'),
        ({"instances": [[1, True]]}, "JSON Value: true Type: True is not of expected type: float"),
        ({"inputs": [[1, None]]}, "JSON Value: null Type: Null is not of expected type: float"),
        ({"inputs": [[1, {"b64": "AA=="}]]}, 'JSON Value: {"b64": "AA=="} Type: Object is not of expected type: float'),
        ({"instances": [[1, 2], {"x": [1, 2]}]}, "Expecting value/list but got object at item 1 of input list"),
        ({"inputs": [[2**1100, 1]]}, "Type: Number is not of expected type: float (too big to be stored in double)"),
    ],
)
def test_one_input_errors(body, message):
    assert message in fails(body).message


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [[1, 2]]}, "instances is a plain list, but expecting list of objects as multiple input "),
        ({"instances": [{"b64": "AA=="}]}, "instances is a plain list, but expecting list of objects"),
        (
            {"instances": [{"a": [1, 2], "s": "x", "c": 1}]},
            "element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not have named input: c",
        ),
        (
            {"instances": [{"a": [1, 2], "s": "x"}, {"a": [1, 2]}]},
            "element: 1 of 'instances' list. JSON object: {\"a\": [1, 2]} keys must be equal to: a,s",
        ),
        ({"instances": [{"a": [1, 2], "s": "x"}, [1, 2]]}, "Expecting object but got list at item 1 of input list"),
        ({"inputs": [[1, 2]]}, "inputs is a plain value/list, but expecting an object as multiple input tensors"),
        ({"inputs": {"a": [[1, 2]]}}, "Missing named input: s in 'inputs' object."),
        (
            {"inputs": {"a": [[1, 2], [3, 4]], "s": ["x"]}},
            "inputs 'a' and 's' have different first dimensions (2 and 1)",
        ),
    ],
)
def test_several_inputs_errors(body, message):
    assert message in fails(body, TWO).message


def test_row_format_one_input():
    request = parse({"instances": [[1, 2.5], [3, 0.007]], "signature_name": "sig"})
    assert (request.format, request.batch_size, request.signature_name) == ("row", 2, "sig")
    assert request.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(request.inputs["x"], np.array([[1, 2.5], [3, 0.007]], np.float32))


def test_row_format_named_inputs_and_b64():
    request = parse({"instances": [{"a": [1, 2], "s": "héllo"}, {"s": {"b64": "d29ybGQ="}, "a": [3, 4]}]}, TWO)
    assert request.batch_size == 2
    assert request.inputs["a"].dtype == np.int32 and request.inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert request.inputs["s"].dtype == object and request.inputs["s"].tolist() == ["héllo".encode(), b"world"]


def test_columnar_format():
    request = parse({"inputs": {"a": [[1, 2], [3, 4]], "s": ["x", "y"], "ignored": 1}}, TWO)
    assert (request.format, request.batch_size) == ("columnar", 2)
    assert list(request.inputs) == ["a", "s"] and request.inputs["s"].tolist() == [b"x", b"y"]
    strings = parse({"inputs": [{"b64": "aGVsbG8="}, "x"]}, {"s": TensorInfo("s", "string", ())})
    assert strings.inputs["s"].tolist() == [b"hello", b"x"] and strings.batch_size == 2


def test_strings_keep_bytes_that_are_not_utf8():
    strings = {"s": TensorInfo("s", "string", ())}
    assert parse(b'{"inputs": ["\xff\xfe"]}', strings).inputs["s"].tolist() == [b"\xff\xfe"]
    with pytest.raises(RestError, match="is not valid UTF-8"):
        parse('{"inputs": ["\\ud800"]}', strings)


@pytest.mark.parametrize(
    "value, decoded",
    [
        ({"b64": "aGVsbG8="}, b"hello"),
        ({"b64": "aGVsbG8"}, b"hello"),  # padding is optional in absl
        ({"b64": "aGVs\nbG8="}, b"hello"),  # whitespace skipped
        ({"b64": ""}, b""),
        ({"b64": "aGVsbG8=="}, "Unable to base64 decode"),
        ({"b64": "a"}, "Unable to base64 decode"),
        ({"b64": "aGV$bG8="}, "Unable to base64 decode"),
        ({"b64": 5}, 'JSON Value: {"b64": 5} not formatted correctly for base64 data'),
        ({"b64": "AA==", "x": 1}, "not formatted correctly for base64 data"),
    ],
)
def test_base64(value, decoded):
    if isinstance(decoded, bytes):
        assert one("string", value).tolist() == [decoded]
    else:
        with pytest.raises(RestError, match=decoded):
            one("string", value)


@pytest.mark.parametrize(
    "dtype, value, message",
    [
        ("uint8", 255, None),
        ("uint8", 256, "JSON Value: 256 Type: Number is not of expected type: uint8 (input 'x' takes integers from 0 "),
        ("uint8", -1, "(input 'x' takes integers from 0 to 255)"),
        ("int8", -129, "takes integers from -128 to 127"),
        ("int16", 40000, "takes integers from -32768 to 32767"),
        ("int32", 2**31, "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
        ("int64", 2**63 - 1, None),
        ("int64", 2**53 + 1, None),
        ("int64", 2**63, "is not of expected type: int64"),
        ("int32", 1.0, "JSON Value: 1.0 Type: Number is not of expected type: int32"),
        ("int64", True, "JSON Value: true Type: True is not of expected type: int64"),
        ("bool", 1, "JSON Value: 1 Type: Number is not of expected type: bool"),
        ("bool", False, None),
        ("string", 5, "JSON Value: 5 Type: Number is not of expected type: string"),
        ("float64", True, "JSON Value: true Type: True is not of expected type: double"),
        ("float64", 0.1, None),
    ],
)
def test_values(dtype, value, message):
    if message is None:
        arr = one(dtype, value)
        assert arr.dtype == np.dtype(dtype) and arr.tolist() == [value]  # int64 above 2**53 stays exact
    else:
        with pytest.raises(RestError) as info:
            one(dtype, value)
        assert message in info.value.message and info.value.status == 400


def test_a_dtype_that_cannot_be_fed():
    with pytest.raises(RestError) as info:
        one("complex64", 1)
    assert (info.value.status, info.value.message) == (501, "Conversion of JSON Value: 1 to type: complex64")
    wrapped = fails({"instances": [1]}, {"x": TensorInfo("x", "complex64", ())})
    assert "Error: UNIMPLEMENTED: Conversion of JSON Value: 1" in wrapped.message and wrapped.status == 400


def test_arrays_are_checked_against_the_signature():
    image = {"image": TensorInfo("image", "uint8", (8, 8, 1))}
    assert parse({"instances": np.zeros((2, 8, 8, 1), int).tolist()}, image).inputs["image"].shape == (2, 8, 8, 1)
    message = fails({"instances": np.zeros((2, 8, 8), int).tolist()}, image).message
    assert message == "input 'image': expected uint8 of shape [batch, 8, 8, 1], got an array of shape [2, 8, 8]"
    assert "got an array of shape []" in fails({"inputs": 1}).message
    seq = {"seq": TensorInfo("seq", "float32", (None, 3))}
    assert parse({"inputs": [[[1, 2, 3], [4, 5, 6]]]}, seq).inputs["seq"].shape == (1, 2, 3)
    assert "expected float32 of shape [batch, any, 3], got an array of shape [1, 2, 2]" in (
        fails({"inputs": [[[1, 2], [4, 5]]]}, seq).message
    )


def test_other_errors():
    assert fails({"inputs": 1}, {}).message == "Failed to get input map for signature: serving_default"
    err = unknown_signature("nope")
    assert (err.message, err.status) == ('Serving signature name: "nope" not found in signature def', 400)
    assert RestError("gone", 404).status == 404 and str(RestError("gone")) == "gone"


def columnar(arr, dtype) -> bytes:
    return encode_predictions({"y": np.array(arr, dtype)}, "columnar")


@pytest.mark.parametrize(
    "dtype, value, text",
    [
        ("float32", 0.2, "0.2"),
        ("float32", 1.0, "1.0"),
        ("float32", 9000000.0, "9e+06"),
        ("float32", 999999.0, "999999.0"),
        ("float32", 3e-05, "3e-05"),
        ("float32", 555557.5, "555557.5"),
        ("float32", 1.2345678, "1.23456776"),  # does not read back at six digits: nine
        ("float32", 16777216.0, "16777216.0"),
        ("float32", -0.0, "-0.0"),
        ("float32", np.nan, "NaN"),
        ("float32", -np.inf, "-Infinity"),
        ("float32", np.inf, "Infinity"),
        ("float64", 0.1, "0.1"),
        ("float64", 0.1 + 0.2, "0.30000000000000004"),
        ("float64", 1e100, "1e+100"),
    ],
)
def test_float_format(dtype, value, text):
    assert columnar([value], dtype) == b'{"outputs":[' + text.encode() + b"]}"


def test_float32_values_read_back_exactly():
    x = np.random.default_rng(0).standard_normal((256, 10)).astype(np.float32)
    back = np.array(json.loads(encode_predictions({"p": x}, "row"))["predictions"], np.float32)
    np.testing.assert_array_equal(back, x)


def test_row_responses():
    assert encode_predictions({"y": np.array([[1, 2], [3, 4]])}, "row") == b'{"predictions":[[1,2],[3,4]]}'
    outputs = {
        "scores": np.array([[0.5], [np.nan]], np.float32),
        "ids": np.array([2**62 + 1, -5], np.int64),
        "ok": np.array([True, False]),
        "label": np.array([b"cat", b"\xff"], dtype=object),
        "raw_bytes": np.array([b"hello", b"\x00"], dtype=object),
    }
    body = encode_predictions(outputs, "row")
    assert body.startswith(b'{"predictions":[{"ids":4611686018427387905,"label":"cat","ok":true,')
    first, second = json.loads(body)["predictions"]
    assert first == {"ids": 2**62 + 1, "label": "cat", "ok": True, "raw_bytes": {"b64": "aGVsbG8="}, "scores": [0.5]}
    assert second["label"] == "\ufffd" and second["raw_bytes"] == {"b64": "AA=="} and np.isnan(second["scores"][0])
    assert encode_predictions({"a": np.zeros((0, 3)), "b": np.zeros(0)}, "row") == b'{"predictions":[]}'


def test_columnar_responses():
    assert columnar([[1, 2], [3, 4]], np.int32) == b'{"outputs":[[1,2],[3,4]]}'
    assert columnar(7.0, np.float64) == b'{"outputs":7.0}'
    assert columnar(np.zeros((2, 0)), np.float32) == b'{"outputs":[[],[]]}'
    body = encode_predictions({"b": np.array(["é"]), "a": np.array([[1.5]], np.float32)}, "columnar")
    assert body == '{"outputs":{"a":[[1.5]],"b":["é"]}}'.encode()


@pytest.mark.parametrize(
    "outputs, form, message",
    [
        ({}, "row", "Cannot convert empty tensor map to JSON"),
        ({"a": np.zeros(2), "b": np.zeros(3)}, "row", "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
        ({"a": np.float32(1)}, "row", "Tensor name: a has no shape information "),
        ({"a": np.zeros(2, np.complex64)}, "columnar", "Failed to write JSON value for tensor type: complex64"),
        ({"a": np.zeros(2)}, "json", "Invalid request format"),
    ],
)
def test_response_errors(outputs, form, message):
    with pytest.raises(RestError) as info:
        encode_predictions(outputs, form)
    assert info.value.message == message


def test_error_body():
    body = error_body('bad "x" é')
    assert body == '{"error":"bad \\"x\\" é"}'.encode()
    assert json.loads(body) == {"error": 'bad "x" é'}
