"""A full disk while training: one line naming the path and the free space, exit 2, nothing half-written,
and the same command resumes once there is space again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import TINY
from tests.helpers.disk import fill, small_disk, unfill
from tests.helpers.run_dirs import BIN

RUN = [*TINY, "seed=2", "train.deterministic=true", "early_stop.patience=100"]
# What a failed write may leave, and must not: temporary files and directories of every writer.
LEFTOVERS = ("*_temp", ".staging-*", "*.new", "*.tmp", ".*.tmp", "*.tempstate*")


def factory_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "factory-train"), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


# How much room each attempt has, and what it then cannot write. Each fails, changing nothing;
# the last run, with room again, resumes where the 40 steps ended.
ATTEMPTS = [
    ("the first write", 0, []),  # Hydra's record of the job
    ("checkpoint", 40_000, ["export.best.enabled=false"]),  # the best weights or ckpt-N
    ("export", 60_000, []),  # room for a checkpoint, not for an export
]


def test_a_full_disk_stops_with_one_line_and_the_next_run_resumes(tmp_path):
    with small_disk(tmp_path / "disk", size="6m") as disk:
        run = disk / "run"
        started = factory_train(*RUN, "train.max_steps=40", f"hydra.run.dir={run}", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        checkpoints = sorted(p.name for p in (run / "checkpoints").glob("ckpt-*"))
        args = [*RUN, "train.max_steps=100", f"hydra.run.dir={run}"]
        for writer, free, extra in ATTEMPTS:
            unfill(disk)
            fill(disk, leave=free)
            failed = factory_train(*args, *extra, cwd=tmp_path)
            assert failed.returncode == 2, failed.stdout + failed.stderr
            errors = [line for line in failed.stderr.splitlines() if not line.startswith("warning:")]
            assert len(errors) == 1 and "Traceback" not in failed.stderr + failed.stdout, failed.stderr
            assert errors[0].startswith(f"error: no space left on the device while writing {run}"), errors[0]
            assert "MiB free in" in errors[0] and "run the same command again" in errors[0]
            assert writer == "the first write" or writer in errors[0], (writer, errors[0])
            assert not [p for pattern in LEFTOVERS for p in run.rglob(pattern)], f"{writer}: files left behind"
            assert set(checkpoints) <= {p.name for p in (run / "checkpoints").glob("ckpt-*")}, "a checkpoint went"

        unfill(disk)
        resumed = factory_train(*args, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["eval"] for r in rows] == [1, 2, 3, 4, 5]
        assert json.loads((run / "summary.json").read_text())["steps"] == 100
