"""SavedModel exports: written aside, verified, then renamed into place.

Layout: ``RUN_DIR/export/<policy>/<version>/`` (an increasing integer: TF
Serving serves the highest) holds a complete SavedModel with the
``serving_default`` and ``tf_example`` signatures and
``assets.extra/manifest.json``, and ``assets.extra/tf_serving_warmup_requests``
(requests TF Serving and ``factory serve`` replay before serving it). ``RUN_DIR/export/<policy>/current`` is a
symlink to the version the policy stands behind (the best, the newest, the
final); retention never deletes its target. Publishing, ``current`` and
retention are ``ExportTree``'s (``factory.serving.export_tree``, no TensorFlow).

Every export is loaded back and both signatures are run on records from the
eval set before it is published; their outputs must match the in-memory model
within ``tolerance``, or the export fails and nothing is published. A full disk
raises ``StorageError`` (one line naming the version and the free space) and
leaves no staging dir behind.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from factory.errors import FactoryError, disk_full, is_disk_full
from factory.features.feature import MISSING_VALUE
from factory.features.spec import FeatureSpec
from factory.features.transform import FeatureTransform
from factory.model.builder import predictions
from factory.names import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    EXAMPLE_SIGNATURE,
    EXAMPLES_INPUT,
    EXPORT_STATISTICS,
    MANIFEST,
)
from factory.run_dir import STATISTICS
from factory.serving.export_tree import ExportTree
from factory.serving.signatures import serving_functions
from factory.serving.warmup import write_warmup
from factory.version import __version__


class ExportError(FactoryError):
    """An export could not be written or did not verify; nothing was published."""


def _store_each_variable_once(archive: Any) -> None:
    """Keras 3's ``ExportArchive`` (up to 3.15 at least: keras-team/keras#23553) saves every weight twice:
    as the tracked ``keras.Variable`` and as the ``tf.Variable`` under it that the signatures capture, two
    objects the SavedModel cannot tell are one. Tracking the ``tf.Variable`` itself makes them one object
    (the fix proposed in keras-team/keras#23563): half the export on disk and half the variables a server
    holds, loaded alike by ``tf.saved_model.load`` and by TF1-style loaders (TF Serving, saved_model_cli)."""
    collect = archive._filter_and_track_resources

    def once() -> None:
        trackable = archive._tf_trackable
        for key in ("variables", "trainable_variables", "non_trainable_variables"):
            setattr(trackable, key, [getattr(v, "_value", v) for v in getattr(trackable, key)])
        collect()

    archive._filter_and_track_resources = once


class Exporter(ExportTree):
    """Writes and verifies the exports of one run; publishing and retention are ``ExportTree``'s."""

    def __init__(
        self,
        run_dir: Path,
        spec: FeatureSpec,
        transform: FeatureTransform,
        model,
        task: str,
        sample: Sequence[bytes],
        config: Mapping[str, Any],
        output_names: Mapping[str, str] | None = None,
        tolerance: float = 1e-5,
        model_name: str = DEFAULT_MODEL_NAME,
    ):
        super().__init__(run_dir)
        self.spec, self.transform, self.model, self.task = spec, transform, model, task
        self.sample = list(sample)
        self.config = dict(config)
        self.renames = dict(output_names or {})
        self.tolerance = tolerance
        self.model_name = model_name
        label_shape = tuple(spec.label.shape)
        classes = spec.label.vocabulary

        def forward(features):
            outputs = predictions(task, model(features, training=False), label_shape, classes)
            return {self.renames.get(k, k): v for k, v in outputs.items()}

        # What the export is compared with: the in-memory model run in a graph, as training and evaluation
        # run it. Eager kernels differ from graph ones under mixed precision (bfloat16: by 2e-2 in a
        # probability), which is no fault of the export.
        self.reference = tf.function(lambda raw: forward(transform.preprocess(raw, labels=False)))
        self.functions = serving_functions(spec, transform, forward)
        self.remove_leftovers()

    # -- writing ----------------------------------------------------------------------------------

    def write(self, policy: str, version: int, info: Mapping[str, Any]) -> Path:
        """Export the current weights as ``<policy>/<version>`` and point ``current`` at it; returns the published dir.

        On any failure the staging dir is removed and earlier versions are left as they were; a full
        disk raises ``StorageError`` naming the version (``factory.errors.disk_full``).
        """
        final = self.policy_dir(policy) / str(version)
        staging = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.staging(policy, version)
            archive = keras.export.ExportArchive()
            _store_each_variable_once(archive)
            archive.track(self.model)
            archive.track(self.transform)
            for name, (fn, signature) in self.functions.items():
                archive.add_endpoint(name, fn, input_signature=signature)
            archive.write_out(str(staging), verbose=False)
            write_warmup(staging, self.model_name, self.warmup_requests())
            signatures = self.verify(staging)
            manifest = self.manifest(policy, version, info, signatures)
            (staging / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            statistics = self.root.parent / STATISTICS  # the run dir's
            if statistics.exists():
                shutil.copyfile(statistics, staging / EXPORT_STATISTICS)
            self.publish(staging, policy, version)
            self.point(policy, version)
        except BaseException as err:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(err):  # an OSError from Python, or TensorFlow's error naming ENOSPC
                raise disk_full(final) from None
            raise
        return final

    def warmup_requests(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """TF Serving's warmup requests (``WARMUP_REQUESTS``): both signatures on the first verification
        record alone and on all of them, so the first real request of either size meets a warm model."""
        raw = {k: v.numpy() for k, v in self.sample_inputs().items()}
        examples = np.array(self.sample, dtype=object)
        requests = []
        for rows in sorted({1, len(self.sample)}):
            requests.append((DEFAULT_SIGNATURE, {k: v[:rows] for k, v in raw.items()}))
            requests.append((EXAMPLE_SIGNATURE, {EXAMPLES_INPUT: examples[:rows]}))
        return requests

    # -- verification -----------------------------------------------------------------------------

    def sample_inputs(self) -> dict[str, tf.Tensor]:
        """The verification records in the raw form ``serving_default`` takes."""
        parsed = tf.io.parse_example(tf.constant(self.sample), self.spec.parse_spec(labels=False))
        return self.transform.decode(parsed, labels=False)

    def verify(self, path: Path) -> dict[str, dict]:
        """Load the SavedModel at ``path``, run both signatures, compare with the in-memory model.

        Returns the signatures' input/output descriptions for the manifest.
        """
        if not self.sample:
            raise ExportError("export: no eval records to verify the export with; data.eval is empty")
        raw = self.sample_inputs()
        expected = {k: v.numpy() for k, v in self.reference(raw).items()}
        loaded = tf.saved_model.load(str(path))
        results = {
            DEFAULT_SIGNATURE: loaded.signatures[DEFAULT_SIGNATURE](**raw),
            EXAMPLE_SIGNATURE: loaded.signatures[EXAMPLE_SIGNATURE](**{EXAMPLES_INPUT: tf.constant(self.sample)}),
        }
        for signature, outputs in results.items():
            if set(outputs) != set(expected):
                raise ExportError(
                    f"export: signature {signature} returns {sorted(outputs)}, expected {sorted(expected)}"
                )
            for name, want in expected.items():
                got = outputs[name].numpy()
                if got.shape != want.shape:
                    raise ExportError(
                        f"export: {signature} output '{name}' has shape {got.shape}, the model gives {want.shape}"
                    )
                if want.dtype.kind in "OSU":  # class names: equal, or not
                    if not np.array_equal(got, want):
                        raise ExportError(
                            f"export: {signature} output '{name}' differs from the trained model's; "
                            "the export was not published"
                        )
                    continue
                errors = scaled_errors(got, want)
                diff = float(np.max(errors)) if got.size else 0.0
                if diff > self.tolerance:
                    worst = np.unravel_index(int(np.argmax(errors)), got.shape)
                    raise ExportError(
                        f"export: {signature} output '{name}' differs from the trained model by {diff:.3g} "
                        "(relative to the output's size, when above 1) "
                        f"(tolerance {self.tolerance:g}) on {len(self.sample)} eval records, most at eval record "
                        f"{worst[0]} (index {tuple(int(i) for i in worst)}: {got[worst]:.6g} against {want[worst]:.6g}); "
                        "the export was not published"
                    )
        return {name: describe_signature(loaded.signatures[name]) for name in results}

    # -- manifest ---------------------------------------------------------------------------------

    def manifest(self, policy: str, version: int, info: Mapping[str, Any], signatures: dict) -> dict[str, Any]:
        raw = {k: v.numpy() for k, v in self.sample_inputs().items()}
        instance = {name: _json_value(value[0]) for name, value in raw.items()}
        url = f"http://localhost:8501/v1/models/{self.model_name}:predict"
        return {
            "format": 1,
            "policy": policy,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **dict(info),
            "task": self.task,
            "label": {
                "name": self.spec.label.name,
                "num_classes": self.spec.label.num_classes,
                **({"classes": list(self.spec.label.vocabulary)} if self.spec.label.vocabulary else {}),
            },
            "signatures": signatures,
            **({"missing": missing_values(self.spec)} if any(f.missing for f in self.spec.features) else {}),
            "feature_spec": self.spec.to_dict(),
            "config": self.config,
            "versions": {
                "factory": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
            "serving": {
                "model_name": self.model_name,
                "model_base_path": str(self.policy_dir(policy).resolve()),
                "rest_url": url,
                "rest_request": {"signature_name": DEFAULT_SIGNATURE, "instances": [instance]},
                "rest_request_tf_example": {
                    "signature_name": EXAMPLE_SIGNATURE,
                    "instances": [{EXAMPLES_INPUT: {"b64": base64.b64encode(self.sample[0]).decode()}}],
                },
            },
        }


def scaled_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """How far ``got`` is from ``want``, element by element: absolute below 1, relative above. float32
    carries ~7 significant digits, so an output of 150 (a regression target) cannot agree to 1e-5
    absolutely after a graph rewrite or a conversion."""
    want = want.astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / np.maximum(1.0, np.abs(want))


def missing_values(spec: FeatureSpec) -> dict[str, dict]:
    """How each signature takes a missing value of each feature with ``missing:``, and what fills it."""
    out = {}
    for f in spec.features:
        if f.missing is None:
            continue
        marker = MISSING_VALUE[f.dtype]
        out[f.name] = {
            DEFAULT_SIGNATURE: "NaN" if f.dtype == "float32" else marker,
            EXAMPLE_SIGNATURE: "leave the feature out of the tf.train.Example",
            "fill": f.missing.fill,
            "value": list(f.missing.value),
            **({"indicator": f.indicator} if f.indicator else {}),
        }
    return out


def describe_signature(fn) -> dict[str, dict]:
    """``{"inputs": {name: {dtype, shape}}, "outputs": {...}}`` of a loaded signature (-1: any size)."""

    def spec(t) -> dict:
        return {
            "dtype": t.dtype.name,
            "shape": [-1 if d is None else int(d) for d in t.shape.as_list()],
        }

    _, inputs = fn.structured_input_signature
    return {
        "inputs": {name: spec(t) for name, t in sorted(inputs.items())},
        "outputs": {name: spec(t) for name, t in sorted(fn.structured_outputs.items())},
    }


def _json_value(value: np.ndarray) -> Any:
    """One raw feature value as TF Serving's JSON wants it (bytes as {"b64": ...} unless UTF-8)."""
    value = np.asarray(value)  # a scalar string arrives as plain bytes
    if value.dtype.kind in "SO":

        def text(b):
            try:
                return b.decode()
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(b).decode()}

        return text(value.item()) if value.ndim == 0 else [text(b) for b in value.reshape(-1)]
    return value.tolist()
