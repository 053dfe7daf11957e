"""``factory write --engine ray``: the blocks as Ray Data tasks write the shards the local engine writes,
byte for byte, and a bad row is the local error. One Ray instance of 2 CPUs serves the module: the
commands run here use it as it is, and the one in a subprocess joins it with ``--address``."""

from __future__ import annotations

import subprocess

import pyarrow.parquet as pq
import pytest

from factory.cli import main
from tests.helpers.run_dirs import BIN
from tests.helpers.write import files_in
from tests.integration.test_write_blocks import PARQUET_SPEC, SPEC, csv_table, parquet_rows, parquet_table


@pytest.fixture(scope="module")
def ray_instance():
    pytest.importorskip("ray")  # the `ray` extra
    from factory.cluster.ray_session import ray_session

    with ray_session(None, 2) as where:
        yield where


def _write(spec: str, data, output, *options: str) -> int:
    spec_file = data.parent / "spec.yaml"
    spec_file.write_text(spec)
    argv = ["write", "--features", str(spec_file), "--input", str(data), "--output", str(output), "--shards", "3"]
    return main([*argv, *options])


def _shards(prefix) -> list[bytes]:
    return [p.read_bytes() for p in sorted(prefix.parent.glob(prefix.name + "-*"))]


def test_ray_writes_the_local_shards_of_csv_and_parquet(tmp_path, capsys, ray_instance):
    csv = tmp_path / "in.csv"
    csv.write_text(csv_table(2000))
    split = ["--split", "train=0.5,eval=0.5", "--block-size", "8KB"]
    assert _write(SPEC, csv, tmp_path / "local", *split, "--workers", "1") == 0
    assert _write(SPEC, csv, tmp_path / "ray", *split, "--engine", "ray", "--workers", "2") == 0
    for part in ("train", "eval"):
        local = _shards(tmp_path / "local" / part)
        assert len(local) == 3 and _shards(tmp_path / "ray" / part) == local
    parquet = tmp_path / "in.parquet"
    pq.write_table(parquet_table(parquet_rows(1200)), parquet, row_group_size=250)
    assert _write(PARQUET_SPEC, parquet, tmp_path / "pl") == 0
    assert _write(PARQUET_SPEC, parquet, tmp_path / "pr", "--engine", "ray", "--workers", "2") == 0
    assert _shards(tmp_path / "pr") == _shards(tmp_path / "pl") and len(_shards(tmp_path / "pl")) == 3
    out = capsys.readouterr()
    assert out.out.count("wrote 1200 records") == 2 and out.err == ""


def test_a_bad_row_on_ray_is_the_local_error_and_nothing_is_written(tmp_path, capsys, ray_instance):
    lines = csv_table(1500).splitlines()
    lines[1200] = "x," + lines[1200].split(",", 1)[1]
    csv = tmp_path / "in.csv"
    csv.write_text("\n".join(lines) + "\n")
    assert _write(SPEC, csv, tmp_path / "o" / "x", "--block-size", "4KB", "--engine", "ray", "--workers", "2") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {csv} line 1201: feature 'a': string 'x' is not a number; expected float32 []"
    )
    assert files_in(tmp_path / "o") == []  # no shard, no partial file


def test_the_command_joins_a_running_cluster_by_address(tmp_path, ray_instance):
    import ray

    csv = tmp_path / "in.csv"
    csv.write_text(csv_table(300))
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert _write(SPEC, csv, tmp_path / "local") == 0
    command = [str(BIN / "factory"), "write", "--features", str(tmp_path / "spec.yaml"), "--input", str(csv)]
    address = ray.get_runtime_context().gcs_address
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "ray"), "--shards", "3", "--engine", "ray", "--address", address],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.startswith("wrote 300 records")
    assert _shards(tmp_path / "ray") == _shards(tmp_path / "local")
