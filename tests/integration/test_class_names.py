"""A label with a string vocabulary: exports return the class names too, in both signatures and in `factory predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests.helpers.exports import table_exporter
from tests.helpers.predict import BIN

SPECIES = ["setosa", "versicolor", "virginica"]
TABLE = {
    "features": {"x": {"dtype": "float32", "shape": [4]}},
    "labels": {"species": {"dtype": "string", "shape": [], "vocabulary": SPECIES}},
}
ROWS = [{"x": list(np.random.default_rng(i).normal(size=4) * 3), "species": SPECIES[i % 3]} for i in range(12)]

# Plain TensorFlow, no factory: what TF Serving or a user's script sees.
LOAD = """
import json, sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = np.array(json.loads(sys.argv[2]), np.float32)
dense = model.signatures["serving_default"](x=tf.constant(x))
records = [tf.train.Example(features=tf.train.Features(feature={"x": tf.train.Feature(
    float_list=tf.train.FloatList(value=row))})).SerializeToString() for row in x]
examples = model.signatures["tf_example"](examples=tf.constant(records))
print(json.dumps({name: {k: v.numpy().tolist() for k, v in out.items()} for name, out in
                  (("dense", dense), ("examples", examples))}, default=bytes.decode))
"""


def test_a_string_label_exports_its_class_names(tmp_path):
    path = table_exporter(tmp_path / "run", table=TABLE, rows=ROWS).write("best", 1, {})
    manifest = json.loads((path / "assets.extra" / "manifest.json").read_text())
    assert manifest["label"]["classes"] == SPECIES
    assert manifest["signatures"]["serving_default"]["outputs"]["classes"]["dtype"] == "string"

    x = [row["x"] for row in ROWS]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOAD), str(path), json.dumps(x)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    outputs = json.loads(done.stdout)
    for signature in ("dense", "examples"):
        out = outputs[signature]
        assert set(out) == {"probabilities", "class_ids", "logits", "classes"}
        assert out["classes"] == [SPECIES[i] for i in out["class_ids"]], signature
    assert outputs["dense"] == outputs["examples"]
    assert len(set(outputs["dense"]["classes"])) > 1  # the names follow the ids, not one constant

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"x": v}) + "\n" for v in x))
    predicted = subprocess.run(
        [str(BIN / "factory"), "predict", str(tmp_path / "run"), "--input", str(rows)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [line["classes"] for line in lines] == outputs["dense"]["classes"]


def test_class_names_can_be_renamed_and_other_tasks_have_none():
    from factory.config import load_config
    from factory.errors import ConfigError
    from tests.helpers import TINY, compose

    config = compose(*TINY)
    config["features"] = TABLE
    config["export"]["output_names"] = {"classes": "species"}
    assert load_config(config).export.output_names == {"classes": "species"}
    digits = compose(*TINY)  # an int64 label: no class names
    digits["export"]["output_names"] = {"classes": "names"}
    try:
        load_config(digits)
    except ConfigError as err:
        assert "export.output_names.classes: a classification export has no output 'classes'" in str(err)
    else:
        raise AssertionError("an export without class names accepted output_names.classes")
