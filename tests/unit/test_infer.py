"""`factory init`: the spec proposed from small CSV, JSON Lines and NPZ files, the config dir it
writes, and every error (exit 2, one line, nothing written). No TensorFlow."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from factory.cli import main
from factory.features import infer_columns
from factory.features.images import encode_png
from factory.features.spec import FeatureSpec
from tests import helpers


def init(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["init", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def proposal(tmp_path, capsys, name: str, text: str | bytes, label: str, *extra: str) -> dict:
    """Write ``text`` as ``name``, run `factory init` on it; the proposed spec (checked to load) and its YAML text."""
    path = tmp_path / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    code, out, err = init(capsys, str(path), "--label", label, "--output", str(tmp_path / "conf"), *extra)
    assert code == 0, err
    stem = path.stem if "--name" not in extra else extra[extra.index("--name") + 1]
    spec_file = tmp_path / "conf" / "features" / f"{stem}.yaml"
    text = spec_file.read_text()
    FeatureSpec.from_yaml(spec_file)
    return {"spec": yaml.safe_load(text), "text": text, "out": out, "dir": tmp_path / "conf", "name": stem}


def _rng_rows(n: int, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


VOCABULARY = ["good", "bad", "fine", "okay", "great", "poor", "cheap", "dear", "fast", "slow", "warm", "cold", "new"]


# -- types --------------------------------------------------------------------------------------


def test_csv_columns_become_numbers_vectors_vocabularies_and_words(tmp_path, capsys):
    rng = _rng_rows(200)
    colors = ["red", "green", "blue"]
    lines = ["x,n,color,city,vec,var,words,note,user_id,const,y"]
    for i in range(200):
        city = f"city{i % 40}" if i < 190 else f"rare{i}"  # 10 cities seen once: a long tail
        var = " ".join(str(v) for v in range(1 + i % 4))
        words = " ".join(rng.choice(VOCABULARY, size=2 + i % 3))  # short text, nearly every row its own
        note = f"note number {i} with many words " * 20  # long free text
        lines.append(
            f'{rng.normal():.4f},{i % 5},{colors[i % 3]},{city},"{i} {i + 1} {i + 2}","{var}",{words},{note},'
            f"{1000 + i},7,{['a', 'b'][i % 2]}"
        )
    p = proposal(tmp_path, capsys, "table.csv", "\n".join(lines) + "\n", "y")
    f = p["spec"]["features"]
    assert f["x"] == {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}}
    assert f["n"] == {"dtype": "int64", "shape": [], "preprocess": {"normalize": "auto"}}
    assert "5 distinct whole numbers in 200 rows, 0 to 4" in p["text"] and "keeps their order" in p["text"]
    assert f["color"] == {"dtype": "string", "shape": [], "vocabulary": "auto"}
    assert "3 distinct strings in 200 rows: a vocabulary" in p["text"]
    assert f["city"] == {"dtype": "string", "shape": [], "vocabulary": "auto", "oov_buckets": 1, "min_count": 2}
    assert f["vec"] == {"dtype": "int64", "shape": [3], "preprocess": {"normalize": "auto"}}
    assert f["var"] == {"dtype": "int64", "shape": [None], "max_length": 4, "preprocess": {"normalize": "auto"}}
    # Short phrases and free text: tokens learnt from the training records, split in the graph.
    assert f["words"] == f["note"] == {"dtype": "string", "shape": [], "text": {}}
    assert "text: {}  # short phrases (" in p["text"] and "words a value on average): a multi-hot vector" in p["text"]
    assert "free text (200 distinct of 200, 120.0 words a value on average): a multi-hot vector" in p["text"]
    assert set(f) == {"x", "n", "color", "city", "vec", "var", "words", "note"}
    left = p["text"].split("# Left out")[1]
    assert "user_id: a different whole number in every row (1000..1199): an identifier" in left
    assert "const: 7 in every row" in left
    assert "left out 'user_id'" in p["out"]
    assert "--split train=0.8,eval=0.1,test=0.1 --ignore-unknown" in p["out"]  # the columns left out
    assert p["spec"]["labels"]["y"] == {"dtype": "string", "shape": [], "vocabulary": ["a", "b"]}


def test_jsonl_lists_nulls_and_values_no_spec_can_hold(tmp_path, capsys):
    rows = []
    for i in range(60):
        rows.append(
            {
                "point": [i, i / 2],
                "grid": [[i, 1], [2, 3]],
                "series": [0.5] * (1 + i % 3),
                "tags": ["a", "b", "c"][: 1 + i % 3],
                "flag": bool(i % 2),
                "meta": {"k": i},
                "score": None if i % 4 == 0 else i + 0.5,
                "label": i % 2,
            }
        )
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    p = proposal(tmp_path, capsys, "rows.jsonl", text, "label")
    f = p["spec"]["features"]
    assert f["point"]["shape"] == [2] and f["point"]["dtype"] == "float32"
    assert f["grid"] == {"dtype": "int64", "shape": [2, 2], "preprocess": {"normalize": "auto"}}
    assert f["series"]["shape"] == [None] and f["series"]["max_length"] == 3
    assert f["tags"]["dtype"] == "string" and f["tags"]["shape"] == [None]
    assert f["score"]["missing"] == {"fill": "mean", "indicator": True}
    assert "blank in 15 of 60 rows (25.0%)" in p["text"]
    assert "flag" not in f and "true/false values" in p["text"]
    assert "meta" not in f and "nested objects" in p["text"]
    assert p["spec"]["labels"]["label"] == {"dtype": "int64", "shape": [], "task": "binary"}
    experiment = (p["dir"] / "experiment" / "rows.yaml").read_text()
    assert "monitor: val_auc" in experiment


def test_parquet_types_nulls_and_nan_are_read_as_factory_write_reads_them(tmp_path, capsys):
    """Parquet's own types: lists, booleans (stored as 0/1), structs left out, nulls and NaN missing,
    PNG bytes an image; the proposal then writes the same file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    png = encode_png(np.zeros((2, 3, 1), dtype=np.uint8))
    n = 60
    table = pa.table(
        {
            "point": pa.array([[i, i / 2] for i in range(n)], pa.list_(pa.float64(), 2)),
            "tags": [["a", "b", "c"][: 1 + i % 3] for i in range(n)],
            "flag": [bool(i % 2) for i in range(n)],
            "meta": [{"k": i} for i in range(n)],
            "score": [None if i % 4 == 0 else float("nan") if i % 4 == 1 else i + 0.5 for i in range(n)],
            "image": pa.array([png] * n, pa.binary()),
            "label": [i % 2 for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=25)
    code, out, err = init(
        capsys, str(tmp_path / "rows.parquet"), "--label", "label", "--output", str(tmp_path / "conf")
    )
    assert code == 0, err
    assert "--input " + str(tmp_path / "rows.parquet") in out  # the next command writes the same file
    spec_file = tmp_path / "conf" / "features" / "rows.yaml"
    text = spec_file.read_text()
    f = yaml.safe_load(text)["features"]
    assert f["point"]["shape"] == [2] and f["point"]["dtype"] == "float32"
    assert f["tags"]["dtype"] == "string" and f["tags"]["shape"] == [None]
    assert f["flag"]["dtype"] == "int64"  # JSON Lines' true/false are refused; Parquet's are 0/1 to the writer
    assert f["score"]["missing"] == {"fill": "mean", "indicator": True}
    assert "blank in 30 of 60 rows (50.0%)" in text  # nulls and NaN alike
    assert f["image"]["encoding"] == "png" and f["image"]["shape"] == [2, 3, 1]
    assert "meta" not in f and "nested objects" in text
    write = ["write", "--features", str(spec_file), "--input", str(tmp_path / "rows.parquet"), "--ignore-unknown"]
    assert main([*write, "--output", str(tmp_path / "out")]) == 0
    assert "wrote 60 records (0 bad rows skipped)" in capsys.readouterr().out


def _jpeg_header(height: int, width: int, channels: int) -> bytes:
    """The first bytes of a baseline JPEG: SOI, an APP0 segment, SOF0 with the frame size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 8 + 3 * channels, 8, height, width, channels) + bytes(3 * channels)
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def test_npz_arrays_and_image_bytes_by_their_magic_numbers(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 17, size=(30, 8, 8, 1), dtype=np.uint8)
    png = np.array([encode_png(rng.integers(0, 255, size=(6, 5, 3), dtype=np.uint8)) for _ in range(30)])
    jpeg = np.array([_jpeg_header(12, 16, 3)] * 30)
    np.savez(
        tmp_path / "arrays.npz",
        pixels=pixels,
        png=png,
        jpeg=jpeg,
        blob=np.array([b"\x00\x01binary"] * 15 + [b"\x02other"] * 15),
        matrix=rng.normal(size=(30, 2, 3)),
        mask=rng.integers(0, 2, size=30).astype(bool),
        label=rng.integers(0, 3, size=30),
    )
    path = tmp_path / "arrays.npz"
    code, _, err = init(capsys, str(path), "--label", "label", "--output", str(tmp_path / "conf"))
    assert code == 0, err
    text = (tmp_path / "conf" / "features" / "arrays.yaml").read_text()
    f = yaml.safe_load(text)["features"]
    assert f["pixels"] == {"dtype": "uint8", "shape": [8, 8, 1], "encoding": "png", "preprocess": {"normalize": "auto"}}
    assert f["png"]["shape"] == [6, 5, 3] and f["png"]["encoding"] == "png"
    assert f["jpeg"]["shape"] == [12, 16, 3] and f["jpeg"]["encoding"] == "jpeg"
    assert "JPEG values, 12x16 with 3 channels (from their headers)" in text
    assert f["matrix"] == {"dtype": "float32", "shape": [2, 3], "preprocess": {"normalize": "auto"}}
    assert "blob" not in f and "not all PNG or JPEG images" in text
    assert "mask" not in f and "save them as 0 and 1" in text
    assert "- override /network: cnn" in (tmp_path / "conf" / "experiment" / "arrays.yaml").read_text()


def test_a_column_of_image_file_paths_is_an_image_feature(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    rows = ["picture,label"]
    for i in range(8):
        (tmp_path / "img" / f"{i}.png").write_bytes(encode_png(np.full((4, 6, 1), i, dtype=np.uint8)))
        rows.append(f"img/{i}.png,{i % 2}")
    p = proposal(tmp_path, capsys, "files.csv", "\n".join(rows) + "\n", "label")
    assert p["spec"]["features"]["picture"]["shape"] == [4, 6, 1]
    assert "PNG files, 4x6 with 1 channels" in p["text"]


# -- categories, ids and free text -------------------------------------------------------------


def _shop_csv(n: int = 3000) -> str:
    """Strings and whole numbers of every cardinality: categories, ids, codes, free text, identifiers."""
    rng = np.random.default_rng(3)
    lines = ["city,item,user,session,zip_code,area,productId,orderId,day,visits,amount,bio,y"]
    order_ids = rng.permutation(10**6)[:n]
    for i in range(n):
        user = f"u{i % 600}" if i < 1800 else f"guest{i}"  # 600 regulars 3 rows each, 1200 seen once
        zip_code = "" if i % 50 == 0 else f"{(i * 7) % 150:05d}"  # 2% blank
        bio = f"member {i} who likes {' and '.join(rng.choice(VOCABULARY, size=3))} things"
        lines.append(
            f"{['paris', 'rome', 'oslo', 'lima'][i % 4]},item{i % 1200},{user},s{i},{zip_code},0{100 + i % 40},"
            f"{(i % 500) * 3},{order_ids[i]},{1 + i % 28:02d},{(i * 37) % 300},{rng.lognormal(3, 1.2):.2f},{bio},"
            f"{i % 2}"
        )
    return "\n".join(lines) + "\n"


def test_many_distinct_strings_ids_and_codes_get_hash_buckets(tmp_path, capsys):
    p = proposal(tmp_path, capsys, "shop.csv", _shop_csv(), "y")
    f, text = p["spec"]["features"], p["text"]
    assert f["city"] == {"dtype": "string", "shape": [], "vocabulary": "auto"}
    assert "4 distinct strings in 3000 rows: a vocabulary, one-hot" in text
    # past 1000 distinct values: 2 x 1200 -> 4096 buckets, embedded by default
    assert f["item"] == {"dtype": "string", "shape": [], "hash_buckets": 4096}
    assert "1200 distinct strings in 3000 rows, more than 1000 for a vocabulary: ids, hashed" in text
    assert "# 2 x 1200, to a power of two; embedded in 64 dims (the default above 50 ids)" in text
    assert "# vocabulary: auto  # in place of hash_buckets: exact ids of the training values" in text
    # one word, mostly distinct, but most rows share their value: ids
    assert f["user"] == {"dtype": "string", "shape": [], "hash_buckets": 4096}
    assert "1800 distinct strings in 3000 rows, one word each, under 2 rows a value: ids" in text
    # whole numbers named like codes or written with leading zeros; blanks filled with the most frequent
    assert f["zip_code"] == {
        "dtype": "int64",
        "shape": [],
        "hash_buckets": 512,
        "missing": {"fill": "most_frequent", "indicator": False},
    }
    assert "147 distinct whole numbers in the 2940 rows that have one, named like a code ('zip_code')" in text
    assert f["area"] == {"dtype": "int64", "shape": [], "hash_buckets": 128}
    assert "40 distinct whole numbers in 3000 rows, written with leading zeros (0100): ids" in text
    assert "# 2 x 40, to a power of two; embedded in 24 dims" in text
    assert f["productId"]["hash_buckets"] == 1024 and "named like a code ('productId')" in text
    assert "# preprocess: {normalize: auto}  # in place of hash_buckets, if they are amounts" in text
    # numbers stay numbers: 2-digit days, counts without a code's name; a heavy tail gets a bins hint
    for name in ("day", "visits", "amount"):
        assert f[name]["preprocess"] == {"normalize": "auto"} and "hash_buckets" not in f[name]
    assert "# bins: {auto: 10}  # in place of preprocess: skewness" in text
    assert text.count("# bins:") == 1
    left = text.split("# Left out")[1]
    assert "session: 3000 distinct strings in 3000 rows, 3000 seen once: an identifier, not a category" in left
    assert "orderId: 3000 distinct whole numbers in 3000 rows, 3000 seen once: an identifier" in left
    assert f["bio"] == {"dtype": "string", "shape": [], "text": {}}
    assert "free text (3000 distinct of 3000, 10.0 words a value on average)" in text
    assert set(f) == {"city", "item", "user", "zip_code", "area", "productId", "day", "visits", "amount", "bio"}


def test_commented_alternatives_swapped_in_make_valid_specs(tmp_path, capsys):
    """Each `# key: value  # in place of other` line, uncommented in place of `other`, still loads."""
    text = proposal(tmp_path, capsys, "shop.csv", _shop_csv(), "y")["text"]
    spec, feature, swapped = yaml.safe_load(text), None, []
    for line in text.splitlines():
        if m := re.match(r"^  (\w+):$", line):
            feature = m.group(1)
        elif m := re.match(r"^    # (\w+): (.+?)\s+# in place of (\w+)", line):
            key, value, replaced = m.groups()
            entry = dict(spec["features"][feature])
            del entry[replaced]
            entry[key] = yaml.safe_load(value)
            FeatureSpec.from_dict({**spec, "features": {**spec["features"], feature: entry}})
            swapped.append((feature, key))
    assert sorted(swapped) == [
        ("amount", "bins"),
        ("area", "preprocess"),
        ("item", "vocabulary"),
        ("productId", "preprocess"),
        ("user", "vocabulary"),
        ("zip_code", "preprocess"),
    ]


def test_jsonl_ids_phrases_and_free_text(tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(400):
        rows.append(
            {
                "handle": f"h{i % 150}" if i < 300 else f"new{i}",  # 150 handles 2 rows each, 100 seen once
                "uuid": f"{rng.integers(0, 2**62):x}",
                "title": f"{rng.choice(VOCABULARY)} chair {i}",
                "review": f"arrived {' '.join(rng.choice(VOCABULARY, size=6))} and works (order {i})",
                "postcode": f"0{1000 + i % 40}",  # a string in JSON: a vocabulary
                "y": i % 3,
            }
        )
    p = proposal(tmp_path, capsys, "users.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n", "y")
    f, left = p["spec"]["features"], p["text"].split("# Left out")[1]
    assert f["handle"] == {"dtype": "string", "shape": [], "hash_buckets": 512}
    assert f["postcode"] == {"dtype": "string", "shape": [], "vocabulary": "auto"}
    assert "uuid: 400 distinct strings in 400 rows, 400 seen once: an identifier" in left
    assert f["title"] == f["review"] == {"dtype": "string", "shape": [], "text": {}}
    assert "short phrases (400 distinct of 400, 3.0 words a value on average)" in p["text"]
    assert "free text (400 distinct of 400, 11.0 words a value on average)" in p["text"]
    assert set(f) == {"handle", "postcode", "title", "review"}


def test_free_text_is_never_hashed_though_its_values_repeat(tmp_path, capsys):
    rng = np.random.default_rng(5)
    texts = [f"the parcel {k} came {' '.join(rng.choice(VOCABULARY, size=3))}" for k in range(1100)]
    rows = "".join(f"{texts[i % 1100]},{i % 7},{i % 2}\n" for i in range(2400))  # each text in 2 or 3 rows
    p = proposal(tmp_path, capsys, "notes.csv", "note,x,y\n" + rows, "y")
    assert "free text (1100 distinct of 2400, 7.0 words a value on average)" in p["text"]
    assert "hash_buckets" not in p["text"] and p["spec"]["features"]["note"] == {
        "dtype": "string",
        "shape": [],
        "text": {},
    }


@pytest.mark.parametrize(
    ("distinct", "buckets"), [(2, 4), (20, 64), (32, 64), (33, 128), (1500, 4096), (16384, 32768), (10**6, 32768)]
)
def test_hash_buckets_are_a_power_of_two_at_least_twice_the_distinct_values(distinct, buckets):
    assert infer_columns.hash_buckets(distinct) == buckets


# -- names, missing values, labels --------------------------------------------------------------


def test_headers_that_are_no_feature_names_are_mapped_with_column(tmp_path, capsys):
    header = ["sepal length (cm)", "od280/od315_of_diluted_wines", "2nd", "logits", "a b", "a_b", "Température", "y"]
    rows = [",".join(header)] + [",".join(f"{(i * (k + 3)) % 17}.5" for k in range(7)) + f",{i % 2}" for i in range(40)]
    p = proposal(tmp_path, capsys, "names.csv", "\n".join(rows) + "\n", "y")
    columns = {name: f.get("column") for name, f in p["spec"]["features"].items()}
    assert columns == {
        "sepal_length_cm": "sepal length (cm)",
        "od280_od315_of_diluted_wines": "od280/od315_of_diluted_wines",
        "column_2nd": "2nd",
        "logits_2": "logits",
        "a_b": "a b",
        "a_b_2": "a_b",
        "temperature": "Température",
    }
    assert 'column: "od280/od315_of_diluted_wines"  # the header is not a valid feature name' in p["text"]
    assert "'logits' names the model's output" in p["text"] and "the name is taken" in p["text"]


def test_blank_cells_get_a_fill_and_an_indicator_above_five_percent(tmp_path, capsys):
    rng = np.random.default_rng(1)
    lines = ["normal,skewed,few,count,kind,y"]
    for i in range(200):
        normal = "" if i % 10 == 0 else f"{rng.normal():.3f}"  # 10% blank
        skewed = "" if i % 10 == 1 else f"{rng.lognormal(0, 1.5):.3f}"
        few = "" if i == 5 else f"{rng.normal():.3f}"  # 0.5% blank
        count = "" if i % 20 == 0 else str(i % 7)
        kind = "" if i % 8 == 0 else ["x", "y", "z"][i % 3]
        lines.append(f"{normal},{skewed},{few},{count},{kind},{i % 3}")
    p = proposal(tmp_path, capsys, "gaps.csv", "\n".join(lines) + "\n", "y")
    f = p["spec"]["features"]
    assert f["normal"]["missing"] == {"fill": "mean", "indicator": True}
    assert f["skewed"]["missing"] == {"fill": "median", "indicator": True}
    assert f["few"]["missing"] == {"fill": "mean", "indicator": False}
    assert f["count"]["missing"] == {"fill": "median", "indicator": False}
    assert f["kind"]["missing"] == {"fill": "most_frequent", "indicator": True}
    assert "blank in 20 of 200 rows (10.0%): the median, as the tail (skewness" in p["text"]
    assert "blank in 1 of 200 rows (0.5%): the mean; too few to flag" in p["text"]
    assert "in the 180 rows that have one" in p["text"]


LABELS = [
    (["cat", "dog", "ant"] * 20, {"dtype": "string", "shape": [], "vocabulary": ["ant", "cat", "dog"]}, "accuracy"),
    ([0, 1, 2] * 20, {"dtype": "int64", "shape": [], "num_classes": 3}, "accuracy"),
    ([1, 2, 3] * 20, {"dtype": "int64", "shape": [], "num_classes": 4}, "accuracy"),
    ([0, 1] * 30, {"dtype": "int64", "shape": [], "task": "binary"}, "auc"),
    ([-1, 1] * 30, {"dtype": "string", "shape": [], "vocabulary": ["-1", "1"]}, "accuracy"),
    ([i * 0.37 for i in range(60)], {"dtype": "float32", "shape": [], "normalize": "auto"}, "mae"),
    (list(range(25)) * 40, {"dtype": "float32", "shape": [], "normalize": "auto"}, "mae"),  # 25 classes: too many
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 3, {"dtype": "float32", "shape": [], "normalize": "auto"}, "mae"),  # 3 rows each
]


@pytest.mark.parametrize(("values", "entry", "metric"), LABELS)
def test_the_label_decides_the_task_and_the_metric_early_stopping_watches(tmp_path, capsys, values, entry, metric):
    text = "x,target\n" + "".join(f"{i % 7},{v}\n" for i, v in enumerate(values))
    p = proposal(tmp_path, capsys, "labels.csv", text, "target")
    assert p["spec"]["labels"]["target"] == entry
    experiment = (p["dir"] / "experiment" / "labels.yaml").read_text()
    assert f"monitor: val_{metric}" in experiment


def test_the_label_vocabulary_holds_every_class_though_only_a_sample_is_kept(tmp_path, capsys):
    rows = "".join(f"{i},{'common' if i < 999 else 'rare'}\n" for i in range(1000))
    p = proposal(tmp_path, capsys, "long.csv", "x,y\n" + rows, "y", "--sample-rows", "50")
    assert p["spec"]["labels"]["y"]["vocabulary"] == ["common", "rare"]
    assert "a uniform sample of 50 rows" in p["text"]


# -- the config dir -----------------------------------------------------------------------------


def test_the_config_dir_holds_an_experiment_and_data_for_factory_train(tmp_path, capsys):
    rows = "".join(f"{i % 13},{i % 3}\n" for i in range(300))
    p = proposal(tmp_path, capsys, "small.csv", "x,y\n" + rows, "y", "--records", "records/small")
    data = yaml.safe_load((p["dir"] / "data" / "small.yaml").read_text())
    assert data == {
        "train": "records/small/train-*.tfrecord",
        "eval": "records/small/eval-*.tfrecord",
        "test": "records/small/test-*.tfrecord",
    }
    text = (p["dir"] / "experiment" / "small.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    experiment = yaml.safe_load(text)
    assert experiment["defaults"] == [
        {"override /features": "small"},
        {"override /network": "mlp"},
        {"override /data": "small"},
    ]
    assert experiment["train"] == {"batch_size": 16, "max_steps": 1500, "eval_every_steps": 50}
    assert "240 training rows: 15 steps an epoch" in text
    assert experiment["early_stop"]["monitor"] == "val_accuracy"
    assert "factory write --features" in p["out"] and "--split train=0.8,eval=0.1,test=0.1\n" in p["out"]
    assert f"factory-train --config-dir {p['dir']} experiment=small" in p["out"]


def test_names_of_shipped_configs_are_avoided(tmp_path, capsys):
    p = proposal(tmp_path, capsys, "iris.csv", "x,y\n" + "1,a\n2,b\n" * 10, "y", "--name", "flowers")
    assert (p["dir"] / "experiment" / "flowers.yaml").exists()
    code, out, err = init(capsys, str(tmp_path / "iris.csv"), "--label", "y", "--output", str(tmp_path / "c2"))
    assert code == 0 and "experiment=iris_csv" in out
    code, _, err = init(
        capsys, str(tmp_path / "iris.csv"), "--label", "y", "--output", str(tmp_path / "c3"), "--name", "iris"
    )
    assert code == 2 and "conf/experiment/iris.yaml" in err and not (tmp_path / "c3").exists()


def test_existing_files_are_kept_unless_overwrite(tmp_path, capsys):
    p = proposal(tmp_path, capsys, "t.csv", "x,y\n" + "1,a\n2,b\n" * 10, "y")
    spec_file = p["dir"] / "features" / "t.yaml"
    spec_file.write_text("mine")
    args = [str(tmp_path / "t.csv"), "--label", "y", "--output", str(p["dir"])]
    code, _, err = init(capsys, *args)
    assert code == 2 and "exist already; pass --overwrite" in err and spec_file.read_text() == "mine"
    assert init(capsys, *args, "--overwrite")[0] == 0
    assert spec_file.read_text().startswith("# Proposed by `factory init`")


# -- errors -------------------------------------------------------------------------------------

ERRORS = [
    ("empty.csv", b"", ["--label", "y"], ["empty.csv: the file is empty"]),
    ("header.csv", b"x,y\n", ["--label", "y"], ["header.csv: a header and no rows"]),
    ("ragged.csv", b"x,y\n1,a\n2,b,3\n", ["--label", "y"], ["ragged.csv line 3: 3 cells, but the header names 2"]),
    ("unknown.csv", b"x,species\n1,a\n", ["--label", "specie"], ["no column 'specie' (did you mean 'species'?)"]),
    ("nolabel.csv", b"x,species\n1,a\n", [], ["name the label with --label COLUMN; the columns are: x, species"]),
    ("blank.csv", b"x,y\n1,a\n2,\n3,b\n", ["--label", "y"], ["label column 'y' is blank in 1 of 3 rows"]),
    ("twice.csv", b"x,x,y\n1,2,a\n", ["--label", "y"], ["the header names column 'x' twice"]),
    ("latin1.csv", "x,y\n1,caf\xe9\n".encode("latin-1"), ["--label", "y"], ["not UTF-8 text", "save it with UTF-8"]),
    ("bad.jsonl", b'{"x": 1, "y": 2}\n{"x": \n', ["--label", "y"], ["bad.jsonl line 2: not valid JSON"]),
    ("one.csv", b"x,y\n1,a\n2,a\n", ["--label", "y"], ["the label 'y' is 'a' in every row"]),
    ("only.csv", b"y,id\na,1\nb,2\n", ["--label", "y"], ["no column besides the label 'y' can be an input"]),
    ("data.txt", b"x,y\n", ["--label", "y"], ["cannot tell the input format from the extension '.txt'"]),
    ("nokey.jsonl", b'{"x": 1, "z": 2}\n', ["--label", "y"], ["no key 'y' for --label; the keys are: x, z"]),
    (
        "named.csv",
        b"x,y\n1,a\n",
        ["--label", "y", "--name", "my-data"],
        ["--name: 'my-data' is not a valid name; try my_data"],
    ),
    ("missing.csv", None, ["--label", "y"], ["input file not found"]),
]


@pytest.mark.parametrize(("name", "content", "args", "messages"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, name, content, args, messages):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    start = time.perf_counter()
    code, out, err = init(capsys, str(path), *args, "--output", str(tmp_path / "conf"))
    assert time.perf_counter() - start < 0.5
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    for message in messages:
        assert message in err
    assert not (tmp_path / "conf").exists()


def test_init_loads_no_tensorflow(tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n" + "1,a\n2,b\n" * 10)
    code = f"""
import sys
sys.path.insert(0, {str(helpers.REPO)!r})
from factory.cli import main
assert main(["init", {str(tmp_path / "t.csv")!r}, "--label", "y", "--output", {str(tmp_path / "conf")!r}]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_long_lists_of_words_become_a_set(tmp_path, capsys):
    """Lists too long for an input per position (past 32 words) get `encode: multi_hot`: any length."""
    rng = np.random.default_rng(6)
    words = [f"w{i}" for i in range(300)]
    rows = [json.dumps({"tags": list(rng.choice(words, 40 + i % 20, replace=False)), "y": i % 2}) for i in range(400)]
    p = proposal(tmp_path, capsys, "long.jsonl", "\n".join(rows) + "\n", "y")
    tags = p["spec"]["features"]["tags"]
    assert tags["encode"] == "multi_hot" and tags["shape"] == [None] and "max_length" not in tags
    assert "too many for an input per position: the set of words, any length" in p["text"]
