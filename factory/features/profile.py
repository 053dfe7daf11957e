"""Per-feature summaries of record files, for ``factory stats``: ``summarize``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.errors import RecordError
from factory.features.feature import Feature
from factory.features.scan import scan
from factory.features.spec import FeatureSpec
from factory.features.statistics import Moments, ranked

TOP_VALUES = 10


def summarize(spec: FeatureSpec, files: str | Sequence[str], compression: str | None = None) -> dict[str, Any]:
    """Per-feature summaries of ``files`` (features, labels and the weight), and the ``auto`` statistics.

    ``{"files": [...], "records": N, "features": {name: summary}}``. A summary
    has ``role``, ``dtype``, ``shape``, ``encoding``, ``records``, ``missing``
    (records without a value: for a variable-length feature, empty ones),
    ``values`` (values present), then ``min``/``max``/``mean``/``std`` over all
    values of a number (decoded pixels for images; None without values), or
    ``distinct`` and ``top`` (the ``TOP_VALUES`` most frequent ``[value, count]``
    pairs) of a string. An ``auto`` feature adds ``statistics``: the entry
    training would compute, or ``{"error": message}`` when it could not.
    ``compression``: None (the default) infers each file's from its extension.
    """
    names = [f.name for f in spec.all()]
    auto = [f.name for f in spec.auto_features]
    paths, records, columns = scan(spec, files, compression, summary=names, auto=auto)
    out = {}
    for f in spec.all():
        column = columns[f.name]
        summary: dict[str, Any] = {
            "role": f.role,
            "dtype": f.dtype,
            "shape": list(f.shape),
            "encoding": f.encoding,
            "records": column.records,
            "missing": column.missing,
        }
        data = column.data
        if isinstance(data, Moments):
            empty = data.count == 0
            summary["values"] = data.count
            summary["min"] = None if empty else _number(f, data.min)
            summary["max"] = None if empty else _number(f, data.max)
            summary["mean"] = None if empty else float(data.mean[0])
            summary["std"] = None if empty else float(data.std[0])
        else:
            values = ranked(data)
            summary["values"] = int(sum(data.values()))
            summary["distinct"] = len(values)
            summary["top"] = [[value, n] for value, n in values[:TOP_VALUES]]
        if column.statistic is not None:
            try:
                summary["statistics"] = column.statistic.entry()
            except RecordError as err:
                summary["statistics"] = {"error": str(err)}
        out[f.name] = summary
    return {"files": paths, "records": records, "features": out}


def _number(f: Feature, value: float) -> float | int:
    return int(value) if f.dtype in ("int64", "uint8") else float(value)
