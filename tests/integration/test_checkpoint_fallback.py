"""A damaged newest checkpoint: reported by file and reason, moved aside, and the run resumes from an older one.

The run was killed after its third evaluation; the resumed run ends exactly like an
uninterrupted one, whichever checkpoint it had to fall back to.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY
from tests.helpers.resume import assert_same_run, metric_rows, train_in_child

OVERRIDES = [
    *TINY,
    "train.max_steps=100",
    "train.deterministic=true",
    "seed=4",
    "network.dropout=0.1",
    "train.keep_checkpoints=5",
    "early_stop.patience=100",
]


def _listed(run: Path) -> str | None:
    """The newest checkpoint the state file lists (the moment after a save is complete)."""
    state = run / "checkpoints" / "checkpoint"
    text = state.read_text() if state.exists() else ""
    match = re.search(r'^model_checkpoint_path: "([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else None


def _newest(run: Path) -> Path:
    return max((run / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.stem.split("-")[1])).with_suffix("")


def _truncate_data(run: Path) -> str:
    data = next(_newest(run).parent.glob(_newest(run).name + ".data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return data.name.split(".")[0]


def _delete_index(run: Path) -> str:
    newest = _newest(run)
    newest.with_name(newest.name + ".index").unlink()
    return newest.name


def _delete_newest(run: Path) -> str:
    newest = _newest(run)
    for path in newest.parent.glob(newest.name + ".*"):
        path.unlink()
    return newest.name


def _tear_metrics(run: Path) -> str:
    path = run / "metrics.jsonl"
    path.write_text(path.read_text() + '{"eval": 4, "step": 8')
    return "metrics.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fallback")
    train_in_child(root / "straight", OVERRIDES)
    killed = root / "killed"
    stop = train_in_child(
        killed,
        OVERRIDES,
        kill_when=lambda: _listed(killed) == "ckpt-60",
    )
    assert stop.killed and not (killed / "summary.json").exists()
    return root


@pytest.mark.parametrize("damage", [_truncate_data, _delete_index, _delete_newest, _tear_metrics])
def test_a_damaged_run_resumes_from_what_reads_back(runs, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(runs / "killed", run, symlinks=True)
    newest = _newest(run).name
    what = damage(run)
    err = train_in_child(run, OVERRIDES).stderr
    assert "Traceback" not in err and "does not match" not in err
    if damage is _tear_metrics:
        assert "metrics.jsonl: cut" in err and "mid-write" in err
    else:
        line = next(line for line in err.splitlines() if "is damaged" in line)
        assert what in line and "resuming from ckpt-" in line
        if damage is not _delete_newest:  # what is left of it is kept for a look, never deleted
            assert {p.name.split(".")[0] for p in (run / "checkpoints" / "damaged").iterdir()} == {newest}
    assert_same_run(runs / "straight", run)
    assert [r["eval"] for r in metric_rows(run)] == [1, 2, 3, 4, 5]
