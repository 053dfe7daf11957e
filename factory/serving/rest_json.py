"""TF Serving's REST JSON for ``:predict``: request bodies to numpy arrays, arrays to response bodies. No TensorFlow.

``signature_name`` parses a body and names the signature it asks for, ``parse_predict`` turns
the body's ``instances`` (row format) or ``inputs`` (columnar format) into one array per input
of that signature, ``encode_predictions`` writes outputs as ``{"predictions": ...}`` or
``{"outputs": ...}`` and ``error_body`` writes ``{"error": ...}``. Each follows TF Serving's
``json_tensor.cc`` rule by rule, with its error texts; one value at a time is converted by
``factory.serving.json_values`` (``{"b64": ...}`` for binary strings, ``NaN``/``Infinity``
accepted; floats written as ``WriteDecimal`` writes them). Problems are ``RestError`` (an HTTP
status and a message).

Where it deliberately differs from TF Serving:

- every array is checked against the signature (rank and each fixed dimension) and refused
  with a message naming the input, e.g. ``input 'image': expected uint8 of shape
  [batch, 8, 8, 1], got an array of shape [2, 8, 8]`` (TF Serving passes it on and TensorFlow
  fails with an internal message);
- integers must fit the input's dtype, and a message names the input and the range (TF Serving
  truncates 300 to 44 for uint8);
- the inputs of a columnar request must share their first dimension, as the requests of a
  signature are batched together (TF Serving lets them differ);
- float16 and uint16 inputs are fed (TF Serving answers 501 Unimplemented);
- the JSON is written compactly (TF Serving indents it), an error quotes at most 100 characters
  of a value (TF Serving 256 bytes), and invalid UTF-8 in a string output is written as U+FFFD
  (TF Serving copies the bytes, which makes the body invalid JSON).
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.names import DEFAULT_SIGNATURE
from factory.serving.inputs import TensorInfo
from factory.serving.json_values import (
    JsonTensor,
    RestError,
    debug,
    dims,
    is_named,
    json_string,
    json_texts,
    shape_text,
)

ROW, COLUMNAR = "row", "columnar"

_JSON_SPACE = " \t\n\r"
_DECODER = json.JSONDecoder()
# absl status code names, as Status::ToString() prefixes a wrapped message.
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED"}


@dataclass(frozen=True)
class PredictRequest:
    """The tensors of one ``:predict`` body.

    ``format`` is ``"row"`` (``instances``) or ``"columnar"`` (``inputs``); ``inputs`` holds one
    array per input of the signature, in its order and dtype (strings: object arrays of bytes);
    ``batch_size`` is the number of instances (row) or the common first dimension (columnar;
    None if an input has none).
    """

    signature_name: str
    format: str
    inputs: dict[str, np.ndarray]
    batch_size: int | None


def signature_name(body: bytes | str, default: str = DEFAULT_SIGNATURE) -> tuple[dict, str]:
    """Parse the JSON ``body`` and return ``(document, signature name)`` (``default`` when absent or ``""``).

    As TF Serving: ``NaN``/``Infinity`` are accepted and what follows the first complete value is
    ignored; the document must be an object and ``signature_name``, if given, a string.
    """
    doc = _parse(body)
    if not isinstance(doc, dict):
        raise RestError(f"JSON Value: {debug(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise RestError(
            f"JSON Value: {debug(doc)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return doc, name or default


def unknown_signature(name: str) -> RestError:
    """TF Serving's answer to a ``signature_name`` the model does not have (400)."""
    return RestError(f'Serving signature name: "{name}" not found in signature def')


def parse_predict(document: dict, signature: Mapping[str, TensorInfo], signature_name: str) -> PredictRequest:
    """The tensors a parsed ``:predict`` body gives ``signature`` (input name -> ``TensorInfo``).

    ``instances`` (row format) holds one value per example, or one object per example keyed by
    input name; ``inputs`` (columnar format) holds the value of the only input, or an object
    keyed by input name (other keys are ignored). Raises ``RestError``.
    """
    if not signature:
        raise RestError(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise RestError(
                f"JSON Value: {debug(document)} Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        instances = document["instances"]
        if not isinstance(instances, list):
            raise RestError(f"JSON Value: {debug(document)} Expecting 'instances' to be an list/array")
        if not instances:
            raise RestError(f"JSON Value: {debug(document)} No values in 'instances' array")
        arrays, form = _from_instances(instances, signature), ROW
    elif "inputs" in document:
        arrays, form = _from_inputs(document["inputs"], signature), COLUMNAR
    else:
        raise RestError("Missing 'inputs' or 'instances' key")
    for name, info in signature.items():
        _check_shape(name, info, arrays[name])
    if form == ROW:
        return PredictRequest(signature_name, ROW, arrays, len(document["instances"]))
    firsts = {name: arr.shape[0] for name, arr in arrays.items() if arr.ndim}
    names = list(firsts)
    for name in names[1:]:
        if firsts[name] != firsts[names[0]]:
            raise RestError(
                f"inputs '{names[0]}' and '{name}' have different first dimensions ({firsts[names[0]]} and "
                f"{firsts[name]}): the first dimension of every input counts the same examples"
            )
    batch = firsts[names[0]] if names and len(firsts) == len(arrays) else None
    return PredictRequest(signature_name, COLUMNAR, arrays, batch)


def encode_predictions(outputs: Mapping[str, np.ndarray], format: str) -> bytes:
    """TF Serving's response body: ``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar).

    Row format: one value per example for a single output, else one object per example keyed
    by output name (every output must have the same first dimension). Columnar format: the
    output's value, or an object of them. Names in sorted order; a string output whose name
    ends in ``_bytes`` is written as ``{"b64": ...}``.
    """
    if not outputs:
        raise RestError("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    keys = [json_string(name) + ":" for name in names]
    if format == ROW:
        batch = -1
        for name in names:
            arr = arrays[name]
            if arr.ndim == 0:
                raise RestError(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and arr.shape[0] != batch:
                raise RestError(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}")
            batch = arr.shape[0]
        rows = [json_texts(name, arrays[name], keep=1) for name in names]
        if len(names) == 1:
            items = rows[0]
        else:
            items = ["{" + ",".join(k + r[i] for k, r in zip(keys, rows, strict=True)) + "}" for i in range(batch)]
        text = '{"predictions":[' + ",".join(items) + "]}"
    elif format == COLUMNAR:
        values = [json_texts(name, arrays[name], keep=0)[0] for name in names]
        if len(names) == 1:
            text = '{"outputs":' + values[0] + "}"
        else:
            text = '{"outputs":{' + ",".join(k + v for k, v in zip(keys, values, strict=True)) + "}}"
    else:
        raise RestError("Invalid request format")
    return text.encode("utf-8", "replace")


def error_body(message: str) -> bytes:
    """``{"error": message}`` as TF Serving writes it (UTF-8; ``\\u`` escapes only if ``message`` is not valid text)."""
    try:
        return ('{"error":' + json.dumps(message, ensure_ascii=False) + "}").encode("utf-8")
    except UnicodeEncodeError:
        return ('{"error":' + json.dumps(message) + "}").encode("ascii")


# ---- parsing -------------------------------------------------------------------------------------


def _parse(body: bytes | str) -> Any:
    """The JSON value at the start of ``body``, as rapidjson parses it (kParseNanAndInfFlag, kParseStopWhenDoneFlag)."""
    bom = 0
    if isinstance(body, str):
        text = body
    else:
        raw = bytes(body)
        bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
        # rapidjson does not validate UTF-8: bytes that are not pass through to string values.
        text = raw[bom:].decode("utf-8", "surrogateescape")
    if not text and not bom:
        raise RestError("JSON Parse error: The document is empty")

    def offset(pos: int) -> int:  # rapidjson counts bytes
        try:
            return bom + len(text[:pos].encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            return bom + pos

    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if start == len(text):
        raise RestError(f"JSON Parse error: The document is empty. at offset: {offset(start)}")
    try:
        doc, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as err:
        raise RestError(f"JSON Parse error: {err.msg} at offset: {offset(err.pos)}") from None
    except RecursionError:
        raise RestError("JSON Parse error: The document nests arrays or objects too deeply") from None
    return doc


def _wrapped(err: RestError) -> str:
    """Status::ToString() of an error, as TF Serving quotes one inside another."""
    return f"{_CODES.get(err.status, 'UNKNOWN')}: {err.message}"


def _from_instances(instances: list, signature: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: each instance gives one example of every input."""
    if len(signature) > 1 and not is_named(instances[0]):
        raise RestError(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    named = is_named(instances[0])
    tensors = {name: JsonTensor(info) for name, info in signature.items()}
    shapes: dict[str, tuple[int, ...]] = {}
    values: dict[str, list] = {name: [] for name in signature}

    def add(name: str, item: Any) -> None:  # AddInstanceItem
        if name not in tensors:
            raise RestError(f"JSON object: does not have named input: {name}")
        shape, vals = tensors[name].fill(item)
        if name not in shapes:
            shapes[name] = shape
        elif math.prod(shapes[name]) != len(vals):
            raise RestError(f"Expecting tensor size: {math.prod(shapes[name])} but got: {len(vals)}")
        elif shapes[name] != shape:
            raise RestError(f"Expecting shape {shape_text(shapes[name])} but got: {shape_text(shape)}")
        values[name].extend(vals)

    if not named:
        # All instances at once when they are regular and valid; else one by one, for TF Serving's errors.
        name, tensor = next(iter(tensors.items()))
        quick = None if any(is_named(elem) for elem in instances) else tensor.quick(instances)
        if quick is not None:
            return {name: tensor.array(quick[1], quick[0], instances)}
    for i, elem in enumerate(instances):
        if named:
            if not is_named(elem):
                raise RestError(f"Expecting object but got list at item {i} of input list")
            for key, item in elem.items():
                try:
                    add(key, item)
                except RestError as err:
                    raise RestError(
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: {_wrapped(err)}"
                    ) from None
            if elem.keys() != signature.keys():
                raise RestError(
                    f"Failed to process element: {i} of 'instances' list. JSON object: {debug(elem)} "
                    f"keys must be equal to: {','.join(sorted(signature))}"
                )
        else:
            if is_named(elem):
                raise RestError(f"Expecting value/list but got object at item {i} of input list")
            try:
                add(next(iter(signature)), elem)
            except RestError as err:
                raise RestError(f"Failed to process element: {i} of 'instances' list. Error: {_wrapped(err)}") from None
    n = len(instances)
    return {name: t.array(values[name], (n, *shapes[name]), instances) for name, t in tensors.items()}


def _from_inputs(value: Any, signature: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: the value of the only input, or an object of named inputs."""
    if not is_named(value):
        if len(signature) > 1:
            raise RestError(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name, info = next(iter(signature.items()))
        return {name: JsonTensor(info).build(value)}
    arrays = {}
    for name, info in signature.items():
        if name not in value:
            raise RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = JsonTensor(info).build(value[name])
    return arrays


def _check_shape(name: str, info: TensorInfo, arr: np.ndarray) -> None:
    """The array of input ``name`` against the signature: its rank and every fixed dimension."""
    want = (None, *info.shape)
    if len(want) != arr.ndim or any(w is not None and w != g for w, g in zip(want, arr.shape, strict=True)):
        raise RestError(f"input '{name}': expected {info.describe()}, got an array of shape {dims(arr.shape)}")
