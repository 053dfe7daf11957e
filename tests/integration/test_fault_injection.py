"""Training killed with SIGKILL at ten seeded moments, some in the middle of a checkpoint or an export write.

After each kill: every export visible under ``export/<policy>/<version>`` loads and its two
signatures agree. After the last resume: ``metrics.jsonl`` holds each evaluation once, and
evaluations, test metrics and the final checkpoint equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from tests.helpers.predict import digits_test_records
from tests.helpers.resume import assert_same_run, evaluations, train_in_child

OVERRIDES = [
    "network=mlp",
    "network.hidden=[32]",
    "network.dropout=0.2",
    "train.batch_size=32",
    "train.max_steps=240",
    "train.eval_every_steps=20",
    "train.steps_per_execution=5",
    "train.progress=none",
    "train.deterministic=true",
    "seed=11",
    "early_stop.patience=100",
    "export.best.keep=2",
]
EVALS = 12
KILLS = 10
MODES = ("row", "delay", "export", "checkpoint")


def _writing(run_dir: Path, mode: str) -> bool:
    """True while the run is in the middle of writing an export (``mode='export'``) or a checkpoint."""
    if mode == "export":
        root = run_dir / "export"
        return root.is_dir() and any(p.name.startswith(".staging-") for p in root.iterdir())
    root = run_dir / "checkpoints"
    return root.is_dir() and any(p.name.endswith("_temp") for p in root.iterdir())


class KillAt:
    """The condition of one kill: after evaluation ``target`` has a row (and ``mode``'s moment came).

    Only rows this process wrote count: the metrics file must have changed since it started,
    so a kill never comes before the run has restored its checkpoint and gone on.
    """

    def __init__(self, run_dir: Path, target: int, mode: str, rng: random.Random):
        self.run_dir, self.target, self.mode = run_dir, target, mode
        self.delay = rng.uniform(0.0, 0.4)
        self.started = time.time()
        self.seen: float | None = None
        self.caught = False

    def _progressed(self) -> bool:
        metrics = self.run_dir / "metrics.jsonl"
        return metrics.exists() and metrics.stat().st_mtime > self.started

    def __call__(self) -> bool:
        if not self._progressed():
            return False
        done = evaluations(self.run_dir)
        if self.mode in ("export", "checkpoint"):
            if done >= self.target - (self.mode == "export") and _writing(self.run_dir, self.mode):
                self.caught = True
                return True
            return done >= self.target + 1  # the moment passed unseen: kill anyway, one evaluation on
        if done < self.target:
            return False
        if self.mode == "row":
            return True
        self.seen = self.seen or time.time()
        return time.time() - self.seen >= self.delay


def _check_exports(run_dir: Path, checked: set[str], records: list[bytes], pixels: np.ndarray) -> int:
    """Load every visible export not checked before; both signatures must give the same outputs."""
    from factory.serving.predictor import load_export  # defers TensorFlow

    count = 0
    for policy in sorted((run_dir / "export").glob("*")):
        if not policy.is_dir() or policy.name.startswith("."):
            continue
        for version in sorted(p for p in policy.iterdir() if p.name.isdigit() and not p.is_symlink()):
            manifest = version / "assets.extra" / "manifest.json"
            key = f"{version}:{manifest.stat().st_mtime_ns if manifest.exists() else 'none'}"
            if key in checked:
                continue
            assert manifest.exists(), f"{version} is visible without its manifest"
            predictor = load_export(version)
            dense = predictor.predict({"image": pixels})
            examples = predictor.predict_examples(records)
            assert dense.keys() == examples.keys()
            for name in dense:
                np.testing.assert_allclose(dense[name], examples[name], rtol=1e-5, atol=1e-6, err_msg=str(version))
            checked.add(key)
            count += 1
    return count


def test_ten_kills_at_seeded_moments_end_like_an_uninterrupted_run(tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "killed"
    train_in_child(straight, OVERRIDES)  # also writes the bundled digits for the checks below
    assert evaluations(straight) == EVALS
    _, records, pixels, _ = digits_test_records()
    records, pixels = records[:16], pixels[:16]

    rng = random.Random(20261201)
    targets = sorted(rng.sample(range(1, EVALS), KILLS))
    checked: set[str] = set()
    caught, loaded = [], 0
    for target in targets:
        kill = KillAt(run, target, rng.choice(MODES), rng)
        assert train_in_child(run, OVERRIDES, kill_when=kill).killed, f"the run ended before the kill at eval {target}"
        caught.append(f"{kill.mode}@{target}{'' if kill.mode in ('row', 'delay') or kill.caught else '(late)'}")
        loaded += _check_exports(run, checked, records, pixels)
    train_in_child(run, OVERRIDES)

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval"] for r in rows] == list(range(1, EVALS + 1)), "each evaluation once, in order"
    assert_same_run(straight, run)
    loaded += _check_exports(run, checked, records, pixels)
    assert loaded >= KILLS, f"only {loaded} exports were checked"
    assert any(c.startswith("export@") and "(late)" not in c for c in caught), f"no kill during an export: {caught}"
    print(f"kills: {', '.join(caught)}; {loaded} exports loaded and checked")
