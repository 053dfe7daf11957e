"""The statistics pass as Ray tasks over the shards (``compute_statistics(scan_with=scan_on_ray)``, ``factory stats
--engine ray``) gives what the pass in one process gives, bit for bit, bad records included. One Ray
instance (started by ``ray_session``) serves the module: the tests in this process use it as it is,
and the command line joins it with ``--address``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from factory import FeatureSpec, RecordError
from factory.cli import main
from factory.features.scan import compute_statistics, record_draws
from tests.helpers.run_dirs import BIN

SPEC = {
    "features": {
        "x": {"dtype": "float32", "shape": [2], "missing": "median", "preprocess": {"normalize": "auto"}},
        "n": {"dtype": "int64", "shape": [], "missing": "mean"},
        "age": {"dtype": "float32", "shape": [], "bins": {"auto": 5}},
        "seq": {"dtype": "float32", "shape": [None], "max_length": 3, "preprocess": {"normalize": "auto"}},
        "color": {"dtype": "string", "shape": [], "vocabulary": "auto", "missing": "most_frequent", "oov_buckets": 1},
        "word": {"dtype": "string", "shape": [], "vocabulary": "auto", "max_tokens": 20, "oov_buckets": 1},
    },
    "labels": {"y": {"dtype": "float32", "shape": []}},
}
# More values than a summary's sample holds (20,000), so that the samples of the shards are merged.
RECORDS = 12_000
COLORS = np.array(["red", "green", "blue", "red", "grey"], dtype=object)


def columns(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` records, about 10% of each feature missing (NaN rows, None strings, empty sequences)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * [3.0, 1e-3] + [1e4, 0.5]
    x[rng.random(n) < 0.1] = np.nan
    count = rng.integers(0, 50, size=n).astype(np.float64)
    count[rng.random(n) < 0.1] = np.nan
    seq = np.empty(n, dtype=object)
    seq[:] = [rng.normal(size=i % 5).astype(np.float32) for i in range(n)]
    return {
        "x": x,
        "n": count,
        "age": rng.gamma(3.0, 12.0, size=n).astype(np.float32),
        "seq": seq,
        "color": np.where(rng.random(n) < 0.1, None, COLORS[rng.integers(0, len(COLORS), size=n)]),
        "word": np.array([f"w{int(i)}" for i in rng.zipf(1.3, size=n) % 500], dtype=object),
        "y": rng.normal(size=n).astype(np.float32),
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three shards of the records, written with the spec's writer; their glob."""
    root = tmp_path_factory.mktemp("stats_ray")
    with FeatureSpec.from_dict(SPEC).without_auto().writer(root / "train", shards=3) as writer:
        writer.write_many(columns(RECORDS, 0))
    assert len(list(root.glob("train-*"))) == 3
    return str(root / "train-*")


def _on_ray(*args, **kwargs):
    from factory.cluster.ray_scan import scan_on_ray  # defers TensorFlow and Ray

    return scan_on_ray(*args, **kwargs, workers=2)


@pytest.fixture(scope="module")
def ray_instance():
    """One Ray instance of 2 CPUs for the tests in this process (``compute_statistics`` joins it)."""
    pytest.importorskip("ray")  # the `ray` extra
    from factory.cluster.ray_session import ray_session

    with ray_session(None, 2) as where:
        yield where


def test_ray_gives_the_local_statistics_bit_for_bit(shards, ray_instance):
    spec = FeatureSpec.from_dict(SPEC)
    local = compute_statistics(spec, shards)
    on_ray = compute_statistics(spec, shards, scan_with=_on_ray)
    assert on_ray == local
    assert json.dumps(on_ray, sort_keys=True) == json.dumps(local, sort_keys=True)
    assert local["records"] == RECORDS and len(local["files"]) == 3
    summary = local["summary"]
    assert summary["x"]["values"] > 20_000 and summary["seq"]["values"] > 20_000  # the samples were merged
    assert summary["x"]["missing"] > 0 and summary["color"]["missing"] > 0 and summary["seq"]["missing"] > 0
    features = local["features"]
    assert features["color"]["fill"] == ["red"]
    assert features["x"]["normalize"]["mean"][0] == pytest.approx(1e4, rel=1e-3)
    assert len(features["age"]["bins"]) == 4 and len(features["word"]["vocabulary"]) == 20


def test_a_bad_record_on_ray_is_the_local_record_error(tmp_path, shards, ray_instance):
    """A fourth file whose records hold 3 values of `x`: the task's RecordError (naming the record in
    its file), not Ray's wrapper."""
    spec = FeatureSpec.from_dict(SPEC)
    wide = FeatureSpec.from_dict({**SPEC, "features": {**SPEC["features"], "x": {"dtype": "float32", "shape": [3]}}})
    with wide.without_auto().writer(tmp_path / "wide") as writer:
        writer.write_many({**columns(4, 1), "x": np.ones((4, 3))})
    files = [shards, str(tmp_path / "wide-*")]
    with pytest.raises(RecordError) as local:
        compute_statistics(spec, files)
    with pytest.raises(RecordError) as on_ray:
        compute_statistics(spec, files, scan_with=_on_ray)
    assert type(on_ray.value) is RecordError
    assert str(on_ray.value) == str(local.value)
    assert str(local.value).startswith(
        f"{tmp_path / 'wide-00000-of-00001.tfrecord'}, record 0: feature 'x' holds 3 values, but float32 [2] holds 2"
    )


def test_a_records_sample_key_depends_on_its_place_alone():
    """Keys of records 5..24 of a file, drawn in one piece or in batches from any record on."""
    whole = record_draws(3, 5, 20)
    pieces = np.concatenate([record_draws(3, 5, 2), record_draws(3, 7, 9), record_draws(3, 16, 9)])
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_array_equal(record_draws(3, 0, 25)[5:], whole)
    assert not np.array_equal(record_draws(4, 5, 20), whole)  # another file, other keys
    assert ((whole >= 0) & (whole < 1)).all()


def test_factory_stats_on_ray_prints_the_local_report(tmp_path, shards, ray_instance, capsys):
    """``factory stats --engine ray`` in a process of its own, joining this module's Ray instance
    with ``--address``, and ``--engine local`` here: the same JSON report."""
    import ray

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    command = ["stats", "--features", str(spec_file), "--input", shards, "--json"]
    address = ray.get_runtime_context().gcs_address
    on_ray = subprocess.run(
        [str(BIN / "factory"), *command, "--engine", "ray", "--workers", "2", "--address", address],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert main(command) == 0
    local = capsys.readouterr().out
    assert on_ray.stdout == local
    report = json.loads(local)
    assert report["records"] == RECORDS and report["features"]["word"]["statistics"]["vocabulary"]


def test_engine_ray_without_ray_exits_2_before_tensorflow_or_ray_loads(tmp_path, shards):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["ray"] = None  # as if Ray were not installed
        from factory.cli import main
        status = main(["stats", "--features", {str(spec_file)!r}, "--input", {shards!r}, "--engine", "ray"])
        loaded = [m for m, module in sys.modules.items() if module and m.split(".")[0] in ("tensorflow", "ray")]
        print(json.dumps([status, loaded]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, []]
    assert out.stderr.strip().splitlines() == [
        "error: --engine ray needs Ray, which is not installed: pip install 'factory[ray]'"
    ]
    wrong = subprocess.run(
        [str(BIN / "factory"), "stats", "--features", str(spec_file), "--input", shards, "--address", "host:6379"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and wrong.stderr.strip() == "error: --address: only with --engine ray"
