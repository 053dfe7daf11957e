"""The checks of one feature value, each in one place and worded once. No TensorFlow.

The record encoder (``encoder.py``), CSV/JSON Lines conversion
(``conversion.py``), the spec rules for defaults and pad values (``rules.py``)
and predict inputs (``factory.serving.inputs``) all check values with these
functions. A check returns None when the value passes, else the problem
without its location: a ``Problem`` for a value inside something (a number of
an array, an entry of a vocabulary), a string for a mismatch of shape. Each
caller puts its own location in front (``record 3: feature 'x': ``,
``data.csv row 4: feature 'x': ``, ``feature 'x': `` for predict inputs,
``features.x.default: `` for the spec) and raises its own error type.

Checks of whole numpy arrays (``numbers_problem``) are vectorised: writing a
numeric column costs no Python per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.features import images
from factory.features.feature import shape_str
from factory.validation import did_you_mean

# The integer dtypes a value can be checked against, with the values they hold.
RANGES = {"uint8": (0, 255), "int64": (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))}
# The largest float32: a bigger number becomes infinity when stored.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Why a value of the wrong kind fails `number_problem` (callers add what the feature takes).
NOT_A_NUMBER = "is not a number"
# Vocabulary entries listed in a message about a value outside it.
SHOWN_VOCABULARY = 20
# Why a value outside the vocabulary is an error.
NO_OOV_BUCKETS = "the feature has no oov_buckets for other values"


def shown(entries: Sequence[Any], quote: bool = False) -> str:
    """The first ``SHOWN_VOCABULARY`` entries for a person to read: ``a, b, c, ...``."""
    text = ", ".join(repr(e) if quote else str(e) for e in entries[:SHOWN_VOCABULARY])
    return text + (", ..." if len(entries) > SHOWN_VOCABULARY else "")


def at(position: Iterable[int], start: int = 0) -> str:
    """`` at [i + start, j, ...]``, or ``""`` for the empty position (the value itself)."""
    position = [int(d) for d in position]
    if not position:
        return ""
    position[0] += start
    return " at [" + ", ".join(str(d) for d in position) + "]"


def describe(value: Any) -> str:
    """A short description of a value of the wrong kind: ``string 'abc'``, ``bool True``, ``float64 array of shape [2]``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return f"{value.dtype} {value.item()!r}"
    if isinstance(value, np.ndarray):
        kind = "string" if value.dtype.kind in "USO" else str(value.dtype)
        return f"{kind} array of shape {shape_str(value.shape)}"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list | tuple):
        try:
            return f"list of shape {shape_str(np.asarray(value).shape)}"
        except ValueError:
            return f"ragged list of length {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


@dataclass(frozen=True)
class Problem:
    """A value that fails a check: ``shown`` (the value as the message shows it), ``why``
    (``is not a whole number ...``) and ``position`` (its index inside the checked
    value; ``()`` for the value itself).

    ``str(problem)`` is ``300 at [0, 2] is outside the uint8 range 0..255``.
    """

    shown: str
    why: str
    position: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.text()

    def text(self, start: int = 0) -> str:
        """The message, the first index of the position counted from ``start`` (a batch's first example)."""
        return f"{self.shown}{at(self.position, start)} {self.why}"

    def in_row(self) -> tuple[int, Problem]:
        """For a problem in a column (first index: the row): the row and the problem inside that row."""
        return self.position[0], Problem(self.shown, self.why, self.position[1:])


# -- shapes ------------------------------------------------------------------------------------


def shape_matches(declared: Sequence[int | None], got: Sequence[int]) -> bool:
    """Whether shape ``got`` fits ``declared`` (a ``None`` dimension: any size)."""
    return len(declared) == len(got) and all(d is None or d == g for d, g in zip(declared, got, strict=True))


def shape_problem(
    declared: Sequence[int | None], got: Sequence[int], expected: str, got_what: str | None = None
) -> str | None:
    """None if ``got`` fits ``declared``, else ``expected {expected}, got {got_what}``.

    ``expected`` is how the caller declares the value (``float32 [3]``,
    ``uint8 of shape [batch, 8, 8, 1]``); ``got_what`` describes what came
    (default: ``shape [2]``).
    """
    if shape_matches(declared, got):
        return None
    return f"expected {expected}, got {got_what or 'shape ' + shape_str(got)}"


def nested_shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a nested list (``()`` for a scalar), or None if it is ragged."""
    if not isinstance(value, list | tuple):
        return ()
    inner = {nested_shape(v) for v in value}
    if len(inner) > 1 or None in inner:
        return None
    return (len(value), *(inner.pop() if inner else ()))


def flatten(value: Any) -> list:
    """The scalars of a nested list, in row-major order; a scalar is a list of one."""
    if isinstance(value, list | tuple):
        return [x for v in value for x in flatten(v)]
    return [value]


# -- numbers -----------------------------------------------------------------------------------


def _not_whole(value: Any, dtype: str, position: tuple[int, ...] = ()) -> Problem:
    return Problem(repr(value), f"is not a whole number ({dtype} holds whole numbers)", position)


def _outside(value: Any, dtype: str, position: tuple[int, ...] = ()) -> Problem:
    low, high = RANGES[dtype]
    return Problem(repr(value), f"is outside the {dtype} range {low}..{high}", position)


def _not_float32(value: Any, position: tuple[int, ...] = ()) -> Problem | None:
    """None if ``value`` is a finite number within the float32 range, else why not (NaN, infinity, too big)."""
    if isinstance(value, float | np.floating):
        value = float(value)
        if value != value:
            return Problem(
                "nan",
                "is NaN; float32 values must be finite numbers (a value that is NaN throughout reads as missing "
                "when the spec says what a missing value becomes: `missing:` or `default`)",
                position,
            )
        if value in (float("inf"), float("-inf")):
            return Problem(repr(value), "is infinite; float32 values must be finite numbers", position)
    if abs(value) > FLOAT32_MAX:
        return Problem(repr(value), f"is outside the float32 range -{FLOAT32_MAX:.8g}..{FLOAT32_MAX:.8g}", position)
    return None


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a float NaN (which a feature with a ``default`` reads as missing)."""
    return isinstance(value, float | np.floating) and value != value


def number_problem(value: Any, dtype: str, position: tuple[int, ...] = (), nan_missing: bool = False) -> Problem | None:
    """One scalar (Python or numpy) checked for ``dtype``: a number (not a bool); for
    ``float32`` a finite one within its range; for ``uint8``/``int64`` a whole number
    within the dtype's range. ``nan_missing`` (a feature with a ``default``) lets NaN
    pass as a missing value. ``position`` locates the scalar in its array."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return Problem(describe(value), NOT_A_NUMBER, position)
    if nan_missing and is_nan(value):
        return None
    if dtype == "float32":
        shown = value.item() if isinstance(value, np.generic) else value
        return _not_float32(shown, position)
    if dtype not in RANGES:
        return None
    if isinstance(value, float | np.floating) and (not np.isfinite(value) or value != round(value)):
        return _not_whole(value.item() if isinstance(value, np.generic) else value, dtype, position)
    low, high = RANGES[dtype]
    if not low <= value <= high:
        return _outside(value.item() if isinstance(value, np.generic) else value, dtype, position)
    return None


def numbers_problem(arr: np.ndarray, dtype: str) -> Problem | None:
    """A numeric array (kind ``i``, ``u`` or ``f``) checked for ``dtype``, vectorised.

    For ``uint8``/``int64``: the first element that is not a whole number
    (fractions, NaN, infinities) or lies outside the dtype's range; for
    ``float32`` the first NaN, infinity or number beyond the float32 range; with
    its position in ``arr``. Other dtypes take any number: nothing is scanned.
    """
    if not arr.size:
        return None
    kind = arr.dtype.kind
    if dtype == "float32":
        if kind != "f":  # integers: even int64's extremes are within the float32 range
            return None
        bad = ~np.isfinite(arr)
        if arr.dtype.itemsize > 4:
            bad |= np.abs(arr) > FLOAT32_MAX
        if not bad.any():
            return None
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        return _not_float32(arr[position].item(), position)
    if dtype not in RANGES:
        return None
    if kind == "f":
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            position = tuple(int(i) for i in np.argwhere(~whole)[0])
            return _not_whole(arr[position].item(), dtype, position)
    # Only these can hold a value outside the range: floats, anything into uint8, uint64 into int64.
    if kind == "f" or dtype == "uint8" or (kind == "u" and dtype == "int64"):
        low, high = RANGES[dtype]
        # As a float, int64's largest value rounds up to 2**63, one past it: floats compare against that.
        outside = (arr < low) | ((arr >= float(high) + 1) if kind == "f" else (arr > high))
        if outside.any():
            position = tuple(int(i) for i in np.argwhere(outside)[0])
            return _outside(arr[position].item(), dtype, position)
    return None


# -- strings -----------------------------------------------------------------------------------


def string_problem(value: Any, position: tuple[int, ...] = ()) -> Problem | None:
    """None if ``value`` is text (``str`` or ``bytes``, numpy's included), else ``... is not a string``."""
    if isinstance(value, str | bytes | np.str_ | np.bytes_):
        return None
    return Problem(describe(value), "is not a string", position)


class VocabularyCheck:
    """The entries a value of a feature without ``oov_buckets`` must be one of."""

    def __init__(self, entries: Sequence[str]):
        self.entries = tuple(entries)
        self._known = frozenset(self.entries)

    def problem(self, value: str | bytes, position: tuple[int, ...] = ()) -> Problem | None:
        """None if ``value`` (bytes are read as UTF-8) is an entry, else the problem naming the
        closest entry and the first ``SHOWN_VOCABULARY`` of them."""
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if text in self._known:
            return None
        why = (
            f"is not in the vocabulary{did_you_mean(text, self.entries)}; expected one of "
            f"{shown(self.entries)} ({NO_OOV_BUCKETS})"
        )
        return Problem(repr(text), why, position)


def image_problem(data: bytes, height: int, width: int, encoding: str | None = None) -> str | None:
    """None if ``data`` is a PNG or JPEG image (``encoding``'s, when given) of ``height`` x
    ``width`` pixels (read from its header, without decoding), else the problem."""
    info = images.image_size(data)
    kind = encoding.upper() if encoding else "PNG or JPEG"
    if info is None:
        return (
            f"expected a {kind} image of {height}x{width} pixels, got {len(data)} bytes that are neither PNG nor JPEG"
        )
    found, h, w, _ = info
    if encoding and found != encoding:
        return f"expected a {kind} image, got {found.upper()} bytes; re-encode the image or set `encoding: {found}`"
    if h and (h, w) != (height, width):
        return f"expected an image of {height}x{width} pixels, got a {found.upper()} image of {h}x{w}"
    return None
