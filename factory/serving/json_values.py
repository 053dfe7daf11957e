"""JSON values and arrays, both ways, as TF Serving's ``json_tensor.cc`` converts them: one input's
value from a request (``JsonTensor``: ``FillTensorProto``, ``AddValueToTensor``,
``JsonDecodeBase64Object``, with their error texts) and an output array as JSON texts
(``json_texts``: ``AddTensorValues``, ``WriteDecimal``). ``RestError`` is what every problem
raises. No TensorFlow.

``factory.serving.rest_json`` puts these together into requests and answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from factory.serving.inputs import TensorInfo

# How much of a JSON value an error message quotes.
_DEBUG_CHARS = 100
# TF's DataTypeString names where they differ from numpy's.
_TF_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
_FLOATS = frozenset({"float16", "float32", "float64"})
_INTS = {
    name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
# absl::Base64Unescape: the standard alphabet, padding ('=' or '.') optional but exact if given.
_BASE64 = re.compile(r"([A-Za-z0-9+/]*)([=.]*)")
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")
# std::numeric_limits<T>::max_digits10 by float size: the digits that always read back exactly.
_MAX_DIGITS = {2: 5, 4: 9, 8: 17}


class RestError(Exception):
    """An error answered as ``{"error": message}`` with HTTP ``status`` (400 INVALID_ARGUMENT by default,
    404 NOT_FOUND, 501 UNIMPLEMENTED, ...)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class _Full(Exception):
    """A debug string reached its limit."""


def debug(value: Any, limit: int = _DEBUG_CHARS) -> str:
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


def json_type(value: Any) -> str:
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


def tf_name(dtype: str) -> str:
    return _TF_NAMES.get(dtype, dtype)


def is_b64(value: Any) -> bool:
    """``{"b64": "<string>"}`` and nothing else: a binary string, not an object of named inputs."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def is_named(value: Any) -> bool:
    """An object of named inputs (IsElementObject)."""
    return isinstance(value, dict) and not is_b64(value)


def b64decode(value: Any) -> bytes:
    """JsonDecodeBase64Object: ``{"b64": ...}`` decoded as absl::Base64Unescape does."""
    if not is_b64(value):
        raise RestError(f"JSON Value: {debug(value)} not formatted correctly for base64 data")
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


def shape_text(shape: Sequence[int]) -> str:
    """ShapeToString: ``[2,3]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def dims(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def dense_shape(value: Any) -> tuple[int, ...]:
    """GetDenseTensorShape: the sizes of ``value`` and its first elements, down to the first non-list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


class JsonTensor:
    """One input's values from JSON, as TF Serving's FillTensorProto and AddValueToTensor take them."""

    def __init__(self, info: TensorInfo):
        self.info, self.dtype = info, info.dtype
        self.tf_name = tf_name(info.dtype)
        self.range = _INTS.get(info.dtype)
        kind = "int" if self.range else "float" if info.dtype in _FLOATS else info.dtype
        self.kind = kind if kind in ("int", "float", "bool", "string") else None

    def fill(self, value: Any) -> tuple[tuple[int, ...], list]:
        """The shape of ``value`` and its values in order (raises ``RestError``)."""
        quick = self.quick(value)
        if quick is not None:
            return quick
        shape = dense_shape(value)
        values: list = []
        try:
            self._fill(value, 0, shape, values)
        except RecursionError:
            raise RestError(f"input '{self.info.name}': lists nested too deeply") from None
        return shape, values

    def quick(self, value: Any) -> tuple[tuple[int, ...], list] | None:
        """``fill`` in one pass when ``value`` is a regular nested list of valid values, else None."""
        shape = dense_shape(value)
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
            raise RestError(f"Conversion of JSON Value: {debug(value)} to type: {self.tf_name}", 501)
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
                    f"JSON Value: {debug(val)} found at incorrect level: {level + 1} in the JSON DOM. "
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
        return RestError(f"JSON Value: {debug(val)} Type: {json_type(val)} is not of expected type: {self.tf_name}")

    def _value(self, val: Any) -> Any:
        kind = self.kind
        if isinstance(val, dict):
            if kind == "string":
                return b64decode(val)
            raise self._type_error(val)
        if kind is None:
            raise RestError(f"Conversion of JSON Value: {debug(val)} to type: {self.tf_name}", 501)
        number = isinstance(val, int | float) and not isinstance(val, bool)
        if kind == "float" and number:
            try:
                return float(val)
            except OverflowError:
                raise RestError(
                    f"JSON Value: {debug(val)} Type: Number is not of expected type: {self.tf_name} "
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
                    f"JSON Value: {debug(val)} Type: String is not valid UTF-8 (an unpaired surrogate escape)"
                ) from None
        raise self._type_error(val)


# ---- writing: arrays as JSON texts (AddTensorValues, WriteDecimal) ------------------------------


def json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def json_texts(name: str, arr: np.ndarray, keep: int) -> list[str]:
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
    raise RestError(f"Failed to write JSON value for tensor type: {tf_name(str(arr.dtype))}")


def _string_value(value: Any, as_b64: bool) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    if not isinstance(value, bytes):
        raise RestError(f"Failed to write JSON value for tensor type: string (an element is {type(value).__name__})")
    if as_b64:
        return '{"b64":"' + base64.b64encode(value).decode("ascii") + '"}'
    return json_string(value.decode("utf-8", "replace"))


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
