"""``factory convert``: an export's ``serving_default`` as a TFLite or an ONNX model, checked before it is kept.

The converted model is written into the version dir, ``<version>/converted/serving_default.tflite``
(or ``.onnx``; TF Serving ignores the directory), and recorded in the manifest under
``converted``. Before it is kept, it runs on the export's warmup requests (eval records, see
``factory.serving.warmup``) and every output must match the SavedModel's within ``tolerance``
(``scaled_errors``, as the export's own verification); otherwise nothing is
written. The record holds the file's size and its batch-1 latency next to the SavedModel's.

- **TFLite**: ``tf.lite.TFLiteConverter`` with TFLite's builtin ops only (a model that needs
  TensorFlow's own kernels would need the Flex delegate on the device, which defeats the
  point), run with the ``ai-edge-litert`` interpreter.
- **ONNX**: ``tf2onnx``, run with ``onnxruntime``; the graph's outputs are named as the
  signature's.

Both are optional (``pip install 'factory[convert]'``). Where a conversion cannot work, a
``ConvertError`` names the ops at fault and what they do (a vocabulary lookup, parsing a
``tf.Example``, decoding an image).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from factory.errors import FactoryError
from factory.names import DEFAULT_SIGNATURE, MANIFEST
from factory.run_dir import atomic_path, write_json
from factory.serving.exporter import scaled_errors
from factory.serving.warmup import read_warmup

CONVERTED = "converted"  # in the version dir
ONNX_OPSET = 17
# What the ops a conversion refuses do, for the message.
_OP_PURPOSE = {
    "HashTableV2": "a vocabulary lookup table",
    "LookupTableFindV2": "a vocabulary lookup",
    "LookupTableImportV2": "a vocabulary lookup table",
    "StringToHashBucketFast": "hashing strings into buckets",
    "StringLower": "lowercasing text",
    "StaticRegexReplace": "stripping punctuation from text",
    "StringSplitV2": "splitting text into tokens",
    "ParseExampleV2": "parsing a serialized tf.Example",
    "DecodePng": "decoding a PNG image",
    "DecodeJpeg": "decoding a JPEG image",
    "DecodeImage": "decoding an image",
}


class ConvertError(FactoryError):
    """A conversion that cannot be made or did not match the SavedModel; nothing was kept."""


def _package(name: str, module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConvertError(
            f"--to {name} needs the optional packages of `pip install 'factory[convert]'` ({module} is missing)"
        ) from None


def _ops_message(fmt: str, ops: list[str]) -> str:
    described = ", ".join(f"{op} ({_OP_PURPOSE[op]})" if op in _OP_PURPOSE else op for op in ops)
    return (
        f"{fmt}: serving_default uses TensorFlow ops that {fmt} has no builtin equivalent for: {described}. "
        "Convert a model without the features that need them (hash_buckets, text, ...), or serve the "
        "SavedModel (factory serve, TF Serving)"
    )


# -- TFLite ---------------------------------------------------------------------------------------


def _tflite(version_dir: Path, target: Path) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    interpreter = _package("tflite", "ai_edge_litert.interpreter")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(version_dir), signature_keys=[DEFAULT_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _quiet():
            flatbuffer = converter.convert()
    except Exception as err:
        text = str(err)
        ops = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", text)))  # tf.StringToHashBucketFast, not tf.entry_function
        if ops:
            raise ConvertError(_ops_message("tflite", ops)) from None
        first = next((line for line in text.splitlines() if line.strip()), type(err).__name__)
        raise ConvertError(f"tflite: the converter failed: {first[:300]}") from None
    target.write_bytes(flatbuffer)
    with _quiet():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        runner = interpreter.Interpreter(model_content=flatbuffer).get_signature_runner(DEFAULT_SIGNATURE)

    def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in runner(**inputs).items()}

    return run


# -- ONNX -----------------------------------------------------------------------------------------


class _Unsupported(logging.Handler):
    """Collects the ops tf2onnx logs as unsupported (it still writes a model that cannot run)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.ops: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.ops.update(re.findall(r"op \[[^\]]*?: (\w+)\] is not supported", text))
        self.ops.update(re.findall(r"'(\w+)': \d+", text) if "Unsupported ops" in text else [])


def _onnx(version_dir: Path, target: Path) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    tf2onnx = _package("onnx", "tf2onnx")
    ort = _package("onnx", "onnxruntime")
    onnx = _package("onnx", "onnx")
    loaded = tf.saved_model.load(str(version_dir))  # held: the signature references its variables
    signature = loaded.signatures[DEFAULT_SIGNATURE]
    _, specs = signature.structured_input_signature
    names = sorted(specs)

    @tf.function(input_signature=[tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n) for n in names])
    @tf.autograph.experimental.do_not_convert
    def function(*args):
        return signature(**dict(zip(names, args, strict=True)))

    outputs = sorted(signature.structured_outputs)  # the order tf.nest flattens a dict in
    unsupported = _Unsupported()
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tf2onnx.tfonnx")]
    for logger in loggers:
        logger.addHandler(unsupported)
    try:
        with _quiet():
            model, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=ONNX_OPSET
            )
    except Exception as err:
        raise ConvertError(f"onnx: tf2onnx failed: {str(err).splitlines()[0][:300]}") from None
    finally:
        for logger in loggers:
            logger.removeHandler(unsupported)
    # tf2onnx leaves some TensorFlow ops in the graph as they are (LookupTableFindV2): not ONNX ops either.
    unsupported.ops.update(
        n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)
    )
    if unsupported.ops:
        raise ConvertError(_ops_message("onnx", sorted(unsupported.ops)))
    graph = model.graph
    for output, name in zip(list(graph.output), outputs, strict=True):  # named as the signature's outputs
        if output.name != name:
            graph.node.append(onnx.helper.make_node("Identity", [output.name], [name]))
            output.name = name
    target.write_bytes(model.SerializeToString())
    try:
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ConvertError(
            f"onnx: onnxruntime cannot load the converted model: {str(err).splitlines()[0][:300]}"
        ) from None
    feeds = {i.name: i.name.split(":")[0] for i in session.get_inputs()}  # "image" or "image:0"

    def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = session.run(outputs, {name: inputs[key] for name, key in feeds.items()})
        return dict(zip(outputs, values, strict=True))

    return run


# -- checking and recording -----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converters' own chatter (C++ and Python) off the terminal."""
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(devnull)


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    if want.dtype.kind in "OSU":
        return 0.0 if np.array_equal(got, want) else float("inf")
    return float(np.max(scaled_errors(got, want))) if got.size else 0.0


def _latency_ms(call: Callable[[], Any], calls: int) -> float:
    for _ in range(min(20, calls)):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _quiet_latency_ms(call: Callable[[], Any], calls: int) -> float:
    with _quiet():
        return _latency_ms(call, calls)


def _size(path: Path) -> int:
    skip = {path / "assets.extra", path / CONVERTED}
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not any(p in skip for p in f.parents))


def convert(version_dir: Path, to: str, tolerance: float, calls: int = 200) -> dict[str, Any]:
    """Convert ``serving_default`` of the export at ``version_dir`` to ``to``; returns the manifest record."""
    requests = [inputs for signature, inputs in read_warmup(version_dir) if signature == DEFAULT_SIGNATURE]
    if not requests:
        raise ConvertError(
            f"{version_dir}: no serving_default warmup requests (assets.extra/tf_serving_warmup_requests) to check "
            "the converted model with; export it again with this version of factory"
        )
    sample = max(requests, key=lambda r: len(next(iter(r.values()))))
    one = {k: v[:1] for k, v in sample.items()}
    loaded = tf.saved_model.load(str(version_dir))  # held: the signature references its variables
    saved = loaded.signatures[DEFAULT_SIGNATURE]

    def run_saved(inputs):
        return {k: v.numpy() for k, v in saved(**{n: tf.constant(x) for n, x in inputs.items()}).items()}

    expected = run_saved(sample)
    directory = version_dir / CONVERTED
    directory.mkdir(exist_ok=True)
    target = directory / f"{DEFAULT_SIGNATURE}.{to}"
    try:
        record = _convert_checked(version_dir, to, target, sample, one, expected, run_saved, tolerance, calls)
    except BaseException:
        with contextlib.suppress(OSError):
            directory.rmdir()  # if nothing else was converted before
        raise
    _record(version_dir, to, record)
    return record


def _convert_checked(version_dir, to, target, sample, one, expected, run_saved, tolerance, calls) -> dict[str, Any]:
    """Write ``target`` if the converted model's outputs match ``expected``; its manifest record."""
    with atomic_path(target) as staging:  # kept only if it matches
        run = (_tflite if to == "tflite" else _onnx)(version_dir, staging)
        with _quiet():  # LiteRT announces its CPU delegate on the first call
            got = run(sample)
        missing = sorted(set(expected) - set(got))
        if missing:
            raise ConvertError(f"{to}: the converted model lacks the outputs {', '.join(missing)}")
        diffs = {name: _difference(np.asarray(got[name]), want) for name, want in expected.items()}
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > tolerance:
            raise ConvertError(
                f"{to}: output '{worst}' differs from the SavedModel's by {diffs[worst]:.3g} on {len(expected[worst])} "
                f"eval records (tolerance {tolerance:g}); nothing was kept"
            )
        record = {
            "path": str(target.relative_to(version_dir)),
            "bytes": staging.stat().st_size,
            "saved_model_bytes": _size(version_dir),
            "max_difference": max(diffs.values()),
            "tolerance": tolerance,
            "checked_records": len(next(iter(sample.values()))),
            "latency_ms_batch_1": round(_quiet_latency_ms(lambda: run(one), calls), 4),
            "saved_model_latency_ms_batch_1": round(_latency_ms(lambda: run_saved(one), calls), 4),
        }
    return record


def _record(version_dir: Path, to: str, record: dict[str, Any]) -> None:
    """Add ``record`` to the manifest's ``converted`` (atomically)."""
    path = version_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.setdefault("converted", {})[to] = record
    write_json(path, manifest)
