"""`normalize: auto` and `vocabulary: auto` through a training run: computed once, resumed, restored, exported."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from factory import FeatureSpec
from tests.helpers import TINY, compose

RUN_SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [3], "preprocess": {"normalize": "auto"}},
        "color": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 3, "oov_buckets": 1},
    },
    "labels": {"y": {"dtype": "float32", "shape": []}},
}
COLORS = np.array(["red", "green", "blue", "red", "green", "red", "grey"], dtype=object)


def write_run_data(tmp_path: Path, n: int = 400):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(n, 3)) * [2.0, 0.5, 30.0] + [10.0, -1.0, 200.0]).astype(np.float32)
    color = COLORS[rng.integers(0, len(COLORS), size=n)]
    effect = {"red": 1.0, "green": -1.0, "blue": 0.5, "grey": 0.0}
    y = ((x[:, 0] - 10) / 2 + np.array([effect[c] for c in color])).astype(np.float32)
    spec = FeatureSpec.from_dict(RUN_SPEC).without_auto()  # the records hold plain strings and floats
    split = n * 3 // 4
    for name, rows in (("train", slice(0, split)), ("eval", slice(split, n))):
        with spec.writer(tmp_path / "data" / name) as w:
            w.write_many({"x": x[rows], "color": color[rows], "y": y[rows]})
    return x[:split], color[:split]


def test_a_run_computes_statistics_once_resumes_with_them_and_exports_them(tmp_path, caplog):
    from factory.training.runner import train

    x, color = write_run_data(tmp_path)
    config = compose(*TINY, "train.max_steps=20", "train.eval_every_steps=10", "early_stop.monitor=val_mae")
    config["features"] = RUN_SPEC
    config["data"] = {"train": str(tmp_path / "data" / "train-*"), "eval": str(tmp_path / "data" / "eval-*")}
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="factory"):
        train(config, run_dir=run)
    assert "computed statistics from 300 training records" in caplog.text
    path = run / "statistics.json"
    stats = json.loads(path.read_text())
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats["features"]["x"]["normalize"]["mean"], x64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["features"]["x"]["normalize"]["std"], x64.std(axis=0), rtol=1e-10)
    values, counts = np.unique(color.astype(str), return_counts=True)
    ranked = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))
    assert stats["features"]["color"]["vocabulary"] == [v for v, _ in ranked[:3]]
    saved, mtime = path.read_text(), path.stat().st_mtime_ns

    # Resume with more steps: the same statistics, read from the run dir.
    caplog.clear()
    config["train"]["max_steps"] = 40
    with caplog.at_level(logging.INFO, logger="factory"):
        train(config, run_dir=run)
    assert "resumed from step 20" in caplog.text and "reusing the statistics in" in caplog.text
    assert "computed statistics" not in caplog.text
    assert path.read_text() == saved and path.stat().st_mtime_ns == mtime

    # statistics.json lost: the checkpoint's copy comes back instead of new statistics.
    path.unlink()
    caplog.clear()
    config["train"]["max_steps"] = 50
    with caplog.at_level(logging.INFO, logger="factory"):
        train(config, run_dir=run)
    assert "restored statistics.json from the checkpoint" in caplog.text and "computed statistics" not in caplog.text
    assert json.loads(path.read_text()) == stats

    # The export carries the constants: its manifest, and its graph in a fresh process.
    export = run / "export" / "best" / "current"
    manifest = json.loads((export / "assets.extra" / "manifest.json").read_text())
    declared = manifest["feature_spec"]["features"]
    assert declared["x"]["preprocess"]["normalize"] == stats["features"]["x"]["normalize"]
    assert declared["color"]["vocabulary"] == stats["features"]["color"]["vocabulary"]
    resolved = FeatureSpec.from_dict(manifest["feature_spec"])
    assert not resolved.needs_statistics and resolved["color"].vocabulary == tuple(
        stats["features"]["color"]["vocabulary"]
    )

    raw_x = np.array([[10.0, -1.0, 200.0], [12.5, 0.0, 150.0], [0.0, 0.0, 0.0], [7.0, -2.0, 260.0]], np.float32)
    raw_color = ["red", "blue", "grey", "purple"]  # 'grey' was left out by max_tokens, 'purple' never seen: OOV bucket
    code = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        fn = tf.saved_model.load({str(export)!r}).signatures["serving_default"]
        out = fn(x=tf.constant({raw_x.tolist()!r}, tf.float32), color=tf.constant({raw_color!r}))
        print(json.dumps(out["predictions"].numpy().tolist()))
        print(sorted(m for m in sys.modules if m.split(".")[0] == "factory"))
    """)
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    served, modules = np.asarray(json.loads(lines[-2])), lines[-1]
    assert modules == "[]"

    # In this process: the same spec's transform and the best weights.
    import tensorflow as tf

    from factory.config import load_config
    from factory.features.transform import FeatureTransform
    from factory.model.builder import build_model

    transform = FeatureTransform(resolved)
    features = transform.preprocess({"x": tf.constant(raw_x), "color": tf.constant(raw_color)}, labels=False)
    mean, std = (np.float32(stats["features"]["x"]["normalize"][k]) for k in ("mean", "std"))
    np.testing.assert_allclose(features["x"].numpy(), (raw_x - mean) / std, rtol=1e-6)
    vocab = stats["features"]["color"]["vocabulary"]
    assert features["color"].numpy().tolist() == [vocab.index("red"), vocab.index("blue"), 3, 3]
    model = build_model(resolved, "mlp", dict(load_config(config).network.params))
    tf.train.Checkpoint(model=model).read(str(run / "checkpoints" / "best" / "weights")).expect_partial()
    expected = model(features, training=False).numpy().reshape(-1)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
