"""`factory init` on scikit-learn's bundled datasets, in their own headers: the proposed spec and
config dir take records from `factory write` and train with the real `factory-train
--config-dir DIR experiment=NAME`, unedited."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from factory.cli import main
from factory.features.spec import FeatureSpec
from tests.unit.test_cli_train import factory_train

SPLITS = {"train": range(8), "eval": (8,), "test": (9,)}


def _csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def write_dataset(name: str, path: Path, rows: range | None = None) -> None:
    """scikit-learn's ``name`` as a CSV in its own headers (digits: an NPZ of uint8 images), every row
    or those whose index modulo 10 is in ``rows``."""
    from sklearn import datasets

    if name == "digits":
        digits = datasets.load_digits()
        index = np.arange(len(digits.target))
        keep = np.ones(len(index), bool) if rows is None else np.isin(index % 10, rows)
        np.savez(path, image=digits.images.astype(np.uint8)[keep, :, :, None], label=digits.target[keep])
        return
    if name == "iris":
        bunch = datasets.load_iris()
        label, targets = "species", [bunch.target_names[y] for y in bunch.target]
    else:
        bunch = datasets.load_wine() if name == "wine" else datasets.load_diabetes(scaled=False)
        label, targets = "target", bunch.target.tolist()
    table = [[*map(float, x), y] for x, y in zip(bunch.data, targets, strict=True)]
    _csv(path, [*bunch.feature_names, label], [r for i, r in enumerate(table) if rows is None or i % 10 in rows])


# dataset: (file, label, experiment name, steps, test metric, threshold)
DATASETS = {
    "iris": ("iris.csv", "species", "iris_csv", 150, "test_accuracy", 0.8),
    "wine": ("wine.csv", "target", "wine", 100, "test_accuracy", 0.85),
    "diabetes": ("diabetes.csv", "target", "diabetes_csv", 200, "test_mae", 55.0),  # the mean's MAE: ~64
    "digits": ("digits.npz", "label", "digits_npz", 100, "test_accuracy", 0.85),
}


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_the_proposal_trains_without_edits(tmp_path, capsys, dataset):
    """The two commands `factory init` prints, run as printed (only training is shortened)."""
    file, label, name, steps, metric, threshold = DATASETS[dataset]
    conf, records = tmp_path / "conf", tmp_path / "records"
    write_dataset(dataset, tmp_path / file)
    assert main(["init", str(tmp_path / file), "--label", label, "--output", str(conf), "--records", str(records)]) == 0
    write, train = capsys.readouterr().out.split("next:\n")[1].splitlines()
    FeatureSpec.from_yaml(conf / "features" / f"{name}.yaml")
    assert write.split()[:2] == ["factory", "write"] and "--split train=0.8,eval=0.1,test=0.1" in write
    assert main(shlex.split(write)[1:]) == 0
    assert sorted(p.name for p in records.iterdir()) == [
        f"{split}-00000-of-00001.tfrecord" for split in ("eval", "test", "train")
    ]
    assert shlex.split(train) == ["factory-train", "--config-dir", str(conf), f"experiment={name}"]

    run = tmp_path / "run"
    result = factory_train(
        *shlex.split(train)[1:],
        f"train.max_steps={steps}",
        f"train.eval_every_steps={steps}",
        "train.progress=none",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    value = summary["test"][metric]
    assert value >= threshold if metric.endswith("accuracy") else value <= threshold, summary
    assert (Path(summary["exports"]["best"]) / "saved_model.pb").exists()


def test_record_files_are_read_from_their_examples(tmp_path, capsys):
    """A proposal from TFRecord files (tf.train.Example protos) matches the one from the CSV they came from."""
    write_dataset("iris", tmp_path / "iris.csv")
    assert main(["init", str(tmp_path / "iris.csv"), "--label", "species", "--output", str(tmp_path / "a")]) == 0
    spec_file = tmp_path / "a" / "features" / "iris_csv.yaml"
    for split, rows in SPLITS.items():
        write_dataset("iris", tmp_path / f"{split}.csv", rows)
        out = str(tmp_path / "records" / split)
        assert (
            main(["write", "--features", str(spec_file), "--input", str(tmp_path / f"{split}.csv"), "--output", out])
            == 0
        )
    pattern = str(tmp_path / "records" / "train-*.tfrecord")
    capsys.readouterr()
    assert main(["init", pattern, "--label", "species", "--output", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    from_csv = yaml.safe_load(spec_file.read_text())
    from_records = yaml.safe_load((tmp_path / "b" / "features" / "records.yaml").read_text())
    for entry in from_csv["features"].values():
        del entry["column"]  # the records hold the features under their names
    assert from_records == from_csv
    data = yaml.safe_load((tmp_path / "b" / "data" / "records.yaml").read_text())
    assert data == {
        "train": pattern,
        "eval": pattern.replace("train", "eval"),
        "test": pattern.replace("train", "test"),
    }
    assert "factory write" not in printed and "experiment=records" in printed

    held_out = str(tmp_path / "records" / "test-*.tfrecord")  # no train/eval siblings: evaluated on themselves
    assert main(["init", held_out, "--label", "species", "--output", str(tmp_path / "c"), "--name", "held"]) == 0
    assert "note: no eval records were found" in capsys.readouterr().out
    data = yaml.safe_load((tmp_path / "c" / "data" / "held.yaml").read_text())
    assert data == {"train": held_out, "eval": held_out, "test": None}


def test_hashed_ids_and_codes_train_without_edits(tmp_path, capsys):
    """Ids and codes proposed as `hash_buckets` (strings past 1000 values, a code with leading zeros), free text
    as `text`: the records are written and the network learns the label each postcode stands for."""
    rng = np.random.default_rng(0)
    secret = rng.integers(0, 2, size=60)  # the label of each postcode
    rows = []
    for i in range(3000):
        code = int(rng.integers(0, 60))
        rows.append(
            [
                f"{code * 131:05d}",  # 00000..07729: leading zeros
                f"item{int(rng.integers(0, 1500))}",  # 1500 items, past a vocabulary
                f"{rng.lognormal(3, 1.2):.2f}",
                f"order {i} arrived {' '.join(rng.choice(['late', 'early', 'broken', 'fine'], size=4))}",
                int(secret[code]),
            ]
        )
    _csv(tmp_path / "orders.csv", ["postcode", "item", "amount", "comment", "y"], rows)
    conf, records = tmp_path / "conf", tmp_path / "records"
    assert (
        main(["init", str(tmp_path / "orders.csv"), "--label", "y", "--output", str(conf), "--records", str(records)])
        == 0
    )
    out = capsys.readouterr().out
    spec = yaml.safe_load((conf / "features" / "orders.yaml").read_text())
    assert spec["features"]["postcode"] == {"dtype": "int64", "shape": [], "hash_buckets": 128}
    assert spec["features"]["item"]["hash_buckets"] == 4096
    assert spec["features"]["comment"] == {"dtype": "string", "shape": [], "text": {}}
    write, train = out.split("next:\n")[1].splitlines()
    assert main(shlex.split(write)[1:]) == 0
    run = tmp_path / "run"
    result = factory_train(
        *shlex.split(train)[1:], "train.max_steps=300", "train.eval_every_steps=300", "train.progress=none",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["test_accuracy"] >= 0.75, summary
