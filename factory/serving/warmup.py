"""TF Serving's warmup file: ``assets.extra/tf_serving_warmup_requests`` in a SavedModel.

A TFRecord file of serialized ``tensorflow.serving.PredictionLog`` protos (at most
``WARMUP_LIMIT``) that TF Serving replays when it loads a version, as ``factory serve`` does
before the version is served. ``write_warmup`` writes predict requests, ``read_warmup`` reads
them back.

The protos of that wrapper live in ``tensorflow-serving-api``, which depends on the full
``tensorflow`` wheel and so cannot be installed beside ``tensorflow-cpu``. The few messages
around the tensors are encoded and decoded here with protobuf's wire format instead; the
tensors themselves are TensorFlow's own ``TensorProto``. The field numbers
(``tensorflow_serving/apis/*.proto``)::

    PredictionLog  { LogMetadata log_metadata = 1; oneof log_type { ClassifyLog classify_log = 2;
                     RegressLog regress_log = 3; MultiInferenceLog multi_inference_log = 4;
                     SessionRunLog session_run_log = 5; PredictLog predict_log = 6;
                     PredictStreamedLog predict_streamed_log = 7; } }
    PredictLog     { PredictRequest request = 1; PredictResponse response = 2; }
    PredictRequest { ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; ... }
    ModelSpec      { string name = 1; Int64Value version = 2; string signature_name = 3; ... }

A map entry is a message ``{key = 1; value = 2}``. Decoding follows protobuf's rules: unknown
fields (and known ones of an unexpected wire type) are skipped, the last of a oneof wins, and a
message field that occurs more than once is the merge of its occurrences, which for the wire
format is the concatenation of their bytes.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2

from factory.errors import FactoryError
from factory.features.tfrecord import TFRecordFile, masked_crc
from factory.features.wire import varint
from factory.names import DEFAULT_SIGNATURE, WARMUP_LIMIT, WARMUP_REQUESTS
from factory.run_dir import atomic_path


class WarmupError(FactoryError):
    """A warmup file TF Serving would refuse: too many records, a record that is not a
    PredictionLog, a truncated or corrupt file. The message names the file and the record."""


# PredictionLog's log_type oneof, by field number.
_LOG_TYPES = {
    2: "classify_log",
    3: "regress_log",
    4: "multi_inference_log",
    5: "session_run_log",
    6: "predict_log",
    7: "predict_streamed_log",
}
_PREDICT_LOG = 6


# -- encoding ----------------------------------------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string or a message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _predict_log(model_name: str, signature: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    spec = _field(1, model_name.encode()) + _field(3, signature.encode())
    entries = b"".join(
        _field(2, _field(1, name.encode()) + _field(2, tf.make_tensor_proto(np.asarray(value)).SerializeToString()))
        for name, value in inputs.items()
    )
    return _field(_PREDICT_LOG, _field(1, _field(1, spec) + entries))


def write_warmup(
    saved_model_dir: Path, model_name: str, requests: Sequence[tuple[str, Mapping[str, np.ndarray]]]
) -> Path:
    """Write ``saved_model_dir/WARMUP_REQUESTS``: one PredictionLog with a predict request for
    ``model_name`` per ``(signature name, {input name: array})`` pair, in order.

    More than ``WARMUP_LIMIT`` requests: ``ValueError``, and nothing is written. The file is
    written under a temporary name beside it and renamed, so a reader never sees half a file;
    a full disk raises ``StorageError`` and leaves nothing behind. Returns the file's path.
    """
    if len(requests) > WARMUP_LIMIT:
        raise ValueError(f"{len(requests)} warmup requests; TF Serving reads at most {WARMUP_LIMIT}")
    records = [_predict_log(model_name, signature, inputs) for signature, inputs in requests]
    path = Path(saved_model_dir) / WARMUP_REQUESTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        file = TFRecordFile(tmp)
        try:
            file.write_many(records)
        finally:
            file.close()
    return path


# -- decoding ----------------------------------------------------------------------------------


class _Malformed(ValueError):
    """Bytes that do not parse as the message expected."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise _Malformed("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed("varint longer than 10 bytes")


def _skip(data: bytes, pos: int, number: int, wire_type: int) -> tuple[bytes | None, int]:
    """The value of a field at ``pos`` (the payload of a length-delimited one, else None) and the
    position after it."""
    if wire_type == 0:
        return None, _read_varint(data, pos)[1]
    if wire_type == 3:  # a group: fields up to the matching end-group tag
        while True:
            tag, pos = _read_varint(data, pos)
            if tag & 7 == 4:
                if tag >> 3 != number:
                    raise _Malformed(f"group {number} ends with field {tag >> 3}")
                return None, pos
            _, pos = _skip(data, pos, tag >> 3, tag & 7)
    if wire_type == 2:
        size, pos = _read_varint(data, pos)
    elif wire_type in (1, 5):
        size = 8 if wire_type == 1 else 4
    else:
        raise _Malformed(f"field {number} has wire type {wire_type}")
    if pos + size > len(data):
        raise _Malformed(f"field {number} runs past the end of its message")
    return (data[pos : pos + size] if wire_type == 2 else None), pos + size


def _fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(field number, payload)`` of a message's length-delimited fields, in order; the others
    are checked and skipped."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed("field number 0")
        payload, pos = _skip(data, pos, number, wire_type)
        if payload is not None:
            yield number, payload


def _merged(data: bytes, number: int) -> bytes:
    """Sub-message ``number`` of a message: all its occurrences, merged."""
    return b"".join(payload for n, payload in _fields(data) if n == number)


def _string(data: bytes, number: int) -> str:
    """String field ``number`` of a message (the last occurrence; "" when absent)."""
    value = b""
    for n, payload in _fields(data):
        if n == number:
            value = payload
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"string field {number} is not UTF-8") from None


def _log_type(record: bytes) -> tuple[int | None, bytes]:
    """The log_type of a PredictionLog (its field number, None when unset) and its bytes."""
    kind, chunks = None, []
    for number, payload in _fields(record):
        if number in _LOG_TYPES:
            if number != kind:  # setting another member of a oneof clears the one before
                kind, chunks = number, []
            chunks.append(payload)
    return kind, b"".join(chunks)


def _request(predict_log: bytes) -> tuple[str, dict[str, np.ndarray]]:
    request = _merged(predict_log, 1)
    signature = _string(_merged(request, 1), 3) or DEFAULT_SIGNATURE
    entries: dict[str, bytes] = {}
    for number, entry in _fields(request):
        if number == 2:
            entries[_string(entry, 1)] = _merged(entry, 2)
    inputs = {}
    for name, tensor in entries.items():
        try:
            inputs[name] = tf.make_ndarray(tensor_pb2.TensorProto.FromString(tensor))
        except (DecodeError, TypeError, ValueError) as err:
            raise _Malformed(f"input '{name}' is not a valid TensorProto ({err})") from None
    return signature, inputs


_HEADER = struct.Struct("<QI")  # the record's length, the masked CRC-32C of those 8 bytes
_CRC = struct.Struct("<I")


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(index, data)`` of each record of an uncompressed TFRecord file (as TF Serving reads it),
    checking lengths and CRCs: a truncated or corrupt file is a ``WarmupError``."""
    with open(path, "rb") as f:
        for index in itertools.count():
            header = f.read(_HEADER.size)
            if not header:
                return
            where = f"{path}, record {index}"
            if len(header) < _HEADER.size:
                raise WarmupError(f"{where}: the file is truncated (it ends inside the record's header)")
            length, crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != crc:
                raise WarmupError(f"{where}: the file is corrupt (the record's length fails its CRC)")
            data = f.read(length)
            trailer = f.read(_CRC.size)
            if len(data) < length or len(trailer) < _CRC.size:
                raise WarmupError(f"{where}: the file is truncated (it ends inside the record)")
            if masked_crc(data) != _CRC.unpack(trailer)[0]:
                raise WarmupError(f"{where}: the file is corrupt (the record's data fails its CRC)")
            yield index, data


def read_warmup(
    saved_model_dir: Path, *, on_skip: Callable[[int, str], object] | None = None
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The predict requests of ``saved_model_dir``'s warmup file, in file order: ``(signature
    name, {input name: array})``, strings as object arrays of bytes. An empty signature name is
    ``serving_default``, as in TF Serving. No file: ``[]``.

    Records of another log type (classify, regress, multi_inference, session_run, or none) are
    skipped; ``on_skip(index, log type)`` is called for each. More than ``WARMUP_LIMIT`` records,
    a record that is not a PredictionLog, a truncated or corrupt file: ``WarmupError``, naming
    the file and the record (counted from 0).
    """
    path = Path(saved_model_dir) / WARMUP_REQUESTS
    if not path.exists():
        return []
    requests = []
    for index, record in _records(path):
        if index >= WARMUP_LIMIT:
            raise WarmupError(
                f"{path}, record {index}: more than {WARMUP_LIMIT} records; TF Serving refuses such a "
                f"file (write at most {WARMUP_LIMIT})"
            )
        try:
            kind, payload = _log_type(record)
            if kind == _PREDICT_LOG:
                requests.append(_request(payload))
            elif on_skip is not None:
                on_skip(index, _LOG_TYPES.get(kind, "no log_type"))
        except _Malformed as err:
            raise WarmupError(f"{path}, record {index}: not a PredictionLog: {err}") from None
    return requests
