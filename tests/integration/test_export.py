"""Exports written by the runner: layout, retention, manifest, verification, crashes, plain-TF loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from factory.serving.exporter import ExportError
from factory.training.runner import train
from tests.helpers import TINY, compose

ALL_POLICIES = (*TINY, "export.best.keep=2", "export.latest.enabled=true", "export.final.enabled=true")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("export-run")
    train(compose(*ALL_POLICIES), run_dir=run)
    return run


def numbered(policy_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in policy_dir.iterdir() if p.name.isdigit())


def test_layout_retention_and_current_pointer(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    improvements = []
    best = -1.0
    for row in rows:
        if row["val_accuracy"] > best:
            best = row["val_accuracy"]
            improvements.append(row["eval"])
    best_dir = run_dir / "export" / "best"
    versions = numbered(best_dir)
    assert len(versions) == min(2, len(improvements))  # keep=2
    assert os.readlink(best_dir / "current") == str(versions[-1])
    evals = [json.loads((best_dir / str(v) / "assets.extra" / "manifest.json").read_text())["eval"] for v in versions]
    assert evals == improvements[-len(versions) :]
    assert numbered(run_dir / "export" / "latest") == [len(rows)]  # keep=1: the newest
    assert numbered(run_dir / "export" / "final") == [1]
    for policy in ("best", "latest", "final"):
        assert (run_dir / "export" / policy / "current" / "saved_model.pb").exists()
    assert not [p for p in (run_dir / "export").iterdir() if p.name.startswith(".")]  # no staging leftovers
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exports"]["best"] == str(best_dir / str(versions[-1]))


def test_manifest_describes_the_export(run_dir):
    version = os.readlink(run_dir / "export" / "best" / "current")
    manifest = json.loads((run_dir / "export" / "best" / version / "assets.extra" / "manifest.json").read_text())
    assert manifest["policy"] == "best" and manifest["version"] == int(version)
    assert manifest["monitor"] == "val_accuracy" and manifest["mode"] == "max"
    assert set(manifest["metrics"]) == {"val_loss", "val_accuracy"} and manifest["step"] % 20 == 0
    assert manifest["feature_spec"]["features"]["image"]["encoding"] == "png"
    assert manifest["config"]["network"]["name"] == "mlp"
    assert manifest["signatures"]["serving_default"]["inputs"] == {"image": {"dtype": "uint8", "shape": [-1, 8, 8, 1]}}
    assert manifest["signatures"]["tf_example"]["inputs"] == {"examples": {"dtype": "string", "shape": [-1]}}
    assert manifest["signatures"]["serving_default"]["outputs"]["probabilities"] == {
        "dtype": "float32",
        "shape": [-1, 10],
    }
    assert set(manifest["versions"]) == {"factory", "tensorflow", "keras"}
    request = manifest["serving"]["rest_request"]
    assert request["signature_name"] == "serving_default"
    assert np.asarray(request["instances"][0]["image"]).shape == (8, 8, 1)
    assert manifest["serving"]["rest_url"].endswith("/v1/models/model:predict")


def test_a_process_without_factory_loads_the_export_and_both_signatures_agree(run_dir):
    export = run_dir / "export" / "best" / "current"
    records = str(Path(os.environ["FACTORY_CACHE"]) / "digits" / "test-*.tfrecord")
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(export)!r})
        files = tf.io.gfile.glob({records!r})
        serialized = [r.numpy() for r in tf.data.TFRecordDataset(files).take(64)]
        parsed = tf.io.parse_example(serialized, {{"image": tf.io.FixedLenFeature([], tf.string)}})
        pixels = tf.stack([tf.io.decode_png(b, channels=1) for b in parsed["image"]])
        dense = model.signatures["serving_default"](image=pixels)
        examples = model.signatures["tf_example"](examples=tf.constant(serialized))
        assert "factory" not in sys.modules
        print(json.dumps({{"dense": dense["probabilities"].numpy().tolist(), "examples": examples["probabilities"].numpy().tolist()}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    dense, examples = np.asarray(result["dense"]), np.asarray(result["examples"])
    np.testing.assert_allclose(dense, examples, atol=1e-6)

    # ...and with the trained model on the training pipeline's preprocessing.
    from factory.config import load_config
    from factory.model.builder import build_model

    config = load_config(compose(*ALL_POLICIES))
    model = build_model(config.features, "mlp", dict(config.network.params))
    tf.train.Checkpoint(model=model).read(str(run_dir / "checkpoints" / "best" / "weights")).expect_partial()
    features, _ = next(iter(config.features.dataset(records, mode="eval", batch_size=64)))
    probabilities = tf.nn.softmax(model(features, training=False)).numpy()
    np.testing.assert_allclose(dense, probabilities, atol=1e-5)


def test_an_export_that_does_not_match_the_model_is_not_published(tmp_path, monkeypatch):
    import factory.serving.exporter as export

    real = export.serving_functions

    def skewed(spec, transform, forward):  # the exported signatures only, not the model they are checked against
        def off(features):
            outputs = dict(forward(features))
            return {**outputs, "logits": outputs["logits"] + 0.5}

        return real(spec, transform, off)

    monkeypatch.setattr(export, "serving_functions", skewed)
    with pytest.raises(
        ExportError, match=r"serving_default output 'logits' differs from the trained model by 0.5 .*not published"
    ):
        train(compose(*TINY, "train.max_steps=20"), run_dir=tmp_path / "run")
    export_dir = tmp_path / "run" / "export"
    assert not export_dir.exists() or not [p for p in export_dir.rglob("*") if p.name.isdigit()]


def test_a_crash_mid_export_publishes_nothing_half_written(tmp_path):
    run = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tests.helpers import compose
        import factory.serving.exporter as export
        calls = []
        real_verify = export.Exporter.verify
        def verify(self, path):
            calls.append(path)
            if len(calls) == 2:  # the SavedModel of the second export is on disk, unverified
                os.kill(os.getpid(), signal.SIGKILL)
            return real_verify(self, path)
        export.Exporter.verify = verify
        from factory.training.runner import train
        train(compose(*{list(TINY)!r}, "train.max_steps=60"), run_dir={str(run)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr
    best = run / "export" / "best"
    assert numbered(best) == [1] and os.readlink(best / "current") == "1"
    assert tf.saved_model.load(str(best / "1")).signatures["serving_default"] is not None
    assert [p.name for p in (run / "export").iterdir() if p.name.startswith(".staging-")]  # the dead writer's
    # Resuming cleans up and finishes the exports.
    train(compose(*TINY, "train.max_steps=60"), run_dir=run)
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".")]
    assert os.readlink(best / "current") == str(numbered(best)[-1])
