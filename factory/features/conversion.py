"""CSV cells and JSON Lines values -> what ``RecordWriter`` takes, one feature at a time. No TensorFlow.

- CSV cells are text. A scalar numeric feature holds one number; a non-scalar
  numeric feature holds its values separated by spaces and/or commas
  (``"0.1 0.2 0.3"``, ``"1,2,3"``) or a JSON list (``"[[1, 2], [3, 4]]"``); flat
  values are reshaped to the declared shape. A scalar string feature takes the
  cell as it is; a non-scalar one a JSON list or whitespace-separated tokens.
  An empty cell (a blank one, except for strings) is a missing value: the
  writer leaves it out of the record when the spec says what a missing value
  becomes (``missing`` or ``default``) and reports it otherwise. So is ``nan``
  for such a numeric feature (what pandas writes for a missing number);
  without one it is an error, as are ``inf`` and numbers beyond the float32
  range (``checks.number_problem``).
- JSON Lines values are taken as they are (``null`` is missing), except that a
  flat list for a multi-dimensional feature is reshaped.
- For ``encoding: png|jpeg`` features, a CSV or JSON Lines field holds the path
  of an image file (relative paths are resolved against the input file's
  directory); its bytes are stored as they are, and the writer checks that
  they are PNG/JPEG of the declared size.

Values whose count does not fit the shape are passed on unchanged, for the
writer to report with the declared shape.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from factory.features.checks import NOT_A_NUMBER, number_problem
from factory.features.feature import Feature


class BadValue(Exception):
    """A value that cannot be converted; the message names the feature (``feature 'x': ...``)."""

    def __init__(self, feature: str, message: str):
        super().__init__(f"feature '{feature}': {message}")


class FieldConverter:
    """Converts the CSV text or JSON value of one feature; ``BadValue`` when it cannot.

    ``base_dir`` is where relative image file paths start (the input file's directory).
    """

    def __init__(self, feature: Feature, base_dir: Path):
        self.f = feature
        self.name = feature.name
        self.base_dir = base_dir
        self.numeric = feature.dtype != "string" and not feature.encoding
        self.scalar = feature.shape == ()
        self.whole = not feature.variable and math.prod(feature.shape) == 1  # one value: never split

    def bad(self, message: str) -> BadValue:
        return BadValue(self.name, message)

    def is_missing(self, text: str) -> bool:
        """Whether a CSV cell holds no value: empty, or blank for a non-string feature (spaces may be a string)."""
        return text == "" or (self.f.dtype != "string" and not text.strip())

    # -- CSV text ---------------------------------------------------------------------------

    def from_text(self, text: str) -> Any:
        """The value of a CSV cell that is not missing."""
        if self.f.encoding:
            return self.image_file(text)
        if self.f.dtype == "string":
            if self.scalar:
                return text
            if self.whole and not text.lstrip().startswith("["):
                return np.full(self.f.shape, text, dtype=object)
            return self.reshape(np.asarray(self.string_list(text), dtype=object))
        text = text.strip()
        if self.scalar:
            return self.number(text)
        if text.startswith("["):
            return self.reshape_list(self.json_list(text))
        return self.reshape(self.numbers(text.replace(",", " ").split()))

    def numbers(self, tokens: list[str]) -> np.ndarray:
        # numpy parses the whole list at once; only a failure goes token by token to name the culprit.
        try:
            return np.array(tokens, dtype=np.float64 if self.f.dtype == "float32" else np.int64)
        except (ValueError, OverflowError):
            return np.asarray([self.number(t) for t in tokens])

    def number(self, token: str) -> int | float:
        """One number; for an integer feature a whole float such as ``3.0`` is accepted."""
        value: Any = token
        try:
            value = float(token) if self.f.dtype == "float32" else int(token)
        except ValueError:
            with contextlib.suppress(ValueError):  # text that is no number stays text: the check names it
                value = float(token)
        self.check_number(value)
        return value

    def check_number(self, value: Any) -> None:
        """``BadValue`` unless ``value`` is a number the feature's dtype holds (see ``checks.number_problem``)."""
        problem = number_problem(
            value, self.f.dtype, nan_missing=self.f.default is not None or self.f.missing is not None
        )
        if problem is not None:
            fix = f"; expected {self.f.describe()}" if problem.why == NOT_A_NUMBER else ""
            raise self.bad(f"{problem}{fix}")

    def json_list(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise self.bad(
                f"{text[:40]!r} is not a valid JSON list ({err.msg}); write the values separated by spaces or commas"
            ) from None

    def string_list(self, text: str) -> Any:
        stripped = text.strip()
        return self.json_list(stripped) if stripped.startswith("[") else stripped.split()

    def reshape(self, arr: np.ndarray) -> np.ndarray:
        """Flat values -> the declared shape, when the count fits; otherwise unchanged for the writer to report."""
        if arr.ndim != 1:
            return arr
        shape = self.f.shape
        if self.f.variable:
            inner = math.prod(shape[1:]) if len(shape) > 1 else 0
            return arr.reshape(-1, *shape[1:]) if inner and arr.size % inner == 0 else arr
        return arr.reshape(shape) if arr.size == math.prod(shape) else arr

    def reshape_list(self, value: Any) -> Any:
        """A flat JSON list of numbers, reshaped; anything else unchanged."""
        if not isinstance(value, list) or not value or any(isinstance(v, list | dict) for v in value):
            return value
        try:
            return self.reshape(np.asarray(value))
        except ValueError:
            return value

    # -- JSON values --------------------------------------------------------------------------

    def from_json(self, value: Any) -> Any:
        """The value of a JSON Lines field that is not null."""
        if self.f.encoding and isinstance(value, str):
            return self.image_file(value)
        if self.numeric:
            # JSON types are known here, so the wrong ones are named plainly (the writer sees arrays).
            if not isinstance(value, list):
                self.check_number(value)
            elif not self.scalar:
                return self.reshape_list(value)
        return value

    # -- image files ---------------------------------------------------------------------------

    def image_file(self, text: str) -> bytes:
        """The bytes of the image file ``text`` names (relative to ``base_dir``)."""
        name = text.strip()
        given = Path(name).expanduser()
        path = given if given.is_absolute() else self.base_dir / given
        try:
            return path.read_bytes()
        except FileNotFoundError:
            relative = "" if given.is_absolute() else f" ('{name}' is relative to the input file's directory)"
            raise self.bad(f"image file not found: {path}{relative}") from None
        except OSError as err:
            raise self.bad(f"cannot read image file {path}: {err.strerror or err}") from None
