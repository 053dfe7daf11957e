"""``normalize: auto`` and ``vocabulary: auto``: statistics computed once per run directory.

``resolve_statistics`` runs one pass over the training records
(``compute_statistics``, see ``factory.features.scan`` for what is computed)
once per run directory and keeps the result in ``RUN_DIR/statistics.json`` (a
plain JSON dict, so a checkpoint can carry it as well); a resumed run reads the
file instead of recomputing. The constants then enter the spec
(``FeatureSpec.with_statistics``), and from there the training pipeline and the
exported signatures alike.

``summarize`` (``factory.features.profile``) gives the per-feature summaries of
``factory stats``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from factory.errors import ConfigError
from factory.features.profile import TOP_VALUES, summarize
from factory.features.scan import FORMAT, Moments, compute_statistics, declared
from factory.features.spec import FeatureSpec

log = logging.getLogger("factory")

STATISTICS_FILE = "statistics.json"


def load_statistics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``statistics.json``; ``ConfigError`` naming the file when it is not one."""
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{path}: cannot read the statistics ({err}); delete the file to compute them again from data.train"
        ) from None
    if not isinstance(stats, dict) or stats.get("format") != FORMAT or not isinstance(stats.get("features"), dict):
        raise ConfigError(
            f"{path}: not a statistics file of format {FORMAT}; delete it to compute the statistics again from data.train"
        )
    return stats


def statistics_problems(spec: FeatureSpec, stats: Mapping[str, Any]) -> list[str]:
    """How ``spec``'s ``auto`` features differ from those ``stats`` were computed for (empty: they match)."""
    problems = []
    stored = stats.get("features", {})
    for f in spec.auto_features:
        entry = stored.get(f.name)
        now = declared(f)
        if entry is None:
            problems.append(f"features.{f.name}: `{f.auto_statistic}: auto` now, but the statistics were computed without it")
            continue
        before = entry.get("declared", {})
        changed = [f"{key} {before.get(key)!r} -> {now[key]!r}" for key in now if before.get(key) != now[key]]
        changed += [f"{key} {before[key]!r} -> (none)" for key in before if key not in now]
        if changed:
            problems.append(f"features.{f.name}: changed since the statistics were computed: {', '.join(changed)}")
    auto = {f.name for f in spec.auto_features}
    for name in stored:
        if name not in auto:
            problems.append(f"features.{name}: has statistics, but is no longer `auto` in the spec")
    return problems


def resolve_statistics(
    spec: FeatureSpec, files: str | Sequence[str], compression: str | None, run_dir: str | os.PathLike,
) -> FeatureSpec:
    """``spec`` with its ``auto`` statistics filled in, computed once per run directory.

    If ``run_dir/statistics.json`` exists (a resumed run, or a re-run) it is
    read, and must have been computed for the same ``auto`` declarations
    (``ConfigError`` otherwise: start a new run dir or delete the file).
    Otherwise one pass over ``files`` (the training records; ``compression``
    None infers it per file) computes them and the file is written atomically.
    A vocabulary that leaves training values out needs ``oov_buckets``
    (``ConfigError`` before anything is written).
    """
    path = Path(run_dir) / STATISTICS_FILE
    if path.exists():
        stats = load_statistics(path)
        problems = statistics_problems(spec, stats)
        if problems:
            problems.append(
                f"{STATISTICS_FILE}: the feature spec changed since the statistics were computed; "
                f"start a new run dir, or delete {path} to compute them again from data.train"
            )
            raise ConfigError(problems, str(path))
        log.info(f"reusing the statistics in {path} (from {stats['records']} training records)")
        return spec.with_statistics(stats)

    started = time.perf_counter()
    stats = compute_statistics(spec, files, compression)
    seconds = time.perf_counter() - started
    problems = _left_out_problems(spec, stats)
    if problems:
        raise ConfigError(problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATISTICS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    os.replace(tmp, path)
    log.info(f"computed statistics from {stats['records']} training records in {seconds:.2f} s: {describe(stats)}; saved in {path}")
    return spec.with_statistics(stats)


def _left_out_problems(spec: FeatureSpec, stats: Mapping[str, Any]) -> list[str]:
    """The vocabularies that leave training values out without ``oov_buckets`` to put them in."""
    problems = []
    for f in spec.auto_features:
        entry = stats["features"][f.name]
        left = entry.get("left_out", {})
        if left.get("values") and not f.oov_buckets:
            problems.append(
                f"features.{f.name}.oov_buckets: the vocabulary keeps {len(entry['vocabulary'])} of {entry['distinct']} "
                f"values and leaves out {left['distinct']} (seen {left['values']} times in the training records), "
                "which would stop training; set `oov_buckets: 1` (or more), or raise `max_tokens` / lower `min_count`"
            )
    return problems


def describe(stats: Mapping[str, Any]) -> str:
    """``x: mean/std of 4 channels, s: vocabulary of 2 (of 5 values)`` for a log line."""
    parts = []
    for name, entry in stats.get("features", {}).items():
        if "normalize" in entry:
            n = len(entry["normalize"]["mean"])
            parts.append(f"{name}: mean/std{f' of {n} channels' if n > 1 else ''}")
        else:
            parts.append(f"{name}: vocabulary of {len(entry['vocabulary'])} (of {entry['distinct']} values)")
    return ", ".join(parts)


__all__ = [
    "FORMAT", "STATISTICS_FILE", "TOP_VALUES", "Moments", "compute_statistics", "declared", "describe",
    "load_statistics", "resolve_statistics", "statistics_problems", "summarize",
]
