"""Missing values through a training run: fills from present values, the same in the training
pipeline, in `serving_default` (NaN, "", the smallest int64), in `tf_example` (absent features) and in
`factory predict` (blank CSV cells), with the export loaded in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

from factory import FeatureSpec
from factory.cli import main
from tests.helpers import TINY, compose

SPEC = {
    "features": {
        "x": {
            "dtype": "float32",
            "shape": [2],
            "missing": {"fill": "mean", "indicator": True},
            "preprocess": {"normalize": "auto"},
        },
        "n": {"dtype": "int64", "shape": [], "missing": "median"},
        "color": {"dtype": "string", "shape": [], "vocabulary": "auto", "missing": "most_frequent"},
        "c": {"dtype": "float32", "shape": [], "missing": {"fill": "constant", "value": -1.0}},
    },
    "labels": {"y": {"dtype": "float32", "shape": []}},
}
COLORS = np.array(["red", "green", "blue", "red", "red", "grey"], dtype=object)
INT64_MISSING = -(2**63)


def table(n: int, seed: int):
    """Columns with about 15% of each feature's values missing (NaN rows, None strings)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * [3.0, 0.5] + [10.0, -2.0]
    count = rng.integers(0, 20, size=n).astype(np.float64)
    color = COLORS[rng.integers(0, len(COLORS), size=n)]
    c = rng.normal(size=n)
    y = (x[:, 0] - 10) / 3 + count / 20 + (color == "red") + c
    x[rng.random(n) < 0.15] = np.nan
    count[rng.random(n) < 0.15] = np.nan
    color = np.where(rng.random(n) < 0.15, None, color)
    c[rng.random(n) < 0.15] = np.nan
    return {"x": x, "n": count, "color": color, "c": c, "y": y.astype(np.float32)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from factory.training.runner import train

    root = tmp_path_factory.mktemp("missing")
    spec = FeatureSpec.from_dict(SPEC).without_auto()
    tables = {"train": table(400, 0), "eval": table(120, 1)}
    for part, columns in tables.items():
        with spec.writer(root / "data" / part) as writer:
            writer.write_many(columns)
        assert writer.missing["x"] == int(np.isnan(columns["x"][:, 0]).sum()) > 0
    config = compose(*TINY, "train.max_steps=20", "train.eval_every_steps=10", "early_stop.monitor=val_mae")
    config["features"] = SPEC
    config["data"] = {part: str(root / "data" / f"{part}-*") for part in tables}
    run = root / "run"
    train(config, run_dir=run)
    return root, run, tables


def test_fills_and_statistics_come_from_present_values(trained):
    _, run, tables = trained
    stats = json.loads((run / "statistics.json").read_text())
    t = tables["train"]
    present = t["x"][~np.isnan(t["x"][:, 0])].astype(np.float32).astype(np.float64)
    x = stats["features"]["x"]
    np.testing.assert_allclose(x["fill"], present.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(x["normalize"]["mean"], present.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(x["normalize"]["std"], present.std(axis=0), rtol=1e-10)
    assert stats["features"]["n"]["fill"] == [round(float(np.nanmedian(t["n"])))]
    counts = Counter(v for v in t["color"] if v is not None)
    assert stats["features"]["color"]["fill"] == [min(counts, key=lambda v: (-counts[v], v))]
    assert None not in stats["features"]["color"]["vocabulary"]
    summary = stats["summary"]
    assert summary["x"]["missing"] == int(np.isnan(t["x"][:, 0]).sum())
    assert summary["color"]["missing"] == sum(v is None for v in t["color"])
    assert summary["y"]["missing"] == 0
    export = run / "export" / "best" / "1"
    assert json.loads((export / "assets.extra" / "statistics.json").read_text()) == stats
    manifest = json.loads((export / "assets.extra" / "manifest.json").read_text())
    assert manifest["missing"]["x"]["serving_default"] == "NaN" and manifest["missing"]["x"]["indicator"] == "x_missing"
    assert manifest["missing"]["n"]["serving_default"] == INT64_MISSING
    assert manifest["missing"]["color"]["serving_default"] == ""


def test_the_pipeline_fills_what_the_spec_says(trained):
    root, run, tables = trained
    manifest = json.loads((run / "export" / "best" / "1" / "assets.extra" / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    features, _ = next(iter(spec.dataset(str(root / "data" / "eval-*"), mode="eval", batch_size=120)))
    e = tables["eval"]
    gap = np.isnan(e["x"][:, 0])
    np.testing.assert_array_equal(features["x_missing"].numpy(), gap.astype(np.float32))
    mean, std = np.asarray(spec["x"].preprocess.normalize.mean), np.asarray(spec["x"].preprocess.normalize.std)
    np.testing.assert_allclose(
        features["x"].numpy()[gap],
        np.tile((np.asarray(spec["x"].missing.value) - mean) / std, (gap.sum(), 1)),
        atol=1e-6,
    )
    n = features["n"].numpy()
    assert (n[np.isnan(e["n"])] == spec["n"].missing.value[0]).all()
    assert (n[~np.isnan(e["n"])] == e["n"][~np.isnan(e["n"])]).all()
    ids = features["color"].numpy()
    fill_id = spec["color"].vocabulary.index(spec["color"].missing.value[0])
    assert (ids[[v is None for v in e["color"]]] == fill_id).all()
    assert (features["c"].numpy()[np.isnan(e["c"])] == -1.0).all()


# Loads the export in a fresh process and runs both signatures on the same eval rows.
CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    export, records = sys.argv[1], sys.argv[2]
    raw = json.loads(sys.stdin.read())
    model = tf.saved_model.load(export)
    examples = [r.numpy() for r in tf.data.TFRecordDataset(records)]
    def run(signature, inputs):
        out = model.signatures[signature](**inputs)
        return {k: v.numpy().tolist() for k, v in out.items()}
    dense = {
        "x": tf.constant(raw["x"], tf.float32),
        "n": tf.constant(raw["n"], tf.int64),
        "color": tf.constant(raw["color"], tf.string),
        "c": tf.constant(raw["c"], tf.float32),
    }
    filled = dict(dense, n=tf.constant(raw["n_filled"], tf.int64), color=tf.constant(raw["color_filled"], tf.string),
                  c=tf.constant(raw["c_filled"], tf.float32))
    print(json.dumps({
        "serving_default": run("serving_default", dense),
        "tf_example": run("tf_example", {"examples": tf.constant(examples)}),
        "explicit": run("serving_default", filled),
    }))
    """
)


def test_both_signatures_and_predict_fill_missing_values_alike(trained, tmp_path):
    root, run, tables = trained
    export = run / "export" / "best" / "1"
    spec = FeatureSpec.from_dict(json.loads((export / "assets.extra" / "manifest.json").read_text())["feature_spec"])
    e = tables["eval"]
    n_gap, c_gap = np.isnan(e["n"]), np.isnan(e["c"])
    color_gap = np.array([v is None for v in e["color"]])
    raw = {
        "x": np.where(np.isnan(e["x"]), np.nan, e["x"]).tolist(),
        "n": np.where(n_gap, INT64_MISSING, np.nan_to_num(e["n"])).astype(np.int64).tolist(),
        "color": ["" if v is None else v for v in e["color"]],
        "c": e["c"].tolist(),
        "n_filled": np.where(n_gap, spec["n"].missing.value[0], np.nan_to_num(e["n"])).astype(np.int64).tolist(),
        "color_filled": [spec["color"].missing.value[0] if v is None else v for v in e["color"]],
        "c_filled": np.where(c_gap, -1.0, e["c"]).tolist(),
    }
    data = json.dumps(raw).replace("NaN", "NaN")  # json writes NaN, Python's json reads it
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(export), str(next((root / "data").glob("eval-*")))],
        input=data,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    dense, examples, explicit = (
        np.asarray(out[k]["predictions"]) for k in ("serving_default", "tf_example", "explicit")
    )
    assert color_gap.any() and n_gap.any() and c_gap.any()
    np.testing.assert_allclose(dense, examples, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dense, explicit, rtol=1e-6, atol=1e-6)  # the graph's fill is the spec's value

    # factory predict on a CSV with blank cells: the same predictions.
    lines = ["x,n,color,c"]
    for i in range(len(e["y"])):
        x = "" if np.isnan(e["x"][i, 0]) else f"{float(e['x'][i, 0])!r} {float(e['x'][i, 1])!r}"
        n = "" if n_gap[i] else str(int(e["n"][i]))
        c = "" if c_gap[i] else repr(float(e["c"][i]))
        lines.append(f'"{x}",{n},{e["color"][i] or ""},{c}')
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    out_path = tmp_path / "out.jsonl"
    assert main(["predict", str(export), "--input", str(tmp_path / "rows.csv"), "--output", str(out_path)]) == 0
    predicted = [json.loads(line)["predictions"] for line in out_path.read_text().splitlines()]
    np.testing.assert_allclose(predicted, dense, rtol=1e-5, atol=1e-5)


def test_the_statistics_pass_reads_missing_markers_as_the_graph_does(tmp_path):
    """Records written elsewhere may hold NaN, "" or the smallest int64 where a value is missing: the pass
    counts them as missing (the graph fills them), so no fill or vocabulary is made of them."""
    import tensorflow as tf

    from factory.features.scan import compute_statistics

    def example(a: float, s: bytes, n: int) -> bytes:
        feature = {
            "a": tf.train.Feature(float_list=tf.train.FloatList(value=[a])),
            "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[s])),
            "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[n])),
            "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    with tf.io.TFRecordWriter(str(tmp_path / "t.tfrecord")) as writer:
        for a, s, n in [(1.0, b"", 5), (float("nan"), b"", INT64_MISSING), (3.0, b"", 7), (5.0, b"a", 9)]:
            writer.write(example(a, s, n))
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "a": {"dtype": "float32", "shape": [], "missing": "median"},
                "s": {"dtype": "string", "shape": [], "vocabulary": "auto", "missing": "most_frequent"},
                "n": {"dtype": "int64", "shape": [], "missing": "mean"},
            },
            "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
        }
    )
    stats = compute_statistics(spec, str(tmp_path / "t.tfrecord"))
    assert stats["features"]["a"]["fill"] == [3.0]
    assert stats["features"]["s"]["fill"] == ["a"] and stats["features"]["s"]["vocabulary"] == ["a"]
    assert stats["features"]["n"]["fill"] == [7]
    assert [stats["summary"][k]["missing"] for k in ("a", "s", "n")] == [1, 3, 1]
