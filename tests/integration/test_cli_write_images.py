"""``factory write`` with images given as file paths: the file's bytes are stored, a bad image names its row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factory.features.images import encode_png
from tests.helpers.write import files_in, read_back, write, write_spec

IMAGE_SPEC = """
features:
  image: {dtype: uint8, shape: [4, 4, 1], encoding: png}
labels:
  label: {dtype: int64, shape: [], num_classes: 3}
"""


def write_pngs(tmp_path: Path, count: int, size: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (size, size, 1), dtype=np.uint8) for _ in range(count)]
    (tmp_path / "img").mkdir(exist_ok=True)
    for i, image in enumerate(pixels):
        (tmp_path / "img" / f"{i}.png").write_bytes(encode_png(image))
    return pixels


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_png_paths_store_the_file_bytes(tmp_path, capsys, fmt):
    import tensorflow as tf

    pixels = write_pngs(tmp_path, 3)
    # Relative paths resolve against the input file's directory, not the working directory.
    paths = ["img/0.png", str(tmp_path / "img" / "1.png"), "./img/2.png"]
    data = tmp_path / "inputs" / f"images.{fmt}"
    data.parent.mkdir()
    paths = ["../" + p if not p.startswith("/") else p for p in paths]
    if fmt == "csv":
        data.write_text("image,label\n" + "".join(f"{p},{i}\n" for i, p in enumerate(paths)))
    else:
        data.write_text("".join(json.dumps({"image": p, "label": i}) + "\n" for i, p in enumerate(paths)))

    assert write(write_spec(tmp_path, IMAGE_SPEC), str(data), tmp_path / "out" / "img") == 0
    assert capsys.readouterr().out.startswith("wrote 3 records")
    records = read_back(
        str(tmp_path / "out" / "img-*"),
        {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)},
    )
    assert records["label"].tolist() == [0, 1, 2]
    for i, stored in enumerate(records["image"]):
        assert stored == (tmp_path / "img" / f"{i}.png").read_bytes()
        np.testing.assert_array_equal(tf.io.decode_png(stored).numpy(), pixels[i])


@pytest.mark.parametrize(
    "cell, message",
    [
        (
            "img/missing.png",
            "images.csv line 3: feature 'image': image file not found: {tmp}/img/missing.png ('img/missing.png' is relative to the input file's directory)",
        ),
        ("img/big.png", "images.csv line 3: feature 'image': expected an image of 4x4 pixels, got a PNG image of 5x5"),
        ("img", "images.csv line 3: feature 'image': cannot read image file {tmp}/img"),
    ],
)
def test_a_bad_image_names_row_feature_and_path(tmp_path, capsys, cell, message):
    write_pngs(tmp_path, 1)
    (tmp_path / "img" / "big.png").write_bytes(encode_png(np.zeros((5, 5, 1), np.uint8)))
    data = tmp_path / "images.csv"
    data.write_text(f"image,label\nimg/0.png,0\n{cell},1\n")

    assert write(write_spec(tmp_path, IMAGE_SPEC), str(data), tmp_path / "out" / "img") == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert files_in(tmp_path / "out") == []
