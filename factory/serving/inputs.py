"""What an export's ``serving_default`` signature takes, and checking features against it. No TensorFlow.

``TensorInfo`` describes one input or output and converts an array-like to
exactly its dtype and shape; ``ServingInputs`` checks a whole batch of
features (unknown and missing names, defaults from the feature spec, equal
batch sizes, vocabularies). Every problem is a ``PredictError`` naming the
feature, what was expected and what was received.

Float inputs must be finite and within float32's range (``checks.numbers_problem``):
NaN, infinities and values such as 1e39 (infinite in float32) are refused. A
NaN stands for a missing value, like an absent one, as in ``factory write``: an
example whose value is NaN throughout takes the feature's ``default`` when the
spec declares one; a NaN among numbers, or in a feature without a default, is refused.
A feature with ``missing:`` is filled in the graph instead: it takes NaN (floats),
``""`` (strings) and ``MISSING_VALUE["int64"]`` (int64) as missing values, a JSON
``null`` anywhere in it becomes one, and an absent feature is missing throughout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory.features.checks import (
    RANGES,
    Problem,
    VocabularyCheck,
    number_problem,
    numbers_problem,
    shape_matches,
    string_problem,
)
from factory.features.feature import MISSING_VALUE, Feature, shape_str
from factory.features.spec import FeatureSpec
from factory.serving.manifest import PredictError
from factory.validation import did_you_mean

# The float dtypes an input may have (a feature spec declares float32; a signature may take others).
_FLOATS = ("float32", "float64", "float16")


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind in "US":
        return "string"
    return "object" if arr.dtype.kind == "O" else str(arr.dtype)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: ``dtype`` (``uint8``, ``int64``, ``float32``, ``string``, ...)
    and ``shape`` without the batch dimension (``None``: any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_manifest(cls, name: str, entry: Mapping[str, Any]) -> TensorInfo:
        """From a manifest entry ``{"dtype": ..., "shape": [batch, ...]}`` (a negative or null dim: any size)."""
        shape = [None if d is None or d < 0 else int(d) for d in entry["shape"]]
        return cls(name, str(entry["dtype"]), tuple(shape[1:]))

    def describe(self, batched: bool = True) -> str:
        """``uint8 of shape [batch, 8, 8, 1]`` (``batched=False``: ``uint8 of shape [8, 8, 1]``)."""
        dims = (["batch"] if batched else []) + ["any" if d is None else str(d) for d in self.shape]
        return f"{self.dtype} of shape [{', '.join(dims)}]"

    def convert(
        self,
        value: Any,
        batched: bool = True,
        start: int = 0,
        default: np.ndarray | None = None,
        missing: bool = False,
    ) -> np.ndarray:
        """``value`` as an array of exactly this dtype and shape (plus a leading batch dimension if ``batched``).

        Integers are accepted for float32, and floats only when finite and within its
        range; floats for an integer dtype only when they are whole numbers (and in
        range: 0..255 for uint8); str or bytes for string (kept as UTF-8 bytes).
        ``default`` (unbatched; default None) replaces a float value that is NaN
        throughout (a missing value). ``missing``: the feature has ``missing:``, so NaN
        (floats) and ``None`` anywhere are missing values for the graph to fill (``None``
        becomes ``MISSING_VALUE`` of the dtype). Raises ``PredictError`` naming the feature,
        what was expected and what was received; positions in it count the batch
        from ``start`` (default 0).
        """
        return _Converter(self, batched, start, default, missing).convert(value)


class _Converter:
    def __init__(
        self, info: TensorInfo, batched: bool, start: int, default: np.ndarray | None = None, missing: bool = False
    ):
        self.info, self.batched, self.start, self.default = info, batched, start, default
        # A feature with `missing:` takes its missing values as such (the graph fills them).
        self.missing = missing and _missing_value(info.dtype) is not None

    def fail(self, got: str, hint: str = "") -> PredictError:
        return PredictError(f"feature '{self.info.name}': expected {self.info.describe(self.batched)}, got {got}{hint}")

    def fail_at(self, problem: Problem) -> PredictError:
        """``problem`` in the value; a batch's positions count examples from ``start``."""
        return PredictError(f"feature '{self.info.name}': {problem.text(self.start if self.batched else 0)}")

    def convert(self, value: Any) -> np.ndarray:
        info = self.info
        if isinstance(value, Mapping):
            raise self.fail(f"{type(value).__name__} {json.dumps(value)[:40]}")
        if isinstance(value, str | bytes) and info.dtype != "string":
            raise self.fail(f"{type(value).__name__} {value[:40]!r}")
        try:
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError):
            raise self.fail("nested lists of unequal length") from None
        got = f"{_dtype_name(arr)} of shape {shape_str(arr.shape)}"
        want = ((None,) if self.batched else ()) + info.shape
        if not shape_matches(want, arr.shape):
            hint = ""
            if self.batched and arr.shape == tuple(info.shape):
                hint = "; the first dimension counts examples: for a single example pass [x] or x[None]"
            raise self.fail(got, hint)
        return self._strings(arr, got) if info.dtype == "string" else self._numbers(arr, got)

    def _strings(self, arr: np.ndarray, got: str) -> np.ndarray:
        if self.missing and arr.dtype.kind == "O":
            arr = np.where(np.equal(arr, None), "", arr)
        if arr.dtype.kind == "S":
            return arr.astype(object)
        if arr.dtype.kind == "U":
            return np.char.encode(arr, "utf-8").astype(object) if arr.size else arr.astype(object)
        if arr.dtype.kind != "O":
            raise self.fail(got)
        out = np.empty(arr.shape, dtype=object)
        for position, item in np.ndenumerate(arr):
            problem = string_problem(item, position)
            if problem is not None:
                raise self.fail_at(problem)
            out[position] = str(item).encode() if isinstance(item, str) else bytes(item)
        return out

    def _numbers(self, arr: np.ndarray, got: str) -> np.ndarray:
        info = self.info
        if arr.dtype.kind == "O":
            if self.missing:
                arr = np.where(np.equal(arr, None), _missing_value(info.dtype), arr)
            for position, item in np.ndenumerate(arr):
                problem = number_problem(item, info.dtype, position, nan_missing=self.default is not None)
                if problem is not None:
                    raise self.fail_at(problem)
            arr = np.asarray(arr.tolist())
        kind = arr.dtype.kind
        if kind not in "iuf":
            raise self.fail(got)
        if self.missing and kind == "f" and info.dtype not in _FLOATS and np.isnan(arr).any():
            # An integer column with gaps arrives as floats with NaN (pandas): NaN is the missing value.
            gaps = np.isnan(arr)
            problem = numbers_problem(np.where(gaps, 0.0, arr), info.dtype)
            if problem is not None:
                raise self.fail_at(problem)
            out = np.where(gaps, 0.0, arr).astype(info.dtype)
            out[gaps] = _missing_value(info.dtype)
            return out
        if info.dtype in _FLOATS:
            return self._floats(arr)
        if info.dtype not in RANGES:
            raise PredictError(f"feature '{info.name}': the export takes {info.dtype}, which factory cannot feed")
        problem = numbers_problem(arr, info.dtype)
        if problem is not None:
            raise self.fail_at(problem)
        return arr.astype(info.dtype, copy=False)

    def _floats(self, arr: np.ndarray) -> np.ndarray:
        """Finite floats in range; an example that is NaN throughout takes ``default`` when there is one."""
        default = self.default
        if arr.dtype.kind == "f" and default is not None and arr.size:
            examples = arr.reshape(len(arr), -1) if self.batched and arr.ndim else arr.reshape(1, -1)
            fits = default.shape == (arr.shape[1:] if self.batched else arr.shape)
            missing = np.isnan(examples).all(axis=1) if fits and examples.shape[1] else None
            if missing is not None and missing.any():
                arr = arr.copy()
                if self.batched:
                    arr[missing] = default
                else:
                    arr = np.asarray(default, dtype=arr.dtype)
        # float32: NaN (unless it stands for a missing value), infinities, beyond its range
        checked = np.where(np.isnan(arr), 0.0, arr) if self.missing and arr.dtype.kind == "f" else arr
        problem = numbers_problem(checked, self.info.dtype)
        if problem is not None:
            raise self.fail_at(problem)
        return arr.astype(self.info.dtype, copy=False)


def _missing_value(dtype: str) -> Any:
    return MISSING_VALUE.get(dtype, MISSING_VALUE["float32"] if dtype in _FLOATS else None)


class ServingInputs:
    """The inputs of ``serving_default`` (``tensors``: ``{name: TensorInfo}``) and the feature spec behind them.

    ``ignored`` holds the names of the spec's labels and weight: part of a
    record, but not of the model's inputs.
    """

    def __init__(self, tensors: Mapping[str, TensorInfo], spec: FeatureSpec):
        self.tensors = dict(tensors)
        declared = {f.name: f for f in spec.features}
        self.features: dict[str, Feature | None] = {name: declared.get(name) for name in self.tensors}
        self.ignored = frozenset(f.name for f in spec.all() if f.role != "feature")

    def describe(self) -> str:
        """``image (uint8 of shape [batch, 8, 8, 1])``, comma-separated: for messages."""
        return ", ".join(f"{name} ({info.describe()})" for name, info in self.tensors.items())

    def takes_missing(self, name: str) -> bool:
        """Whether input ``name`` is a feature with ``missing:`` (NaN, ``""``, ``None`` stand for missing values)."""
        f = self.features.get(name)
        return f is not None and f.missing is not None

    def default(self, name: str) -> np.ndarray | None:
        """The spec's default for input ``name`` as one unbatched value in the input's dtype, or None if it has none.

        A variable-length feature defaults to length 0, as in parsed records.
        """
        f, info = self.features.get(name), self.tensors[name]
        if f is None:
            return None
        strings = info.dtype == "string"
        if f.missing is not None and not f.variable:  # filled in the graph
            marker = _missing_value(info.dtype)
            if marker is None:
                return None
            return np.full(f.shape, marker.encode() if strings else marker, dtype=object if strings else info.dtype)
        if f.variable:
            value = np.zeros((0, *f.shape[1:]), dtype=object if strings else np.int64)
        elif f.default is None:
            return None
        else:
            values = [str(v).encode() for v in f.default] if strings else list(f.default)
            value = np.asarray(values, dtype=object if strings else None).reshape(f.shape)
        return info.convert(value, batched=False)

    def check(self, features: Mapping[str, Any], start: int = 0) -> dict[str, np.ndarray]:
        """``features`` as ``{input name: array}`` of the exact dtypes, every input present.

        Ignored names are dropped; any other unknown name, a missing input
        (unless the spec gives it a default, which fills the batch), a wrong
        dtype or shape, a float that is not finite (an example NaN throughout
        takes the default, if any), unequal batch sizes or a value outside a
        vocabulary without ``oov_buckets`` raise ``PredictError``. Positions in messages
        count examples from ``start`` (default 0).
        """
        if not isinstance(features, Mapping):
            raise PredictError(
                f"features: expected a mapping of feature name to array (a batch), got {type(features).__name__}; "
                f"the export takes {self.describe()}"
            )
        unknown = [k for k in features if k not in self.tensors and k not in self.ignored]
        if unknown:
            name = str(unknown[0])
            raise PredictError(
                f"unknown feature '{name}'{did_you_mean(name, self.tensors)}; the export takes {self.describe()}"
            )
        missing = [n for n in self.tensors if features.get(n) is None and self.default(n) is None]
        if missing:
            name = missing[0]
            raise PredictError(
                f"missing feature '{name}': expected {self.tensors[name].describe()}, got nothing; "
                f"the export takes {self.describe()}"
            )
        arrays = {
            n: info.convert(features[n], start=start, default=self.default(n), missing=self.takes_missing(n))
            for n, info in self.tensors.items()
            if features.get(n) is not None
        }
        sizes = {n: a.shape[0] for n, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"'{n}' {s}" for n, s in sizes.items())
            raise PredictError(
                f"features have different batch sizes ({detail}); the first dimension of every feature counts the same examples"
            )
        if not sizes:
            raise PredictError(f"no features given; the export takes {self.describe()}")
        batch = next(iter(sizes.values()))
        for name in self.tensors:
            if name not in arrays:
                default = self.default(name)
                arrays[name] = np.broadcast_to(default, (batch, *default.shape)).copy()
        for name, arr in arrays.items():
            self._check_vocabulary(name, arr, start)
        return arrays

    def _check_vocabulary(self, name: str, arr: np.ndarray, start: int) -> None:
        f = self.features.get(name)
        if f is None or f.vocabulary is None or f.oov_buckets or not arr.size:
            return
        vocabulary = VocabularyCheck(f.vocabulary)
        for position, item in np.ndenumerate(arr):
            if f.missing is not None and item in (b"", ""):  # a missing value: the graph fills it
                continue
            problem = vocabulary.problem(item, position)
            if problem is not None:
                raise PredictError(f"feature '{name}': {problem.text(start)}")
