"""Drift measures on hand-made summaries with known answers, thresholds from the command line, and the
errors of `factory check --against`, all before TensorFlow loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from factory import ConfigError, FeatureSpec
from factory.cli import main
from factory.cli.check import parse_thresholds
from factory.features import drift
from factory.features.drift import MEASURES, Observed, Thresholds, bin_shares, compare, js_chance, js_distance
from tests.helpers import import_graph

SPEC = FeatureSpec.from_dict(
    {
        "features": {
            "x": {"dtype": "float32", "shape": []},
            "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green", "blue"], "oov_buckets": 1},
            "tag": {"dtype": "string", "shape": [], "missing": {"fill": "constant", "value": "?"}},
        },
        "labels": {"y": {"dtype": "int64", "shape": [], "num_classes": 2}},
    }
)


def test_drift_imports_no_tensorflow():
    assert import_graph.reaches("factory.features.drift", import_graph.edges(), {"tensorflow", "keras"}) is None


# -- the measures -----------------------------------------------------------------------------------


def test_jensen_shannon_distance():
    assert js_distance([0.25, 0.75], [0.25, 0.75]) == 0.0
    assert js_distance([1, 0], [0, 1]) == 1.0
    # m = (0.75, 0.25): JSD = (0.5 log2(2/3) + 0.5 log2 2 + log2(4/3)) / 2 = 0.3113, its root 0.5579.
    assert js_distance([0.5, 0.5], [1, 0]) == pytest.approx(
        math.sqrt((0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2)
    )
    assert js_distance([2, 2], [4, 0]) == js_distance([0.5, 0.5], [1, 0])  # counts are normalised
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.random(8), rng.random(8)
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_new_values_are_counted_in_the_training_bins_with_open_ends():
    edges = [0.0, 1.0, 2.0, 3.0]
    # below | [0, 1) | [1, 2) | [2, 3] (closed) | above
    shares = bin_shares(edges, np.array([-1.0, 0.0, 0.5, 1.0, 2.5, 3.0, 4.0]))
    np.testing.assert_allclose(shares * 7, [1, 2, 1, 2, 1])
    # Within the edges, exactly as np.histogram counts (what the training summary's fractions are).
    values = np.random.default_rng(1).normal(size=1000)
    edges = np.quantile(values, np.linspace(0, 1, 21))
    counts, _ = np.histogram(values, bins=edges)
    np.testing.assert_allclose(bin_shares(edges, values), [0, *(counts / 1000), 0])
    # One value seen in training: its bin holds it, the open bins the rest.
    np.testing.assert_allclose(bin_shares([2.0, 2.0], np.array([1.0, 2.0, 2.0, 3.0])), [0.25, 0.5, 0.25])


def test_the_chance_level_of_the_jensen_shannon_distance():
    assert js_chance(1, 100, 100) == 0.0
    # 21 bins: the chi-square quantile of 20 degrees of freedom at 0.999 is 45.315 (tables).
    assert js_chance(21, 111, 331) == pytest.approx(math.sqrt(45.315 / (8 * math.log(2) * 111 * 331 / 442)), rel=2e-3)
    assert js_chance(22, 10_000, 10_000) < 0.05 < js_chance(22, 1000, 1000) < js_chance(22, 100, 100)
    # Calibration: two samples of one distribution rarely pass it; a shift of 1 std always does.
    rng = np.random.default_rng(0)
    quantiles = np.linspace(0, 1, 21)
    passed = shifted = 0
    for _ in range(500):
        ref, new = rng.normal(size=600), rng.normal(size=200)
        edges = np.unique(np.quantile(ref, quantiles))
        counts, _ = np.histogram(ref, bins=edges)
        p = np.array([0, *(counts / 600), 0])
        for shift in (0.0, 1.0):
            q = bin_shares(edges, new + shift)
            beyond = js_distance(p, q) > js_chance(int(np.count_nonzero((p > 0) | (q > 0))), 200, 600)
            passed += beyond and not shift
            shifted += beyond and bool(shift)
    assert passed <= 5 and shifted == 500


def test_mean_shift_in_training_standard_deviations():
    value, chance, text = drift.mean_shift({"mean": 10.0, "std": 2.0}, {"mean": 13.0, "std": 4.0}, n=100, m=400)
    assert value == 1.5 and text == "mean moved 1.5 training std, from 10 to 13"
    assert chance == pytest.approx(3.2905 * math.sqrt(4 / 100 + 1 / 400), rel=1e-4)
    assert drift.mean_shift({"mean": 3.0, "std": 0.0}, {"mean": 3.0, "std": 1.0}, 10, 10)[0] == 0.0
    value, chance, text = drift.mean_shift({"mean": 3.0, "std": 0.0}, {"mean": 3.5, "std": 0.0}, 10, 10)
    assert (value, chance) == (math.inf, 0.0) and text.endswith("every training value was 3")


def number(records=1000, missing=0, mean=2.0, std=1.118, edges=(0.0, 1.0, 2.0, 3.0, 4.0)):
    fractions = [1 / (len(edges) - 1)] * (len(edges) - 1)
    return {"role": "feature", "dtype": "float32", "records": records, "missing": missing, "values": records - missing,
            "mean": mean, "std": std, "histogram": {"edges": list(edges), "fractions": fractions}}  # fmt: skip


def strings(counts: dict[str, int], records=None, missing=0, distinct=None, role="feature"):
    values = sum(counts.values())
    top = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))
    return {"role": role, "dtype": "string", "records": records or values + missing, "missing": missing,
            "values": values, "distinct": distinct or len(top), "top": [list(vc) for vc in top]}  # fmt: skip


def measured(comparison) -> dict[tuple[str, str], float]:
    return {(m.feature, m.measure): m.value for m in comparison.measurements}


def test_every_measure_on_known_summaries():
    x = np.random.default_rng(0).uniform(1, 5, size=1000)  # uniform on [0, 4] moved by 1
    reference = {"x": number(), "color": strings({"red": 600, "green": 400}), "tag": strings({"a": 900}, missing=100)}
    new = {
        "x": Observed(number(mean=float(x.mean()), std=float(x.std())), values=x),
        "color": Observed(
            strings({"red": 300, "green": 500, "pink": 200}), counts={"red": 300, "green": 500, "pink": 200}
        ),
        "tag": Observed(strings({"a": 700}, missing=300), counts={"a": 700}),
    }
    comparison = compare(SPEC, reference, new, Thresholds())
    values = measured(comparison)
    # Shares of x: [0, 0, 1/4, 1/4, 1/4 (closed), 1/4 above] against [0, 1/4, 1/4, 1/4, 1/4, 0]: JSD 1/4.
    assert values[("x", "js")] == pytest.approx(0.5, abs=0.02)
    assert values[("x", "mean_shift")] == pytest.approx(abs(x.mean() - 2) / 1.118)
    assert values[("color", "linf")] == pytest.approx(0.3)  # red: 60% -> 30%
    assert values[("color", "oov")] == pytest.approx(0.2)  # pink
    assert values[("tag", "missing")] == pytest.approx(0.2)
    assert ("tag", "oov") in values and values[("tag", "oov")] == 0.0  # no vocabulary: the training values (all listed)
    assert values[("x", "missing")] == values[("color", "missing")] == 0.0
    assert comparison.skipped == {"y": "no training summary"}
    assert {(m.feature, m.measure) for m in comparison.crossed} == {
        ("x", "js"), ("x", "mean_shift"), ("color", "linf"), ("color", "oov"), ("tag", "missing")
    }  # fmt: skip
    lines = {m.measure: m.line(1000) for m in comparison.crossed if m.feature == "color"}
    assert lines == {
        "linf": "drift: color: share of 'red' moved from 60.0% to 30.0% (threshold 10.0%)",
        "oov": "drift: color: 20.0% of values outside the vocabulary of 3, 0.0% in training; most frequent: 'pink' "
        "(threshold 5.0%)",
    }


def test_the_same_changes_in_a_few_records_are_chance():
    reference = {"color": strings({"red": 6, "green": 4})}
    new = {"color": Observed(strings({"red": 3, "green": 7}), counts={"red": 3, "green": 7})}
    comparison = compare(SPEC, reference, new, Thresholds())
    linf = next(m for m in comparison.measurements if m.measure == "linf")
    assert linf.value == pytest.approx(0.3) and linf.chance > 0.6 and not linf.crossed
    assert "chance alone reaches" in linf.line(10)


def test_shares_beyond_the_listed_values_count_only_what_they_must():
    # 150 distinct training values, the 100 most frequent listed: an unlisted one held at most 4 of 1000.
    listed = {"big": 500, **{f"v{i}": 4 for i in range(99)}}
    reference = {"tag": {**strings(listed), "values": 1000, "records": 1000, "distinct": 150}}
    now = {"big": 440, "new": 60, **{f"v{i}": 4 for i in range(99)}}
    comparison = compare(SPEC, reference, {"tag": Observed(strings(now), counts=now)}, Thresholds())
    values = measured(comparison)
    assert values[("tag", "linf")] == pytest.approx(60 / 896 - 4 / 1000)  # 'new' rose by at least this much
    assert ("tag", "oov") not in values  # not every training value is known: no vocabulary to speak of


def test_good_turing_expects_values_seen_once_to_be_followed_by_new_ones():
    reference = {"tag": strings({"a": 5, "b": 1, "c": 1})}
    now = {"a": 5, "d": 2}
    comparison = compare(SPEC, reference, {"tag": Observed(strings(now), counts=now)}, Thresholds())
    oov = next(m for m in comparison.measurements if m.measure == "oov")
    assert oov.value == pytest.approx(2 / 7 - 2 / 7)
    assert oov.text == "28.6% of values never seen in training (3 values), about 28.6% expected; most frequent: 'd'"


def test_labels_count_only_when_the_new_records_hold_them():
    reference = {"y": {**number(edges=(0.0, 1.0)), "role": "label", "dtype": "int64"}}
    absent = Observed({**number(missing=1000), "role": "label", "dtype": "int64", "mean": None}, values=np.zeros(0))
    assert compare(SPEC, reference, {"y": absent}, Thresholds()).skipped == {
        "x": "no training summary", "color": "no training summary", "tag": "no training summary",
        "y": "a label the new records do not hold",
    }  # fmt: skip
    wrong = Observed({**number(), "dtype": "float32", "role": "label"}, values=np.zeros(10))
    assert compare(SPEC, reference, {"y": wrong}, Thresholds()).skipped["y"] == "int64 in training, float32 now"


# -- thresholds ---------------------------------------------------------------------------------------


def test_thresholds_default_then_global_then_per_feature():
    assert {k: m.default for k, m in MEASURES.items()} == {
        "mean_shift": 0.5, "js": 0.2, "linf": 0.1, "oov": 0.05, "missing": 0.05, "max_missing": None,
    }  # fmt: skip
    options = [
        ("--threshold", "js=0.3"),
        ("--threshold", "x.js=0.5"),
        ("--threshold", "x.mean_shift=off"),
        ("--threshold", "js=0.25"),
        ("--max-missing-rate", "0.1"),
        ("--max-missing-rate", "tag=0.5"),
        ("--threshold", "color.missing=OFF"),
    ]
    t = parse_thresholds(options, SPEC)
    assert (t.of("y", "js"), t.of("x", "js"), t.of("x", "mean_shift"), t.of("y", "mean_shift")) == (
        0.25,
        0.5,
        None,
        0.5,
    )
    assert (t.of("x", "max_missing"), t.of("tag", "max_missing"), t.of("color", "missing")) == (0.1, 0.5, None)
    assert t.max_missing and not Thresholds().max_missing


def test_threshold_options_are_checked_all_at_once():
    options = [
        ("--threshold", "jss=0.3"),
        ("--threshold", "colr.linf=0.2"),
        ("--threshold", "x.js=high"),
        ("--threshold", "js=1.5"),
        ("--threshold", "color.mean_shift=1"),
        ("--threshold", "linf"),
        ("--max-missing-rate", "tag=-1"),
        ("--threshold", "mean_shift=3"),
    ]
    with pytest.raises(ConfigError) as err:
        parse_thresholds(options, SPEC)
    measures = "measures: mean_shift, js, linf, oov, missing, max_missing"
    assert err.value.problems == [
        f"--threshold jss=0.3: no measure 'jss' (did you mean 'js'?); {measures}",
        "--threshold colr.linf=0.2: no feature 'colr' (did you mean 'color'?); features: x, color, tag, y",
        "--threshold x.js=high: expected a number from 0 to 1 or 'off', got 'high'",
        "--threshold js=1.5: expected a number from 0 to 1 or 'off', got '1.5'",
        "--threshold color.mean_shift=1: mean_shift does not apply to 'color', a string feature; its measures: "
        "linf, oov, missing, max_missing",
        f"--threshold linf: expected [NAME.]MEASURE=VALUE; {measures}",
        "--max-missing-rate tag=-1: expected a number from 0 to 1 or 'off', got '-1'",
    ]
    with pytest.raises(ConfigError, match=r"--threshold js=0.3: drift is measured against the training records; add"):
        parse_thresholds([("--threshold", "js=0.3"), ("--max-missing-rate", "0.2")], SPEC, against=False)


# -- `factory check` errors, before TensorFlow -------------------------------------------------------


def run_check(capsys, *argv):
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_dir(tmp_path, stats=None, config=True):
    run = tmp_path / "run"
    run.mkdir()
    if config:
        (run / "config.yaml").write_text(json.dumps({"features": SPEC.to_dict(), "network": {"name": "mlp"}}))
    if stats is not None:
        (run / "statistics.json").write_text(json.dumps(stats))
    return run


def test_a_run_without_statistics_is_refused(tmp_path, capsys):
    run = run_dir(tmp_path)
    code, out, err = run_check(capsys, "--against", str(run), "records-*")
    assert (code, out) == (2, "")
    assert err == (
        f"error: {run / 'statistics.json'}: not found: the run in {run} was trained before factory kept the "
        "statistics of its training records; retrain with this version of factory, or pass --against a run or "
        "export written by it\n"
    )
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing written


def test_statistics_without_summaries_are_refused(tmp_path, capsys):
    run = run_dir(tmp_path, {"format": 1, "records": 3, "features": {}})
    code, _, err = run_check(capsys, "--against", str(run), "records-*")
    assert code == 2 and f"error: {run / 'statistics.json'}: no `summary` key" in err and "retrain" in err


def test_an_export_without_statistics_is_refused(tmp_path, capsys):
    version = tmp_path / "export" / "best" / "3"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "assets.extra" / "manifest.json").write_text(json.dumps({"feature_spec": SPEC.to_dict()}))
    code, _, err = run_check(capsys, "--against", str(tmp_path / "export"), "records-*")
    assert code == 2
    assert err.startswith(f"error: {version / 'assets.extra' / 'statistics.json'}: not found: the export {version} ")


def test_what_is_neither_a_run_nor_an_export(tmp_path, capsys):
    code, _, err = run_check(capsys, "--against", str(tmp_path / "nowhere"), "records-*")
    assert code == 2 and err.startswith(f"error: --against {tmp_path / 'nowhere'}: does not exist; pass a run dir")
    code, _, err = run_check(capsys, "--against", str(tmp_path), "records-*")
    assert code == 2 and "neither a run dir (no statistics.json or config.yaml) nor a dir holding an export" in err
    code, _, err = run_check(capsys, "records-*")
    assert code == 2 and "--features: required, unless --against names a run or export" in err


def test_bad_thresholds_stop_before_the_records_are_read(tmp_path, capsys):
    run = run_dir(tmp_path, {"format": 1, "records": 1, "features": {}, "summary": {}})
    code, _, err = run_check(capsys, "--against", str(run), "--threshold", "x.linf=0.2", "missing-*")
    assert code == 2 and err == (
        "error: invalid config: --threshold x.linf=0.2: linf does not apply to 'x', a number feature; its measures: "
        "mean_shift, js, missing, max_missing\n"
    )
