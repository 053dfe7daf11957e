"""Loading an export and predicting with it: ``load_export(path)`` -> ``Predictor``.

``path`` is any directory of a run's export tree (a version, policy, export or
run dir; see ``factory.serving.manifest``). The manifest is read without TensorFlow,
so inputs are checked, and named when wrong, before TensorFlow sees them
(``factory.serving.inputs``). TensorFlow is imported only to load the SavedModel.

Loading while a training run exports into the same tree is safe: a version
appears only when complete, and one that retention deletes between resolving
``path`` and loading it is replaced by resolving ``path`` again (at most
``FOLLOW_LIMIT`` times); the manifest and the SavedModel then come from the
same, new version. A version dir given directly is not replaced: its deletion is
a one-line ``PredictError``. Why readers retry rather than retention waiting
for them: ``factory.serving.export_tree``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError
from factory.features.checks import numbers_problem
from factory.features.spec import FeatureSpec
from factory.names import DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE, EXAMPLES_INPUT, MANIFEST
from factory.serving.inputs import ServingInputs, TensorInfo
from factory.serving.manifest import PredictError, find_export, follow, read_manifest, vanished

DEFAULT_BATCH_SIZE = 256
# Versions deleted under one load before giving up: retention deletes one or two per evaluation.
FOLLOW_LIMIT = 5


class Predictor:
    """Runs one exported SavedModel on features (``predict``) or serialized tf.train.Example (``predict_examples``).

    Attributes (all read from the manifest, no TensorFlow): ``path`` (the version
    dir), ``version``, ``policy``, ``manifest``, ``spec`` (the ``FeatureSpec`` it
    was trained with), ``inputs`` and ``outputs`` (``{name: TensorInfo}`` of the
    ``serving_default`` signature), ``ignored`` (label and weight names, dropped
    from inputs), ``batch_size`` (default 256). The SavedModel is loaded by
    ``load()`` or on first use.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise PredictError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self._given = path
        self._follows = 0
        self._loaded = None
        self._open(find_export(path))

    def _open(self, version_dir: Path) -> None:
        """Read the manifest of ``version_dir`` (following retention, see ``_follow``) and take its inputs."""
        while True:
            try:
                manifest = read_manifest(version_dir)
                break
            except PredictError:
                if not vanished(version_dir):
                    raise
                version_dir = self._follow(version_dir)
        self.path, self.manifest = version_dir, manifest
        self.version: int | None = manifest.get("version")
        self.policy: str | None = manifest.get("policy")
        try:
            self.spec = FeatureSpec.from_dict(manifest["feature_spec"], prefix="feature_spec")
        except ConfigError as err:
            raise PredictError(f"{version_dir / MANIFEST}: {err}") from None
        signature = (manifest.get("signatures") or {}).get(DEFAULT_SIGNATURE)
        if signature:
            inputs = {k: TensorInfo.from_manifest(k, v) for k, v in signature["inputs"].items()}
            self.outputs = {k: TensorInfo.from_manifest(k, v) for k, v in signature["outputs"].items()}
        else:  # the spec says what serving_default takes: raw dtype and declared shape
            inputs = {f.name: TensorInfo(f.name, f.dtype, f.shape) for f in self.spec.features}
            self.outputs = {}
        self._inputs = ServingInputs(inputs, self.spec)
        self.inputs = self._inputs.tensors
        self.ignored = self._inputs.ignored

    def _follow(self, gone: Path) -> Path:
        """The version replacing ``gone``, deleted by retention while it was read: the path given resolved again.

        Bounded: after ``FOLLOW_LIMIT`` deleted versions in a row, ``PredictError``.
        """
        self._follows += 1
        if self._follows > FOLLOW_LIMIT:
            raise PredictError(
                f"{self._given}: {FOLLOW_LIMIT} versions in a row were deleted while they were being loaded; "
                "load a version that retention keeps (the policy's `current`), or try again"
            )
        return follow(self._given, gone)

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, policy={self.policy!r}, version={self.version!r})"

    def load(self) -> Predictor:
        """Load the SavedModel (imports TensorFlow); returns self. Called on first use if not before."""
        if self._loaded is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
            import tensorflow as tf  # defers TensorFlow

            while True:
                try:
                    loaded = tf.saved_model.load(str(self.path))
                    break
                except (OSError, ValueError, tf.errors.OpError) as err:
                    if not vanished(self.path):
                        raise PredictError(f"{self.path}: cannot load the SavedModel ({_first_line(err)})") from None
                    self._open(self._follow(self.path))
            missing = [s for s in (DEFAULT_SIGNATURE, EXAMPLE_SIGNATURE) if s not in loaded.signatures]
            if missing:
                raise PredictError(
                    f"{self.path}: the SavedModel has no {' or '.join(missing)} signature; has {', '.join(loaded.signatures) or 'none'}"
                )
            self._loaded = loaded
        return self

    @property
    def signatures(self) -> Mapping[str, Any]:
        """The loaded SavedModel's signatures (loads it on first use)."""
        return self.load()._loaded.signatures

    # -- checking inputs (see ServingInputs) ------------------------------------------------------

    def default(self, name: str) -> np.ndarray | None:
        """The spec's default for input ``name``, unbatched, in the input's dtype; None if it has none."""
        return self._inputs.default(name)

    def takes_missing(self, name: str) -> bool:
        """Whether input ``name`` takes missing values for the graph to fill (a feature with ``missing:``)."""
        return self._inputs.takes_missing(name)

    def describe_inputs(self) -> str:
        """``image (uint8 of shape [batch, 8, 8, 1])``, comma-separated: for messages."""
        return self._inputs.describe()

    def check(self, features: Mapping[str, Any], start: int = 0) -> dict[str, np.ndarray]:
        """``features`` checked against the export's inputs, as arrays of the exact dtypes; no TensorFlow.

        Labels and the weight are ignored; see ``ServingInputs.check`` for what
        raises ``PredictError``. Positions in messages count examples from ``start`` (default 0).
        """
        return self._inputs.check(features, start)

    # -- predicting -------------------------------------------------------------------------------

    def predict(self, features: Mapping[str, Any], batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs of ``serving_default`` for a batch of features: ``{output name: array}``, the first axis counting examples.

        ``features`` maps every input name to an array-like with a leading batch
        dimension (see ``inputs``; labels are ignored). Inputs are checked first
        (``check``), then run ``batch_size`` (default: ``self.batch_size``) examples at a time.
        """
        arrays = self.check(features)
        import tensorflow as tf  # defers TensorFlow

        checked_with = self.path
        fn = self.signatures[DEFAULT_SIGNATURE]
        if self.path != checked_with:  # retention replaced the version while it loaded: check against the new one
            arrays = self.check(features)
        rows = next(iter(arrays.values())).shape[0]
        step = batch_size or self.batch_size
        dtypes = {name: tf.as_dtype(info.dtype) for name, info in self.inputs.items()}

        def run(lo: int) -> dict[str, np.ndarray]:
            hi = min(lo + step, rows)
            tensors = {name: tf.constant(arr[lo:hi], dtype=dtypes[name]) for name, arr in arrays.items()}
            try:
                return self._ordered(fn(**tensors))
            except tf.errors.OpError as err:
                raise PredictError(f"examples {lo}..{hi - 1}: {explain_error(err)}") from None

        return _concat([run(lo) for lo in range(0, max(rows, 1), step)])

    def predict_examples(self, serialized: Iterable[bytes], batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Outputs of the ``tf_example`` signature for serialized tf.train.Example records (labels in them are ignored).

        ``batch_size`` defaults to ``self.batch_size``. A record that is not a
        tf.train.Example, lacks a required feature or holds a float that is NaN,
        infinite or beyond float32's range raises ``PredictError`` naming the
        record (``index``) and the feature.
        """
        if isinstance(serialized, str | bytes):
            raise PredictError(
                "serialized: expected a list of serialized tf.train.Example records, got a single value; wrap it in a list"
            )
        records = list(serialized)
        for i, item in enumerate(records):
            if not isinstance(item, bytes | np.bytes_):
                detail = f"expected a serialized tf.train.Example (bytes), got {type(item).__name__}"
                raise PredictError(f"record {i}: {detail}", index=i, detail=detail)
        import tensorflow as tf  # defers TensorFlow

        fn = self.signatures[EXAMPLE_SIGNATURE]
        step = batch_size or self.batch_size

        def run(lo: int) -> dict[str, np.ndarray]:
            chunk = records[lo : lo + step]
            try:
                outputs = self._ordered(fn(**{EXAMPLES_INPUT: tf.constant(chunk, dtype=tf.string, shape=[len(chunk)])}))
            except tf.errors.OpError as err:
                index, detail = self._explain_examples(chunk, err)
                raise PredictError(f"record {lo + index}: {detail}", index=lo + index, detail=detail) from None
            self._check_floats(chunk, lo)
            return outputs

        return _concat([run(lo) for lo in range(0, max(len(records), 1), step)])

    def _check_floats(self, records: list[bytes], start: int) -> None:
        """``PredictError`` naming the first record (counted from ``start``) whose float feature holds a NaN,
        an infinity or a value outside float32's range (``checks.numbers_problem``). A record stands for a
        missing value by leaving the feature out, so a NaN in it is refused even where the spec has a default
        (a feature with ``missing:`` reads a NaN as missing, as ``serving_default`` does)."""
        floats = [f for f in self.spec.features if f.dtype == "float32" and f.missing is None]
        if not floats or not records:
            return
        import tensorflow as tf  # defers TensorFlow

        from factory.features import parsing  # defers TensorFlow

        parsed = tf.io.parse_example(
            tf.constant(records, dtype=tf.string, shape=[len(records)]),
            {f.name: parsing.feature_parse_spec(f, False) for f in floats},
        )
        for f in floats:
            value = parsed[f.name]
            values = (value.to_tensor() if isinstance(value, tf.RaggedTensor) else value).numpy()
            problem = numbers_problem(values, f.dtype)
            if problem is not None:
                index, inside = problem.in_row()
                detail = f"feature '{f.name}': {inside}"
                raise PredictError(f"record {start + index}: {detail}", index=start + index, detail=detail)

    def _ordered(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        # A loaded signature returns its outputs in no fixed order: the manifest's (sorted) order instead.
        names = [n for n in self.outputs if n in outputs] + sorted(n for n in outputs if n not in self.outputs)
        return {name: outputs[name].numpy() for name in names}

    def _explain_examples(self, records: list[bytes], err: Exception) -> tuple[int, str]:
        """``(index, message)`` of the first record in ``records`` that the ``tf_example`` signature rejects."""
        import tensorflow as tf  # defers TensorFlow
        from google.protobuf.message import DecodeError  # defers TensorFlow (its protobuf)

        from factory.features import parsing  # defers TensorFlow

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
    """Load an export for prediction; ``path`` is a version, policy, export or run dir (see ``factory.serving.manifest``).

    ``batch_size`` (default 256) is how many examples go through the model at a time.
    Raises ``PredictError`` (a ``FactoryError``) when ``path`` holds no export.
    """
    return Predictor(path, batch_size=batch_size).load()


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _first_line(err: Exception) -> str:
    from factory.features.pipeline import first_line  # TensorFlow is loaded by now

    return first_line(err)


def explain_error(err: Exception) -> str:
    """TensorFlow's message about bad input, made to name the feature where it can."""
    from factory.features.pipeline import explain_error as explain_record  # defers TensorFlow

    return explain_record(err)


__all__ = ["PredictError", "Predictor", "TensorInfo", "find_export", "load_export", "read_manifest"]
