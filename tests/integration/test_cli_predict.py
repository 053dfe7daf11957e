"""``factory predict`` on a real (tiny) export: every input format, bad inputs named by file and line, the script."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from factory.features.images import encode_png
from tests.helpers.predict import BIN, N, run_cli, write_jsonl


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def b64_png(pixels: np.ndarray) -> str:
    return base64.b64encode(encode_png(pixels)).decode()


def inputs(kind: str, directory: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """The first N test images written as ``kind``; labels are included where a user would have them."""
    images, labels = pixels[:N], labels[:N]
    if kind == "jsonl_pixels":
        return write_jsonl(
            directory / "in.jsonl",
            [{"image": im.tolist(), "label": int(y)} for im, y in zip(images, labels, strict=True)],
        )
    if kind == "jsonl_base64":
        rows = [{"image": {"b64": b64_png(im)}} if i % 2 else {"image": b64_png(im)} for i, im in enumerate(images)]
        return write_jsonl(directory / "in.jsonl", rows)
    if kind == "csv_paths":
        (directory / "images").mkdir()
        lines = ["label,image"]
        for i, (im, y) in enumerate(zip(images, labels, strict=True)):
            (directory / "images" / f"{i}.png").write_bytes(encode_png(im))
            lines.append(f"{y},images/{i}.png")
        (directory / "in.csv").write_text("\n".join(lines) + "\n")
        return directory / "in.csv"
    if kind == "npz_pixels":
        np.savez(directory / "in.npz", image=images, label=labels)
        return directory / "in.npz"
    if kind == "npz_png_bytes":
        np.savez(directory / "in.npz", image=np.array([encode_png(im) for im in images]))
        return directory / "in.npz"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["jsonl_pixels", "jsonl_base64", "csv_paths", "npz_pixels", "npz_png_bytes"])
def test_cli_predicts_each_file_format_alike(capsys, tmp_path, run_dir, test_records, reference, kind):
    _, _, pixels, labels = test_records
    source = inputs(kind, tmp_path, pixels, labels)
    out = tmp_path / "out" / "predictions.jsonl"
    out.parent.mkdir()
    status, stdout, stderr = run_cli(capsys, run_dir, "--input", source, "--output", out, "--batch-size", 16)
    assert status == 0, stderr
    assert stdout.startswith(f"predicted {N} records with ")
    rows = read_lines(out)
    assert [r["index"] for r in rows] == list(range(N))
    assert set(rows[0]) == {"index", "class_ids", "probabilities", "logits"}
    assert [r["class_ids"] for r in rows] == reference["class_ids"][:N].tolist()
    np.testing.assert_allclose([r["probabilities"] for r in rows], reference["probabilities"][:N], atol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.jsonl"]  # no partial file left


def test_cli_predicts_tfrecords_to_stdout(capsys, run_dir, test_records, reference):
    files = test_records[0]
    pattern = os.path.join(os.path.dirname(files[0]), "test-*.tfrecord")
    status, stdout, stderr = run_cli(capsys, run_dir / "export", "--input", pattern, "--batch-size", 100)
    assert status == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(len(test_records[1])))
    assert [r["class_ids"] for r in rows] == reference["class_ids"].tolist()
    np.testing.assert_allclose([r["logits"] for r in rows], reference["logits"], atol=1e-5)
    assert stderr.startswith(f"predicted {len(rows)} records with ")


def tfrecord_lacking_image(directory: Path, good: bytes) -> Path:
    import tensorflow as tf

    example = tf.train.Example()
    example.features.feature["label"].int64_list.value.append(1)
    path = directory / "in.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in (good, good, example.SerializeToString()):
            writer.write(record)
    return path


ZEROS = [[[0]] * 8] * 8
# (id, how to write the input into a dir, what the error must say)
BAD_INPUTS = [
    (
        "missing",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"image": ZEROS}, {"label": 3}]),
        ["in.jsonl line 2: missing feature 'image': expected uint8 of shape [8, 8, 1]", "got nothing"],
    ),
    (
        "missing_csv_column",
        lambda d, r: (d / "in.csv").write_text("label\n1\n") and d / "in.csv",
        ["in.csv line 2: missing feature 'image'"],
    ),
    (
        "unknown",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"imgae": ZEROS}]),
        ["in.jsonl line 1: unknown key 'imgae' (did you mean 'image'?)"],
    ),
    (
        "wrong_shape",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"image": ZEROS}, {"image": [[0] * 8] * 8}]),
        ["in.jsonl line 2: feature 'image': expected uint8 of shape [8, 8, 1], got int64 of shape [8, 8]"],
    ),
    (
        "strings",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"image": [[["x"]] * 8] * 8}]),
        ["in.jsonl line 1: feature 'image': expected uint8 of shape [8, 8, 1], got string of shape [8, 8, 1]"],
    ),
    (
        "out_of_range",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"image": [[[300]] * 8] * 8}]),
        ["feature 'image': 300 at [0, 0, 0] is outside the uint8 range 0..255"],
    ),
    (
        "npz_wrong_shape",
        lambda d, r: np.savez(d / "in.npz", image=np.zeros((3, 8, 8))) or d / "in.npz",
        ["in.npz: feature 'image': expected uint8 of shape [batch, 8, 8, 1], got float64 of shape [3, 8, 8]"],
    ),
    (
        "image_too_big",
        lambda d, r: write_jsonl(d / "in.jsonl", [{"image": b64_png(np.zeros((16, 16, 1), np.uint8))}]),
        ["in.jsonl line 1: feature 'image': expected an image of 8x8 pixels, got a PNG image of 16x16"],
    ),
    (
        "image_file_missing",
        lambda d, r: (d / "in.csv").write_text("image\nnope.png\n") and d / "in.csv",
        ["in.csv line 2: feature 'image': 'nope.png' is neither an image file", "nor base64 PNG/JPEG data"],
    ),
    (
        "tfrecord_lacks_image",
        lambda d, r: tfrecord_lacking_image(d, r),
        ["in.tfrecord, record 2: lacks the required feature 'image' (uint8 [8, 8, 1] (png))"],
    ),
]


@pytest.mark.parametrize("write, expected", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_cli_bad_input_exits_2_naming_the_feature(capsys, tmp_path, run_dir, test_records, write, expected):
    source = write(tmp_path, test_records[1][0])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier predictions\n")
    status, stdout, stderr = run_cli(capsys, run_dir, "--input", source, "--output", out)
    assert status == 2 and stdout == ""
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    for text in expected:
        assert text in stderr
    assert out.read_text() == "earlier predictions\n"  # left as it was
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_cli_refuses_a_path_without_an_export(capsys, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"image": ZEROS}])
    status, _, stderr = run_cli(capsys, tmp_path, "--input", tmp_path / "in.jsonl")
    assert status == 2 and stderr.startswith(f"error: {tmp_path}: no export found")


def test_cli_binary_reports_bad_input_without_a_traceback(tmp_path, run_dir):
    source = write_jsonl(tmp_path / "in.jsonl", [{"image": [[0] * 8] * 8}])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [str(BIN / "factory"), "predict", str(run_dir), "--input", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr
        == f"error: {source} line 1: feature 'image': expected uint8 of shape [8, 8, 1], got int64 of shape [8, 8]\n"
    )
