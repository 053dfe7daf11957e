"""Records under faults, end to end: interrupted and incomplete shard sets, a full disk,
non-finite numbers, CSV line numbers, records that lack a declared feature, an empty training file."""

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

from factory.cli import main
from factory.errors import RecordError
from factory.features.pipeline import resolve_files
from factory.features.spec import FeatureSpec
from tests.helpers import REPO, TINY
from tests.helpers.disk import small_disk
from tests.helpers.write import files_in, write, write_spec
from tests.unit.test_cli_train import factory_train

FACTORY = Path(sys.executable).parent / "factory"
TF_INTERNALS = ("Traceback", "function_node", "node ", "IteratorGetNext", "[Op:")


def factory(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(FACTORY), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert not any(bad in run.stderr for bad in TF_INTERNALS), run.stderr
    return lines[0]


def train_error_line(run: subprocess.CompletedProcess) -> str:
    """The one-line error of ``factory-train``: a job logs it (console and train.log), so it is on stdout."""
    assert run.returncode == 2, run.stdout + run.stderr
    output = run.stdout + run.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and output.rstrip().endswith(errors[0]), output
    assert not any(bad in output for bad in TF_INTERNALS), output
    return errors[0]


# -- shard sets are all or nothing -----------------------------------------------------------------

INTERRUPTED = """
import json, os, signal, sys
from factory.features.sources import open_source
from factory.features.spec import FeatureSpec
spec = FeatureSpec.from_yaml(sys.argv[1])
writer = spec.writer(sys.argv[3], shards=3)
with open_source(sys.argv[2], spec) as source:
    for row in source:
        writer.write(row.record)
journal = json.loads(open(writer.prepare()).read())
directory = os.path.dirname(sys.argv[3])
partial, final = journal["moves"][1]           # one rename done, as close() does them
os.replace(os.path.join(directory, partial), os.path.join(directory, final))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rerun_finishes_a_write_killed_between_renames(tmp_path):
    spec = write_spec(tmp_path)
    data = tmp_path / "data.csv"
    data.write_text("x,color,n,label\n" + "".join(f"{i} 1 2,red,{i},{i % 3}\n" for i in range(7)))
    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTERRUPTED), spec, str(data), str(out / "train")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [n for n in files_in(out) if not n.startswith(".")] == ["train-00001-of-00003.tfrecord"]
    # Readers refuse what is visible now, naming the shards that are not.
    refused = factory("check", "--features", spec, str(out / "train-*"))
    line = one_error_line(refused)
    assert "train-*-of-00003.tfrecord: incomplete shard set, missing shards train-00000-of-00003.tfrecord" in line
    assert "run the `factory write` that wrote it again" in line
    # The same command again: the set is completed, then written again; it checks whole.
    rerun = factory("write", "--features", spec, "--input", str(data), "--output", str(out / "train"), "--shards", "3")
    assert rerun.returncode == 0, rerun.stderr
    assert files_in(out) == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    checked = factory("check", "--features", spec, str(out / "train-*"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[-1] == "total: 7 records in 3 files"


def test_an_incomplete_set_is_refused_by_check_and_by_training(tmp_path):
    spec = write_spec(tmp_path)
    data = tmp_path / "data.csv"
    data.write_text("x,color,n,label\n" + "".join(f"{i} 1 2,red,{i},{i % 3}\n" for i in range(5)))
    assert write(spec, str(data), tmp_path / "out" / "train", "--shards", "3") == 0
    (tmp_path / "out" / "train-00002-of-00003.tfrecord").unlink()
    line = one_error_line(factory("check", "--features", spec, str(tmp_path / "out" / "train-*")))
    assert line == (
        f"error: {tmp_path}/out/train-*-of-00003.tfrecord: incomplete shard set, missing shard "
        "train-00002-of-00003.tfrecord; the set on disk is incomplete; run the `factory write` that wrote it "
        "again (it finishes an interrupted write), or write the set again with --overwrite"
    )
    with pytest.raises(RecordError, match=r"incomplete shard set, missing shard train-00002-of-00003.tfrecord"):
        resolve_files([str(tmp_path / "out" / "train-*")])  # what training, evaluation and stats call


# -- a full disk -----------------------------------------------------------------------------------


def test_a_full_disk_leaves_what_was_there(tmp_path):
    spec = write_spec(tmp_path, "features:\n  x: {dtype: float32, shape: [256]}\n")
    small = tmp_path / "small"
    with small_disk(small, "1m"):
        np.savez(tmp_path / "few.npz", x=np.ones((10, 256), np.float32))
        assert write(spec, str(tmp_path / "few.npz"), small / "train", "--shards", "2") == 0
        before = {n: (small / n).read_bytes() for n in files_in(small)}
        np.savez(tmp_path / "many.npz", x=np.random.default_rng(0).random((3000, 256), np.float32))  # 3 MB
        run = factory("write", "--features", spec, "--input", str(tmp_path / "many.npz"), "--output", str(small / "train"), "--shards", "2", "--overwrite")  # fmt: skip
        line = one_error_line(run)
        assert line.startswith(f"error: no space left on the device while writing {small}/train-0000")
        assert "MiB free in" in line and "run the same command again" in line
        assert {n: (small / n).read_bytes() for n in files_in(small)} == before  # no partial file, old set intact


# -- bad numbers and where they are ----------------------------------------------------------------

NUMBERS_SPEC = """
features:
  x: {dtype: float32, shape: [2]}
  w: {dtype: float32, shape: [], default: 0.5}
  n: {dtype: int64, shape: [], default: 7}
labels:
  label: {dtype: int64, shape: [], num_classes: 3}
"""


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("1 nan,,,0", "line 4: feature 'x': nan at [1] is NaN; float32 values must be finite numbers"),
        ("1 2,inf,,0", "line 4: feature 'w': inf is infinite; float32 values must be finite numbers"),
        ("1 2,-inf,,0", "line 4: feature 'w': -inf is infinite"),
        ("1e39 2,,,0", "line 4: feature 'x': 1e+39 at [0] is outside the float32 range -3.4028235e+38..3.4028235e+38"),
        ("1 2,,99999999999999999999,0", "line 4: feature 'n': 99999999999999999999 is outside the int64 range"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_bad_rows(tmp_path, capsys, row, error):
    spec = write_spec(tmp_path, NUMBERS_SPEC)
    data = tmp_path / "data.csv"
    data.write_text(f"x,w,n,label\n1 2,nan,nan,1\n\n{row}\n3 4,0.25,3,2\n")
    assert write(spec, str(data), tmp_path / "out" / "t") == 2
    assert capsys.readouterr().err.startswith(f"error: {data} {error}")
    assert files_in(tmp_path / "out") == []
    assert write(spec, str(data), tmp_path / "out" / "t", "--skip-bad-rows") == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"skipped {data} {error}")
    assert captured.out.startswith("wrote 2 records (1 bad row skipped)")
    first = next(iter(FeatureSpec.from_yaml(spec).dataset(str(tmp_path / "out" / "t-*"), mode="eval", batch_size=8)))
    assert first[0]["w"].numpy().tolist() == [0.5, 0.25] and first[0]["n"].numpy().tolist() == [7, 3]  # NaN: default


# -- records that lack a declared feature; an empty training file ----------------------------------

OTHER = {
    "features": {"measurements": {"dtype": "float32", "shape": [4]}},
    "labels": {"species": {"dtype": "int64", "shape": [], "num_classes": 3}},
}


def other_records(prefix: Path) -> str:
    with FeatureSpec.from_dict(OTHER).writer(prefix) as w:
        w.write_many({"measurements": np.ones((40, 4), np.float32), "species": np.arange(40) % 3})
    return f"{prefix}-*"


def test_training_on_records_without_the_declared_image_names_it(tmp_path):
    records = other_records(tmp_path / "iris" / "train")
    run = factory_train(
        *TINY, "data.generate=null", f"data.train={records}", f"data.eval={records}", "data.test=null",
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    line = train_error_line(run)
    assert f"{tmp_path}/iris/train-00000-of-00001.tfrecord, record 0: lacks the required feature 'image'" in line
    assert "it holds: measurements, species" in line and "`missing: {fill: ...}`, or a `default`" in line


def test_stats_of_records_without_an_auto_feature_names_it(tmp_path):
    records = other_records(tmp_path / "train")
    spec = write_spec(
        tmp_path, "features:\n  x: {dtype: float32, shape: [4], preprocess: {normalize: auto}}\n"
        "labels:\n  species: {dtype: int64, shape: [], num_classes: 3}\n",
    )  # fmt: skip
    line = one_error_line(factory("stats", "--features", spec, "--input", records))
    assert line == (
        f"error: {tmp_path}/train-00000-of-00001.tfrecord, record 0: lacks the required feature 'x' "
        "(float32 [4]); it holds: measurements, species. Write the feature into the records, "
        "or say what a missing value becomes in the feature spec (`missing: {fill: ...}`, or a `default`)"
    )


def test_training_on_an_empty_file_says_it_holds_no_examples(tmp_path):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    eval_records = tmp_path / "eval.tfrecord"
    with FeatureSpec.from_dict(json.loads(json.dumps(OTHER))).writer(tmp_path / "e") as w:
        w.write({"measurements": [1, 2, 3, 4], "species": 1})
    os.replace(tmp_path / "e-00000-of-00001.tfrecord", eval_records)
    run = factory_train(
        *TINY, "data.generate=null", f"data.train={empty}", f"data.eval={eval_records}", "data.test=null",
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    line = train_error_line(run)
    assert f"the records in {empty} hold no examples" in line, line
    assert "write records into it (`factory write`)" in line


def test_explain_errors_strips_tensorflow_internals():
    import tensorflow as tf

    from factory.features.pipeline import explain_error

    err = tf.errors.InvalidArgumentError(
        None,
        None,
        "{{function_node __inference_f_42}} Unknown image file format. One of JPEG, PNG, GIF, BMP required.\n"
        "\t [[{{node DecodeImage}}]] [Op:IteratorGetNext] name: ",
    )
    assert explain_error(err) == "Unknown image file format. One of JPEG, PNG, GIF, BMP required."
    assert main(["check", "--features", "/nonexistent.yaml", "x"]) == 2
