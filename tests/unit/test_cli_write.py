"""`factory write` and `factory check`: usage errors, without TensorFlow."""

from __future__ import annotations

import pytest

from factory.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["write", "--features", "spec.yaml"],
        ["write", "--features", "s.yaml", "--input", "d.csv", "--output", "o", "--shards", "0"],
        ["write", "--features", "s.yaml", "--input", "d.csv", "--output", "o", "--compression", "lz4"],
        ["check", "--features", "s.yaml"],
        ["train"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err
