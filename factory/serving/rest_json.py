"""TF Serving's REST JSON for ``:predict``: request bodies to numpy arrays, arrays to response bodies. No TensorFlow.

``signature_name`` parses a body and names the signature it asks for, ``parse_predict`` turns
the body's ``instances`` (row format) or ``inputs`` (columnar format) into one array per input
of that signature, ``encode_predictions`` writes outputs as ``{"predictions": ...}`` or
``{"outputs": ...}`` and ``error_body`` writes ``{"error": ...}``. Each follows TF Serving's
``json_tensor.cc`` rule by rule, with its error texts: JSON values become tensors as
``FillTensorProto`` and ``AddValueToTensor`` build them (``{"b64": ...}`` for binary strings;
``NaN``/``Infinity`` accepted), and floats are written as ``WriteDecimal`` writes them (six
significant digits when they read back exactly, else full precision; ``NaN``, ``Infinity``).
Problems are ``RestError`` (an HTTP status and a message).

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

import base64
import binascii
import codecs
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.serving.inputs import TensorInfo

DEFAULT_SIGNATURE = "serving_default"
ROW, COLUMNAR = "row", "columnar"

# How much of a JSON value an error message quotes.
_DEBUG_CHARS = 100
# TF's DataTypeString names where they differ from numpy's.
_TF_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
_FLOATS = frozenset({"float16", "float32", "float64"})
_INTS = {
    name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
# std::numeric_limits<T>::max_digits10 by float size: the digits that always read back exactly.
_MAX_DIGITS = {2: 5, 4: 9, 8: 17}
# absl::Base64Unescape: the standard alphabet, padding ('=' or '.') optional but exact if given.
_BASE64 = re.compile(r"([A-Za-z0-9+/]*)([=.]*)")
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")
_JSON_SPACE = " \t\n\r"
_DECODER = json.JSONDecoder()
# absl status code names, as Status::ToString() prefixes a wrapped message.
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED"}


class RestError(Exception):
    """An error answered as ``{"error": message}`` with HTTP ``status`` (400 INVALID_ARGUMENT by default,
    404 NOT_FOUND, 501 UNIMPLEMENTED, ...)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


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
        raise RestError(f"JSON Value: {_debug(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise RestError(
            f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a string value."
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
                f"JSON Value: {_debug(document)} Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        instances = document["instances"]
        if not isinstance(instances, list):
            raise RestError(f"JSON Value: {_debug(document)} Expecting 'instances' to be an list/array")
        if not instances:
            raise RestError(f"JSON Value: {_debug(document)} No values in 'instances' array")
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
    keys = [_string(name) + ":" for name in names]
    if format == ROW:
        batch = -1
        for name in names:
            arr = arrays[name]
            if arr.ndim == 0:
                raise RestError(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and arr.shape[0] != batch:
                raise RestError(f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}")
            batch = arr.shape[0]
        rows = [_values(name, arrays[name], keep=1) for name in names]
        if len(names) == 1:
            items = rows[0]
        else:
            items = ["{" + ",".join(k + r[i] for k, r in zip(keys, rows, strict=True)) + "}" for i in range(batch)]
        text = '{"predictions":[' + ",".join(items) + "]}"
    elif format == COLUMNAR:
        values = [_values(name, arrays[name], keep=0)[0] for name in names]
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


class _Full(Exception):
    """A debug string reached its limit."""


def _debug(value: Any, limit: int = _DEBUG_CHARS) -> str:
    """``value`` as one line of JSON for an error message (like JsonValueToDebugString), cut at ``limit`` chars."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > limit:
            raise _Full

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            put("{")
            for i, (k, x) in enumerate(v.items()):
                put((", " if i else "") + json.dumps(k, ensure_ascii=False) + ": ")
                walk(x)
            put("}")
        elif isinstance(v, list):
            put("[")
            for i, x in enumerate(v):
                if i:
                    put(", ")
                walk(x)
            put("]")
        else:
            put(json.dumps(v, ensure_ascii=False))

    try:
        walk(value)
    except (_Full, RecursionError):
        return "".join(parts)[:limit] + "..."
    return "".join(parts)


def _json_type(value: Any) -> str:
    """rapidjson's type name (JsonTypeString)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "String" if isinstance(value, str) else "Number"


def _tf_name(dtype: str) -> str:
    return _TF_NAMES.get(dtype, dtype)


def _is_b64(value: Any) -> bool:
    """``{"b64": "<string>"}`` and nothing else: a binary string, not an object of named inputs."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    """An object of named inputs (IsElementObject)."""
    return isinstance(value, dict) and not _is_b64(value)


def _b64decode(value: Any) -> bytes:
    """JsonDecodeBase64Object: ``{"b64": ...}`` decoded as absl::Base64Unescape does."""
    if not _is_b64(value):
        raise RestError(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
    match = _BASE64.fullmatch(_ASCII_SPACE.sub("", value["b64"]))
    if match is not None:
        data, pad = match.groups()
        expected = {0: 0, 2: 2, 3: 1}.get(len(data) % 4)
        if expected is not None and (not pad or len(pad) == expected):
            try:
                return base64.b64decode(data + "=" * expected, validate=True)
            except (binascii.Error, ValueError):
                pass
    raise RestError("Unable to base64 decode")


def _shape_text(shape: Sequence[int]) -> str:
    """ShapeToString: ``[2,3]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def _dims(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dense_shape(value: Any) -> tuple[int, ...]:
    """GetDenseTensorShape: the sizes of ``value`` and its first elements, down to the first non-list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


class _Tensor:
    """One input's values from JSON, as TF Serving's FillTensorProto and AddValueToTensor take them."""

    def __init__(self, info: TensorInfo):
        self.info, self.dtype = info, info.dtype
        self.tf_name = _tf_name(info.dtype)
        self.range = _INTS.get(info.dtype)
        kind = "int" if self.range else "float" if info.dtype in _FLOATS else info.dtype
        self.kind = kind if kind in ("int", "float", "bool", "string") else None

    def fill(self, value: Any) -> tuple[tuple[int, ...], list]:
        """The shape of ``value`` and its values in order (raises ``RestError``)."""
        quick = self.quick(value)
        if quick is not None:
            return quick
        shape = _dense_shape(value)
        values: list = []
        try:
            self._fill(value, 0, shape, values)
        except RecursionError:
            raise RestError(f"input '{self.info.name}': lists nested too deeply") from None
        return shape, values

    def quick(self, value: Any) -> tuple[tuple[int, ...], list] | None:
        """``fill`` in one pass when ``value`` is a regular nested list of valid values, else None."""
        shape = _dense_shape(value)
        if not shape:
            return None
        try:
            arr = np.array(value, dtype=object)
        except (ValueError, RecursionError):
            return None
        if arr.shape != shape:
            return None
        values = self._bulk(arr.ravel().tolist())
        return None if values is None else (shape, values)

    def array(self, values: list, shape: tuple[int, ...], value: Any = None) -> np.ndarray:
        if self.kind == "string":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
        elif self.kind is None:
            raise RestError(f"Conversion of JSON Value: {_debug(value)} to type: {self.tf_name}", 501)
        else:
            with np.errstate(over="ignore"):  # float32 from a double beyond its range: inf, as TF Serving
                arr = np.array(values, dtype=self.dtype)
        return arr.reshape(shape)

    def build(self, value: Any) -> np.ndarray:
        shape, values = self.fill(value)
        return self.array(values, shape, value)

    def _fill(self, val: Any, level: int, shape: tuple[int, ...], out: list) -> None:
        rank = len(shape)
        if not isinstance(val, list):
            if level != rank:
                raise RestError(
                    f"JSON Value: {_debug(val)} found at incorrect level: {level + 1} in the JSON DOM. "
                    f"Expected at level: {rank}"
                )
            out.append(self._value(val))
            return
        if level >= rank:
            raise RestError(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(val) != shape[level]:
            raise RestError(
                f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: {shape[level]}"
            )
        if level == rank - 1:
            bulk = self._bulk(val)
            if bulk is not None:
                out.extend(bulk)
                return
        for item in val:
            self._fill(item, level + 1, shape, out)

    def _bulk(self, items: list) -> list | None:
        """``items`` (leaves) converted at once when all are plainly valid, else None (checked one by one)."""
        kind = self.kind
        if kind == "float":
            if all(type(x) is float for x in items):
                return items
            if all(type(x) is float or type(x) is int for x in items):
                try:
                    return [float(x) for x in items]
                except OverflowError:
                    return None
            return None
        if kind == "int":
            if items and all(type(x) is int for x in items):
                lo, hi = self.range
                return items if lo <= min(items) and max(items) <= hi else None
            return None
        if kind == "bool":
            return items if all(type(x) is bool for x in items) else None
        if kind == "string" and all(type(x) is str for x in items):
            try:
                return [x.encode("utf-8", "surrogateescape") for x in items]
            except UnicodeEncodeError:
                return None
        return None

    def _type_error(self, val: Any) -> RestError:
        return RestError(f"JSON Value: {_debug(val)} Type: {_json_type(val)} is not of expected type: {self.tf_name}")

    def _value(self, val: Any) -> Any:
        kind = self.kind
        if isinstance(val, dict):
            if kind == "string":
                return _b64decode(val)
            raise self._type_error(val)
        if kind is None:
            raise RestError(f"Conversion of JSON Value: {_debug(val)} to type: {self.tf_name}", 501)
        number = isinstance(val, int | float) and not isinstance(val, bool)
        if kind == "float" and number:
            try:
                return float(val)
            except OverflowError:
                raise RestError(
                    f"JSON Value: {_debug(val)} Type: Number is not of expected type: {self.tf_name} "
                    "(too big to be stored in double)"
                ) from None
        if kind == "int" and number and isinstance(val, int):
            lo, hi = self.range
            if not lo <= val <= hi:
                raise RestError(
                    f"JSON Value: {val} Type: Number is not of expected type: {self.tf_name} "
                    f"(input '{self.info.name}' takes integers from {lo} to {hi})"
                )
            return val
        if kind == "bool" and isinstance(val, bool):
            return val
        if kind == "string" and isinstance(val, str):
            try:
                return val.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise RestError(
                    f"JSON Value: {_debug(val)} Type: String is not valid UTF-8 (an unpaired surrogate escape)"
                ) from None
        raise self._type_error(val)


def _wrapped(err: RestError) -> str:
    """Status::ToString() of an error, as TF Serving quotes one inside another."""
    return f"{_CODES.get(err.status, 'UNKNOWN')}: {err.message}"


def _from_instances(instances: list, signature: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: each instance gives one example of every input."""
    if len(signature) > 1 and not _is_named(instances[0]):
        raise RestError(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    named = _is_named(instances[0])
    tensors = {name: _Tensor(info) for name, info in signature.items()}
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
            raise RestError(f"Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(shape)}")
        values[name].extend(vals)

    if not named:
        # All instances at once when they are regular and valid; else one by one, for TF Serving's errors.
        name, tensor = next(iter(tensors.items()))
        quick = None if any(_is_named(elem) for elem in instances) else tensor.quick(instances)
        if quick is not None:
            return {name: tensor.array(quick[1], quick[0], instances)}
    for i, elem in enumerate(instances):
        if named:
            if not _is_named(elem):
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
                    f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(elem)} "
                    f"keys must be equal to: {','.join(sorted(signature))}"
                )
        else:
            if _is_named(elem):
                raise RestError(f"Expecting value/list but got object at item {i} of input list")
            try:
                add(next(iter(signature)), elem)
            except RestError as err:
                raise RestError(f"Failed to process element: {i} of 'instances' list. Error: {_wrapped(err)}") from None
    n = len(instances)
    return {name: t.array(values[name], (n, *shapes[name]), instances) for name, t in tensors.items()}


def _from_inputs(value: Any, signature: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: the value of the only input, or an object of named inputs."""
    if not _is_named(value):
        if len(signature) > 1:
            raise RestError(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name, info = next(iter(signature.items()))
        return {name: _Tensor(info).build(value)}
    arrays = {}
    for name, info in signature.items():
        if name not in value:
            raise RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _Tensor(info).build(value[name])
    return arrays


def _check_shape(name: str, info: TensorInfo, arr: np.ndarray) -> None:
    """The array of input ``name`` against the signature: its rank and every fixed dimension."""
    want = (None, *info.shape)
    if len(want) != arr.ndim or any(w is not None and w != g for w, g in zip(want, arr.shape, strict=True)):
        raise RestError(f"input '{name}': expected {info.describe()}, got an array of shape {_dims(arr.shape)}")


# ---- writing -------------------------------------------------------------------------------------


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _values(name: str, arr: np.ndarray, keep: int) -> list[str]:
    """AddTensorValues: ``arr`` as JSON texts, one per index of its first ``keep`` dimensions (0 or 1)."""
    texts = _leaves(name, arr)
    shape = arr.shape
    for d in range(arr.ndim - 1, keep - 1, -1):
        k = shape[d]
        if k == 0:
            texts = ["[]"] * math.prod(shape[:d])
        else:
            texts = ["[" + ",".join(texts[i : i + k]) + "]" for i in range(0, len(texts), k)]
    return texts


def _leaves(name: str, arr: np.ndarray) -> list[str]:
    """The JSON text of each element of ``arr`` in C order (AddSingleValueAndAdvance)."""
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize in _MAX_DIGITS:
        return _floats(arr)
    if kind in "iu":
        return list(map(str, arr.ravel().tolist()))
    if kind == "b":
        return ["true" if v else "false" for v in arr.ravel().tolist()]
    if kind in "OSU":
        as_b64 = name.endswith("_bytes")  # IsNamedTensorBytes
        return [_string_value(v, as_b64) for v in arr.ravel().tolist()]
    raise RestError(f"Failed to write JSON value for tensor type: {_tf_name(str(arr.dtype))}")


def _string_value(value: Any, as_b64: bool) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    if not isinstance(value, bytes):
        raise RestError(f"Failed to write JSON value for tensor type: string (an element is {type(value).__name__})")
    if as_b64:
        return '{"b64":"' + base64.b64encode(value).decode("ascii") + '"}'
    return _string(value.decode("utf-8", "replace"))


def _floats(arr: np.ndarray) -> list[str]:
    """WriteDecimal: ``%g`` (six significant digits) if it reads back as the same value of ``arr``'s dtype, else max_digits10 digits;
    ``.0`` appended to a whole number not in exponent notation; ``NaN``, ``Infinity``, ``-Infinity``."""
    flat = arr.ravel()
    values = flat.tolist()
    texts = [format(v, "g") for v in values]
    with np.errstate(over="ignore", invalid="ignore"):
        back = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts)).astype(arr.dtype)
    finite = np.isfinite(flat)
    exact = (back == flat) | ~finite
    if not exact.all():
        spec = f".{_MAX_DIGITS[arr.dtype.itemsize]}g"
        texts = [t if ok else format(v, spec) for t, ok, v in zip(texts, exact.tolist(), values, strict=True)]
    texts = [t if "." in t or "e" in t else t + ".0" for t in texts]
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            v = values[i]
            texts[i] = "NaN" if math.isnan(v) else "-Infinity" if v < 0 else "Infinity"
    return texts
