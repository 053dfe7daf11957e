"""Image fields of ``factory predict`` inputs: a file path, base64 PNG/JPEG data or pixels.

Encoded images are checked (PNG or JPEG, of the declared size) without
TensorFlow, then decoded by the op the ``tf_example`` signature runs, so both
paths give the same pixels.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from factory.features import images
from factory.features.checks import image_problem
from factory.features.feature import Feature
from factory.serving.predictor import PredictError

# A value longer than this is not tried as a file path (it is base64 data).
_MAX_PATH = 1024


def image_value(feature: Feature, value: Any, base_dir: Path) -> Any:
    """A CSV/JSON Lines image field as checked PNG/JPEG bytes, or unchanged when it holds pixels.

    Bytes are taken from a file path (relative to ``base_dir``), from base64
    data given as a plain string or as ``{"b64": ...}``, or as they are. A string
    starting with ``[`` is pixels as a JSON list (a CSV cell). ``PredictError``
    names the feature when the value is none of these, or not an image of the
    declared size.
    """
    if isinstance(value, Mapping):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise PredictError(
                f'feature \'{feature.name}\': expected {{"b64": "<base64 PNG/JPEG>"}}, got {json.dumps(value)[:60]}'
            )
        data = _b64(value["b64"])
        if data is None:
            raise PredictError(f"feature '{feature.name}': the \"b64\" value is not valid base64")
        return checked_image(feature, data, 'the "b64" value')
    if isinstance(value, bytes):
        return checked_image(feature, value, "the value")
    if not isinstance(value, str):
        return value  # pixels: checked as an array
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if len(text) <= _MAX_PATH:
        try:
            if path.is_file():
                return checked_image(feature, path.read_bytes(), f"image file {path}")
        except OSError as err:
            raise PredictError(
                f"feature '{feature.name}': cannot read image file {path}: {err.strerror or err}"
            ) from None
    data = _b64(text)
    if data is not None and images.image_size(data) is not None:
        return checked_image(feature, data, "the base64 data")
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise PredictError(
        f"feature '{feature.name}': {shown!r} is neither an image file (no file {path}; relative paths are "
        "relative to the input file's directory) nor base64 PNG/JPEG data"
    )


def _b64(text: str) -> bytes | None:
    """Standard, else URL-safe, base64; None when it is neither."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text.strip())
        except (binascii.Error, ValueError):
            return None


def checked_image(feature: Feature, data: bytes, what: str) -> bytes:
    """``data`` if it is a PNG or JPEG of ``feature``'s height and width; ``PredictError`` naming ``what`` otherwise."""
    height, width, _ = feature.shape
    problem = image_problem(data, height, width)
    if problem is not None:
        raise PredictError(f"feature '{feature.name}': {problem} ({what})")
    return data


def decode_images(feature: Feature, data: list[bytes]) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 pixels with the op the ``tf_example`` signature runs (imports TensorFlow)."""
    import tensorflow as tf  # defers TensorFlow

    from factory.features.pipeline import explain_error  # defers TensorFlow
    from factory.features.transform import decode_images as decode  # defers TensorFlow

    try:
        return decode(feature, tf.constant(data, dtype=tf.string)).numpy()
    except tf.errors.OpError as err:
        raise PredictError(explain_error(err)) from None
