"""Per-feature summaries of record files, for ``factory stats``: ``summarize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.errors import RecordError
from factory.features.scan import Scan, scan
from factory.features.spec import FeatureSpec


def summarize(
    spec: FeatureSpec,
    files: str | Sequence[str],
    compression: str | None = None,
    scan_with: Scan | None = None,
) -> dict[str, Any]:
    """Per-feature summaries of ``files`` (features, labels and the weight), and the ``auto`` statistics.

    ``{"files": [...], "records": N, "features": {name: summary}}``, a summary as
    ``factory.features.scan.Column.summary`` describes it (the same a training run
    keeps in ``statistics.json`` for drift checks). An ``auto`` feature adds
    ``statistics``: the entry training would compute, or ``{"error": message}``
    when it could not.
    ``compression``: None (the default) infers each file's from its extension.
    ``scan_with``: what runs the pass (default ``scan``, in this process;
    ``factory.cluster.ray_scan.scan_on_ray``: Ray tasks over the files); the same report.
    """
    names = [f.name for f in spec.all()]
    auto = [f.name for f in spec.auto_features]
    paths, records, columns = (scan_with or scan)(spec, files, compression, summary=names, auto=auto)
    out = {}
    for f in spec.all():
        column = columns[f.name]
        summary = column.summary()
        if column.statistic is not None:
            try:
                summary["statistics"] = column.statistic.entry()
            except RecordError as err:
                summary["statistics"] = {"error": str(err)}
        out[f.name] = summary
    return {"files": paths, "records": records, "features": out}
