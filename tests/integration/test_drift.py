"""`factory check --against`: new records against the training records of a real run and its export,
on scikit-learn's diabetes table (a fixed split; a shifted copy of the eval split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from factory import FeatureSpec
from factory.cli import main
from tests.helpers import TINY, compose

NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
SPEC = {
    "features": {
        **{name: {"dtype": "float32", "shape": [], "preprocess": {"normalize": "auto"}} for name in NAMES},
        "sex": {"dtype": "string", "shape": [], "vocabulary": "auto", "oov_buckets": 1},
        "bmi": {"dtype": "float32", "shape": [], "missing": {"fill": "median"}, "preprocess": {"normalize": "auto"}},
    },
    "labels": {"progression": {"dtype": "float32", "shape": []}},
}
# What the shifted copy changes: `bp` moved by 1.5 training std, 85% of `sex` set to 'male', a third
# more records without `bmi`; every other feature is the eval split's own.
SHIFTED = {("bp", "mean_shift"), ("bp", "js"), ("sex", "linf"), ("bmi", "missing")}


def write_sets(root: Path) -> dict[str, str]:
    """Train (3/4) and eval (1/4) splits of the diabetes table, and changed copies of the eval split."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    rng = np.random.default_rng(0)
    columns = {name: data.data[:, i].astype(np.float32) for i, name in enumerate(NAMES)}
    columns["sex"] = np.where(data.data[:, 1] == 1, "female", "male").astype(object)
    columns["bmi"][rng.random(len(data.target)) < 0.05] = np.nan  # a few blanks: missing values
    columns["progression"] = data.target.astype(np.float32)
    order = rng.permutation(len(data.target))
    train, held_out = order[: len(order) * 3 // 4], order[len(order) * 3 // 4 :]
    bp_std = float(np.std(columns["bp"][train]))

    def shifted(c, r):
        c["bp"] = c["bp"] + 1.5 * bp_std
        c["sex"] = np.where(r.random(len(c["sex"])) < 0.85, "male", c["sex"]).astype(object)
        c["bmi"][r.random(len(c["bmi"])) < 0.35] = np.nan

    def unknown(c, r):
        c["sex"] = np.where(r.random(len(c["sex"])) < 0.2, "unknown", c["sex"]).astype(object)

    def unlabelled(c, r):
        del c["progression"]

    sets = {"train": (train, None), "eval": (held_out, None), "shifted": (held_out, shifted)}
    sets |= {"unknown": (held_out, unknown), "unlabelled": (held_out, unlabelled)}
    spec = FeatureSpec.from_dict(SPEC).without_auto()  # the records hold plain strings and floats
    inputs = FeatureSpec.from_dict({"features": SPEC["features"]}).without_auto()  # no label: a serving log
    for name, (rows, change) in sets.items():
        part = {k: v[rows].copy() for k, v in columns.items()}
        if change is not None:
            change(part, np.random.default_rng(1))
        with (inputs if "progression" not in part else spec).writer(root / "data" / name) as w:
            w.write_many(part)
    return {name: str(root / "data" / f"{name}-*") for name in sets}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run (a few steps) trained on the train split, its export, and the record sets."""
    from factory.training.runner import train

    root = tmp_path_factory.mktemp("drift")
    sets = write_sets(root)
    config = compose(*TINY, "train.max_steps=20", "train.eval_every_steps=10", "early_stop.monitor=val_mae")
    config["features"] = SPEC
    config["data"] = {"train": sets["train"], "eval": sets["eval"]}
    train(config, run_dir=root / "run")
    return root / "run", sets


def check(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def crossed(capsys, against: Path, files: str, *options: str) -> tuple[int, set[tuple[str, str]], dict]:
    code, out, _ = check(capsys, "--against", str(against), "--json", *options, files)
    report = json.loads(out)
    return code, {(c["feature"], c["measure"]) for c in report["checks"] if c["crossed"]}, report


def test_the_eval_split_passes_and_a_shifted_copy_is_flagged(trained, capsys):
    run, sets = trained
    code, out, err = check(capsys, "--against", str(run), sets["eval"])
    assert code == 0, out + err
    assert "drift: all 33 checks within their thresholds: 111 records against the 331 training records" in out
    assert "note: not compared" not in out  # the eval split holds the label: it is compared too

    code, out, err = check(capsys, "--against", str(run), sets["shifted"])
    assert code == 1, out + err
    lines = [line for line in out.splitlines() if line.startswith("drift: ")]
    assert lines[:-1] == [
        "drift: sex: share of 'female' moved from 52.3% to 7.2% (threshold 10.0%; chance alone reaches 17.7% with "
        "111 records)",
        "drift: bmi: missing in 33.3% of records, 4.8% in training (threshold 5.0%; chance alone reaches 11.7% with "
        "111 records)",
        "drift: bp: mean moved 1.66 training std, from 94.1 to 117 (threshold 0.5)",
        "drift: bp: Jensen-Shannon distance 0.632 from the training histogram; 16.2% above the training maximum 133 "
        "(threshold 0.2; chance alone reaches 0.314 with 111 records)",
    ]
    assert lines[-1] == (
        "drift: 4 of 33 checks crossed their thresholds: 111 records against the 331 training records of the run "
        f"in {run}"
    )

    # Every measure of the unshifted split stays below its bar; the shifted ones are far above theirs.
    _, flagged, report = crossed(capsys, run, sets["eval"])
    assert flagged == set() and report["crossed"] == 0 and len(report["checks"]) == 33
    assert all(c["value"] <= max(c["threshold"], c["chance"]) for c in report["checks"])
    unshifted = {(c["feature"], c["measure"]): c["value"] for c in report["checks"]}
    _, flagged, report = crossed(capsys, run, sets["shifted"])
    assert flagged == SHIFTED
    shifted = {(c["feature"], c["measure"]): c["value"] for c in report["checks"]}
    # The copy moved `bp` by 1.5 training std from where the eval split already was.
    assert abs(shifted[("bp", "mean_shift")] - 1.5) <= unshifted[("bp", "mean_shift")] + 1e-6


def test_an_export_carries_the_same_reference(trained, capsys):
    run, sets = trained
    _, _, from_run = crossed(capsys, run, sets["shifted"])
    for export in (run / "export", run / "export" / "best" / "current"):
        code, flagged, report = crossed(capsys, export, sets["shifted"])
        assert code == 1 and flagged == SHIFTED
        assert report["checks"] == from_run["checks"]
        assert report["against"]["source"].startswith(f"the export {run / 'export' / 'best'}")
        assert crossed(capsys, export, sets["eval"])[:2] == (0, set())


def test_values_outside_the_vocabulary(trained, capsys):
    run, sets = trained
    code, out, _ = check(capsys, "--against", str(run), sets["unknown"])
    assert code == 1
    assert (
        "drift: sex: 18.0% of values outside the vocabulary of 2, 0.0% in training; most frequent: 'unknown' "
        "(threshold 5.0%; chance alone reaches 7.5% with 111 records)"
    ) in out.splitlines()
    assert crossed(capsys, run, sets["unknown"], "--threshold", "sex.oov=off", "--threshold", "linf=0.3")[:2] == (
        0,
        set(),
    )


def test_records_without_the_label_are_compared_without_it(trained, capsys):
    run, sets = trained
    code, out, err = check(capsys, "--against", str(run), sets["unlabelled"])
    assert code == 0, out + err
    assert "note: not compared: progression (a label the new records do not hold)" in out
    assert "all 30 checks within their thresholds" in out


def test_thresholds_set_per_feature(trained, capsys):
    run, sets = trained
    relaxed = ["--threshold", "bp.mean_shift=2", "--threshold", "bp.js=off", "--threshold", "sex.linf=0.6"]
    code, flagged, _ = crossed(capsys, run, sets["shifted"], *relaxed, "--threshold", "missing=0.4")
    assert (code, flagged) == (0, set())
    stricter = crossed(capsys, run, sets["eval"], "--threshold", "s5.mean_shift=0", "--max-missing-rate", "0.01")[1]
    assert stricter == {("bmi", "max_missing")}  # s5 moved less than chance allows: still quiet


def test_a_maximum_missing_rate_without_a_reference(trained, capsys, tmp_path):
    _, sets = trained
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(SPEC))
    code, out, _ = check(capsys, "--features", str(spec), "--max-missing-rate", "bmi=0.2", sets["shifted"])
    assert code == 1
    assert out.splitlines()[-2:] == [
        "missing: bmi: missing in 33.3% of records (maximum 20.0%)",
        "missing: 1 of 1 check crossed their thresholds: 111 records",
    ]
    assert check(capsys, "--features", str(spec), "--max-missing-rate", "0.2", sets["eval"])[0] == 0


def test_records_that_do_not_fit_still_fail_the_check(trained, capsys):
    run, _ = trained
    code, _, err = check(capsys, "--against", str(run), str(run.parent / "data" / "nothing-*"))
    assert code == 2 and "no record files match" in err
    spec = FeatureSpec.from_dict({"features": {"bp": {"dtype": "string", "shape": []}}})
    with spec.writer(run.parent / "data" / "strings") as w:
        w.write({"bp": "high"})
    code, _, err = check(capsys, "--against", str(run), str(run.parent / "data" / "strings-*"))
    assert code == 2 and "record 0" in err


def test_a_run_or_export_without_summaries_is_refused(trained, capsys, tmp_path):
    run, sets = trained
    older = tmp_path / "older"
    older.mkdir()
    shutil.copy(run / "config.yaml", older / "config.yaml")
    stats = json.loads((run / "statistics.json").read_text())
    del stats["summary"]
    (older / "statistics.json").write_text(json.dumps(stats))
    export = tmp_path / "export"
    shutil.copytree(run / "export" / "best" / "current", export / "best" / "1", symlinks=True)
    (export / "best" / "1" / "assets.extra" / "statistics.json").unlink()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    code, out, err = check(capsys, "--against", str(older), sets["eval"])
    assert (code, out) == (2, "")
    assert err == (
        f"error: {older / 'statistics.json'}: no `summary` key (the per-feature summaries of the training records "
        f"drift is measured against): the run in {older} was trained before factory kept them; retrain with this "
        "version of factory, or pass --against a run or export written by it\n"
    )
    code, out, err = check(capsys, "--against", str(export), sets["eval"])
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {export / 'best' / '1' / 'assets.extra' / 'statistics.json'}: not found: ")
    assert "retrain with this version of factory" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
