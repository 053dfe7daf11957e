"""Loading an export and predicting with it: ``load_export(path)`` -> ``Predictor``.

``load_export`` takes any directory of a run's export tree and finds the
SavedModel it stands for:

- a version dir, ``RUN_DIR/export/<policy>/<version>`` (``saved_model.pb``);
- a policy dir, ``RUN_DIR/export/<policy>``: the version its ``current`` link
  points at, else the highest numbered version;
- an export dir, ``RUN_DIR/export``: its ``best`` policy, else ``final``, else
  ``latest``;
- a run dir, ``RUN_DIR``: the same, through ``export/``.

The manifest (``assets.extra/manifest.json``) is read without TensorFlow: it
says what the export takes (``inputs``) and returns (``outputs``), so inputs
are checked, and named when wrong, before TensorFlow sees them. TensorFlow
is imported only to load the SavedModel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, FactoryError
from factory.features.spec import Feature, FeatureSpec
from factory.spec import did_you_mean

# The same names as factory.export and factory.features.serving, which import TensorFlow.
MANIFEST = Path("assets.extra") / "manifest.json"
SAVED_MODEL = "saved_model.pb"
CURRENT = "current"
DEFAULT_SIGNATURE = "serving_default"
EXAMPLE_SIGNATURE = "tf_example"
EXAMPLES_INPUT = "examples"
# Which policy an export dir (or a run dir) stands for, in order of preference.
POLICY_PREFERENCE = ("best", "final", "latest")
DEFAULT_BATCH_SIZE = 256
_RANGES = {"uint8": (0, 255), "int64": (np.iinfo(np.int64).min, np.iinfo(np.int64).max)}


class PredictError(FactoryError, ValueError):
    """Inputs that do not match what an export takes, or an export that cannot be found or read.

    ``index`` is the position of the record at fault in the batch given to
    ``predict_examples`` (None otherwise) and ``detail`` the message without it.
    """

    def __init__(self, message: str, index: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.index = index
        self.detail = detail if detail is not None else message


# -- finding an export ----------------------------------------------------------------------------


def _is_version(path: Path) -> bool:
    return (path / SAVED_MODEL).is_file()


def _policy_version(path: Path) -> Path | None:
    """The version a policy dir stands for: ``current``'s target, else the highest numbered one."""
    current = path / CURRENT
    if current.is_symlink() or current.is_dir():
        target = current.resolve()
        if _is_version(target):
            return path / os.readlink(current) if current.is_symlink() else current
    try:
        numbered = [p for p in path.iterdir() if p.name.isdigit() and not p.is_symlink() and _is_version(p)]
    except OSError:
        return None
    return max(numbered, key=lambda p: int(p.name)) if numbered else None


def _export_version(path: Path) -> Path | None:
    for policy in POLICY_PREFERENCE:
        if (path / policy).is_dir():
            found = _policy_version(path / policy)
            if found is not None:
                return found
    return None


def find_export(path: str | os.PathLike) -> Path:
    """The version dir ``path`` stands for (see the module docstring); ``PredictError`` if there is none."""
    given = Path(path).expanduser()
    if given.name == SAVED_MODEL and given.is_file():
        given = given.parent
    if not given.exists():
        raise PredictError(f"export not found: {given} does not exist")
    if not given.is_dir():
        raise PredictError(f"{given} is a file, not an export directory; pass RUN_DIR/export/<policy>/<version> or a directory above it")
    found = None
    if _is_version(given):
        found = given
    else:
        for look in (_policy_version, _export_version, lambda p: _export_version(p / "export") if (p / "export").is_dir() else None):
            found = look(given)
            if found is not None:
                break
    if found is None:
        raise PredictError(
            f"{given}: no export found; looked for {SAVED_MODEL} (a version dir, RUN_DIR/export/<policy>/<version>), "
            f"a `{CURRENT}` link or numbered versions (a policy dir), {', '.join(p + '/' for p in POLICY_PREFERENCE)} "
            "(an export dir, RUN_DIR/export) and export/ (a run dir). Train with an export policy enabled "
            "(export.best.enabled=true) to write one"
        )
    return found


def read_manifest(version_dir: str | os.PathLike) -> dict[str, Any]:
    """The export's ``assets.extra/manifest.json`` as a dict (no TensorFlow)."""
    path = Path(version_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictError(
            f"{path.parent.parent}: a SavedModel without {MANIFEST}; factory loads exports written by a "
            "factory run (RUN_DIR/export/<policy>/<version>)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictError(f"{path}: cannot read the export's manifest ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("feature_spec"), dict):
        raise PredictError(f"{path}: not an export manifest (no `feature_spec`); was it written by factory?")
    return manifest


# -- what an export takes -------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: ``dtype`` (``uint8``, ``int64``, ``float32``, ``string``, ...)
    and ``shape`` without the batch dimension (``None``: any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_manifest(cls, name: str, entry: Mapping[str, Any]) -> TensorInfo:
        shape = [None if d is None or d < 0 else int(d) for d in entry["shape"]]
        return cls(name, str(entry["dtype"]), tuple(shape[1:]))

    def describe(self, batched: bool = True) -> str:
        """``uint8 of shape [batch, 8, 8, 1]`` (``batched=False``: ``uint8 of shape [8, 8, 1]``)."""
        dims = (["batch"] if batched else []) + ["any" if d is None else str(d) for d in self.shape]
        return f"{self.dtype} of shape [{', '.join(dims)}]"

    def convert(self, value: Any, batched: bool = True, start: int = 0) -> np.ndarray:
        """``value`` as an array of exactly this dtype and shape (plus a leading batch dimension if ``batched``).

        Integers are accepted for float32; floats for an integer dtype only when
        they are whole numbers (and in range: 0..255 for uint8); str or bytes for
        string (kept as UTF-8 bytes). Raises ``PredictError`` naming the feature,
        what was expected and what was received; positions in it count the batch
        from ``start``.
        """
        return _Converter(self, batched, start).convert(value)


def _shape_str(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class _Converter:
    def __init__(self, info: TensorInfo, batched: bool, start: int):
        self.info, self.batched, self.start = info, batched, start

    def fail(self, got: str, hint: str = "") -> PredictError:
        return PredictError(f"feature '{self.info.name}': expected {self.info.describe(self.batched)}, got {got}{hint}")

    def where(self, position: Iterable[int]) -> str:
        position = list(position)
        if self.batched and position:
            position[0] += self.start
        return _shape_str(position)

    def convert(self, value: Any) -> np.ndarray:
        info = self.info
        if (isinstance(value, str | bytes) and info.dtype != "string") or isinstance(value, Mapping):
            return self._raise_scalar(value)
        try:
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError):
            raise self.fail("nested lists of unequal length") from None
        got = f"{_dtype_name(arr)} of shape {_shape_str(arr.shape)}"
        want = ((None,) if self.batched else ()) + info.shape
        if arr.ndim != len(want) or any(w is not None and w != g for w, g in zip(want, arr.shape, strict=False)):
            hint = ""
            if self.batched and arr.shape == tuple(info.shape):
                hint = "; the first dimension counts examples: for a single example pass [x] or x[None]"
            raise self.fail(got, hint)
        if info.dtype == "string":
            return self._strings(arr, got)
        return self._numbers(arr, got)

    def _raise_scalar(self, value: Any) -> np.ndarray:
        text = json.dumps(value)[:40] if isinstance(value, Mapping) else repr(value[:40])
        raise self.fail(f"{type(value).__name__} {text}")

    def _strings(self, arr: np.ndarray, got: str) -> np.ndarray:
        if arr.dtype.kind == "S":
            return arr.astype(object)
        if arr.dtype.kind == "U":
            return np.char.encode(arr, "utf-8").astype(object) if arr.size else arr.astype(object)
        if arr.dtype.kind == "O":
            out = np.empty(arr.shape, dtype=object)
            for position, item in np.ndenumerate(arr):
                if isinstance(item, str | np.str_):
                    out[position] = str(item).encode()
                elif isinstance(item, bytes | np.bytes_):
                    out[position] = bytes(item)
                else:
                    raise self.fail(f"{type(item).__name__} {item!r} at {self.where(position)}")
            return out
        raise self.fail(got)

    def _numbers(self, arr: np.ndarray, got: str) -> np.ndarray:
        info = self.info
        if arr.dtype.kind == "O":
            for position, item in np.ndenumerate(arr):
                if isinstance(item, bool) or not isinstance(item, int | float | np.integer | np.floating):
                    raise self.fail(f"{type(item).__name__} {item!r} at {self.where(position)}")
            arr = np.asarray(arr.tolist())
        kind = arr.dtype.kind
        if kind not in "iuf":
            raise self.fail(got)
        if info.dtype in ("float32", "float64", "float16"):
            return arr.astype(info.dtype, copy=False)
        if info.dtype not in _RANGES:
            raise PredictError(f"feature '{info.name}': the export takes {info.dtype}, which factory cannot feed")
        low, high = _RANGES[info.dtype]
        if kind == "f":
            whole = np.isfinite(arr) & (arr == np.round(arr))
            if not whole.all():
                position = tuple(np.argwhere(~whole)[0])
                raise self.fail(f"{got} with {arr[position].item()!r} at {self.where(position)}, not a whole number")
        if arr.size and (kind == "f" or (kind == "u" and info.dtype == "int64") or info.dtype == "uint8"):
            outside = (arr < low) | (arr > high)
            if outside.any():
                position = tuple(np.argwhere(outside)[0])
                raise self.fail(f"{got} with {arr[position].item()!r} at {self.where(position)}, outside {low}..{high}")
        return arr.astype(info.dtype, copy=False)


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind in "US":
        return "string"
    if arr.dtype.kind == "O":
        return "object"
    return str(arr.dtype)


# -- the predictor --------------------------------------------------------------------------------


class Predictor:
    """Runs one exported SavedModel on features (``predict``) or serialized tf.train.Example (``predict_examples``).

    Attributes (all read from the manifest, no TensorFlow): ``path`` (the version
    dir), ``version``, ``policy``, ``manifest``, ``spec`` (the ``FeatureSpec`` it
    was trained with), ``inputs`` and ``outputs`` (``{name: TensorInfo}`` of the
    ``serving_default`` signature), ``batch_size`` (default 256). The SavedModel
    is loaded by ``load()`` or on first use.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE):
        self.path = find_export(path)
        self.manifest = read_manifest(self.path)
        self.version: int | None = self.manifest.get("version")
        self.policy: str | None = self.manifest.get("policy")
        try:
            self.spec = FeatureSpec.from_dict(self.manifest["feature_spec"], prefix="feature_spec")
        except ConfigError as err:
            raise PredictError(f"{self.path / MANIFEST}: {err}") from None
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise PredictError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        signature = (self.manifest.get("signatures") or {}).get(DEFAULT_SIGNATURE)
        if signature:
            self.inputs = {k: TensorInfo.from_manifest(k, v) for k, v in signature["inputs"].items()}
            self.outputs = {k: TensorInfo.from_manifest(k, v) for k, v in signature["outputs"].items()}
        else:  # the spec says what serving_default takes: raw dtype and declared shape
            self.inputs = {f.name: TensorInfo(f.name, f.dtype, f.shape) for f in self.spec.features}
            self.outputs = {}
        declared = {f.name: f for f in self.spec.features}
        self._features: dict[str, Feature | None] = {name: declared.get(name) for name in self.inputs}
        # Labels and the example weight are part of a record but not of the model's inputs: ignored.
        self.ignored = frozenset(f.name for f in self.spec.all() if f.role != "feature")
        self._loaded = None

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, policy={self.policy!r}, version={self.version!r})"

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> Predictor:
        """Load the SavedModel (imports TensorFlow); returns self. Called on first use if not before."""
        if self._loaded is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
            import tensorflow as tf

            try:
                loaded = tf.saved_model.load(str(self.path))
            except (OSError, ValueError, tf.errors.OpError) as err:
                raise PredictError(f"{self.path}: cannot load the SavedModel ({_first_line(err)})") from None
            missing = [s for s in (DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE) if s not in loaded.signatures]
            if missing:
                raise PredictError(f"{self.path}: the SavedModel has no {' or '.join(missing)} signature; has {', '.join(loaded.signatures) or 'none'}")
            self._loaded = loaded
        return self

    @property
    def signatures(self) -> Mapping[str, Any]:
        """The loaded SavedModel's signatures (loads it on first use)."""
        return self.load()._loaded.signatures

    # -- checking inputs --------------------------------------------------------------------------

    def default(self, name: str) -> np.ndarray | None:
        """The spec's default for input ``name`` as one unbatched value in the input's dtype, or None if it has none."""
        f, info = self._features.get(name), self.inputs[name]
        if f is None:
            return None
        if f.variable:  # parsed records pad an absent variable-length feature to length 0
            return info.convert(np.zeros((0, *f.shape[1:]), dtype=object if info.dtype == "string" else np.int64), batched=False)
        if f.default is None:
            return None
        values = [str(v).encode() for v in f.default] if info.dtype == "string" else list(f.default)
        return info.convert(np.asarray(values, dtype=object if info.dtype == "string" else None).reshape(f.shape), batched=False)

    def describe_inputs(self) -> str:
        """``image (uint8 of shape [batch, 8, 8, 1])``, comma-separated: for messages."""
        return ", ".join(f"{name} ({info.describe()})" for name, info in self.inputs.items())

    def check(self, features: Mapping[str, Any], start: int = 0) -> dict[str, np.ndarray]:
        """Validate ``features`` against the export's inputs and return arrays of the exact dtypes; no TensorFlow.

        Labels and the weight of the feature spec are ignored; any other unknown
        name, a missing input (unless the spec gives it a default), a wrong dtype
        or shape, or unequal batch sizes raise ``PredictError``. Positions in
        messages count examples from ``start`` (default 0).
        """
        if not isinstance(features, Mapping):
            raise PredictError(
                f"features: expected a mapping of feature name to array (a batch), got {type(features).__name__}; "
                f"the export takes {self.describe_inputs()}"
            )
        unknown = [k for k in features if k not in self.inputs and k not in self.ignored]
        if unknown:
            name = str(unknown[0])
            raise PredictError(f"unknown feature '{name}'{did_you_mean(name, self.inputs)}; the export takes {self.describe_inputs()}")
        missing = [n for n in self.inputs if features.get(n) is None and self.default(n) is None]
        if missing:
            name = missing[0]
            raise PredictError(
                f"missing feature '{name}': expected {self.inputs[name].describe()}, got nothing; "
                f"the export takes {self.describe_inputs()}"
            )
        arrays = {n: info.convert(features[n], batched=True, start=start) for n, info in self.inputs.items() if features.get(n) is not None}
        sizes = {n: a.shape[0] for n, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"'{n}' {s}" for n, s in sizes.items())
            raise PredictError(f"features have different batch sizes ({detail}); the first dimension of every feature counts the same examples")
        if not sizes:
            raise PredictError(f"no features given; the export takes {self.describe_inputs()}")
        batch = next(iter(sizes.values()))
        for name in self.inputs:
            if name not in arrays:
                default = self.default(name)
                arrays[name] = np.broadcast_to(default, (batch, *default.shape)).copy()
        for name, arr in arrays.items():
            self._check_vocabulary(name, arr, start)
        return arrays

    def _check_vocabulary(self, name: str, arr: np.ndarray, start: int) -> None:
        f = self._features.get(name)
        if f is None or f.vocabulary is None or f.oov_buckets or not arr.size:
            return
        vocabulary = {v.encode() for v in f.vocabulary}
        for position, item in np.ndenumerate(arr):
            if item not in vocabulary:
                text = item.decode(errors="replace")
                where = _shape_str([position[0] + start, *position[1:]])
                raise PredictError(
                    f"feature '{name}': {text!r} at {where} is not in the vocabulary{did_you_mean(text, f.vocabulary)}; "
                    f"expected one of {', '.join(f.vocabulary[:20])}{', ...' if len(f.vocabulary) > 20 else ''}"
                )

    # -- predicting -------------------------------------------------------------------------------

    def predict(self, features: Mapping[str, Any], batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs of ``serving_default`` for a batch of features: ``{output name: array}``, the first axis counting examples.

        ``features`` maps every input name to an array-like with a leading batch
        dimension (see ``inputs``; labels are ignored). Inputs are checked first
        (``check``), then run ``batch_size`` (default: ``self.batch_size``) examples at a time.
        """
        arrays = self.check(features)
        import tensorflow as tf

        fn = self.signatures[DEFAULT_SIGNATURE]
        rows = next(iter(arrays.values())).shape[0]
        step = batch_size or self.batch_size
        dtypes = {name: tf.as_dtype(info.dtype) for name, info in self.inputs.items()}

        def run(lo: int, hi: int) -> dict[str, np.ndarray]:
            tensors = {name: tf.constant(arr[lo:hi], dtype=dtypes[name]) for name, arr in arrays.items()}
            try:
                return self._ordered(fn(**tensors))
            except tf.errors.OpError as err:
                raise PredictError(f"examples {lo}..{hi - 1}: {explain_error(err)}") from None

        return _concat([run(lo, min(lo + step, rows)) for lo in range(0, max(rows, 1), step)])

    def predict_examples(self, serialized: Iterable[bytes], batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs of the ``tf_example`` signature for serialized tf.train.Example records (labels in them are ignored).

        A record that is not a tf.train.Example or lacks a required feature raises
        ``PredictError`` naming the record (``index``) and the feature.
        """
        if isinstance(serialized, str | bytes):
            raise PredictError("serialized: expected a list of serialized tf.train.Example records, got a single value; wrap it in a list")
        records = list(serialized)
        for i, item in enumerate(records):
            if not isinstance(item, bytes | np.bytes_):
                detail = f"expected a serialized tf.train.Example (bytes), got {type(item).__name__}"
                raise PredictError(f"record {i}: {detail}", index=i, detail=detail)
        import tensorflow as tf

        fn = self.signatures[EXAMPLE_SIGNATURE]
        step = batch_size or self.batch_size

        def run(lo: int) -> dict[str, np.ndarray]:
            batch = tf.constant(records[lo : lo + step], dtype=tf.string, shape=[len(records[lo : lo + step])])
            try:
                return self._ordered(fn(**{EXAMPLES_INPUT: batch}))
            except tf.errors.OpError as err:
                index, detail = self._explain_examples(records[lo : lo + step], err)
                raise PredictError(f"record {lo + index}: {detail}", index=lo + index, detail=detail) from None

        return _concat([run(lo) for lo in range(0, max(len(records), 1), step)])

    def _ordered(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        # A loaded signature returns its outputs in no fixed order: the manifest's (sorted) order instead.
        names = [n for n in self.outputs if n in outputs] + sorted(n for n in outputs if n not in self.outputs)
        return {name: outputs[name].numpy() for name in names}

    def _explain_examples(self, records: list[bytes], err: Exception) -> tuple[int, str]:
        """``(index, message)`` of the first record in ``records`` that the ``tf_example`` signature rejects."""
        import tensorflow as tf
        from google.protobuf.message import DecodeError

        from factory.features import parsing

        for i, record in enumerate(records):
            try:
                tf.train.Example.FromString(bytes(record))
            except DecodeError:
                return i, "not a serialized tf.train.Example"
        required = [f for f in self.spec.features if f.required]
        checked = parsing.parse_spec(self.spec, labels=False, checked=True)
        fn = self.signatures[EXAMPLE_SIGNATURE]
        for i, record in enumerate(records):
            one = tf.constant([bytes(record)])
            try:
                parsed = tf.io.parse_example(one, checked)
                for f in required:
                    if bool(parsing.missing_mask(f, parsed[f.name])[0]):
                        return i, f"lacks the required feature '{f.name}' ({f.describe()})"
                fn(**{EXAMPLES_INPUT: one})
            except tf.errors.OpError as one_err:
                return i, explain_error(one_err)
        return 0, explain_error(err)


def load_export(path: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE) -> Predictor:
    """Load an export for prediction; ``path`` is a version, policy, export or run dir (see the module docstring).

    ``batch_size`` (default 256) is how many examples go through the model at a time.
    Raises ``PredictError`` (a ``FactoryError``) when ``path`` holds no export.
    """
    return Predictor(path, batch_size=batch_size).load()


# -- helpers --------------------------------------------------------------------------------------


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _first_line(err: Exception) -> str:
    """The informative line of a TensorFlow error (not "Graph execution error:" or a stack frame)."""
    message = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    noise = ("Graph execution error", "Detected at node", "File ", "[[{{")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(err).__name__])[0].split(" [Op:")[0][:300]


def explain_error(err: Exception) -> str:
    """TensorFlow's message about bad input, made to name the feature where it can."""
    from factory.features.pipeline import explain_error as explain_record

    return explain_record(err)


__all__ = ["PredictError", "Predictor", "TensorInfo", "find_export", "load_export", "read_manifest"]

