"""The ``auto`` statistics of a feature spec (``normalize: auto``, ``vocabulary: auto``) put into it.

``resolve_auto`` replaces every ``auto`` with the computed constants; ``drop_auto``
removes them, for reading records as they are stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from factory.errors import ConfigError
from factory.validation import plain

if TYPE_CHECKING:  # pragma: no cover
    from factory.features.spec import FeatureSpec


def resolve_auto(spec: FeatureSpec, statistics: Mapping[str, Any]) -> FeatureSpec:
    """``FeatureSpec.with_statistics``: every ``auto`` replaced by the computed constants."""
    if not spec.needs_statistics:
        return spec
    entries = statistics.get("features") if isinstance(statistics, Mapping) else None
    if not isinstance(entries, Mapping):
        raise ConfigError("statistics: expected a mapping with `features` (as compute_statistics returns)")
    raw = plain(spec.raw)
    problems = []
    for f in spec.auto_features:
        entry = entries.get(f.name)
        kind = f.auto_statistic
        if not isinstance(entry, Mapping) or kind not in entry:
            problems.append(f"features.{f.name}: the statistics hold no {kind} for this `{kind}: auto` feature")
            continue
        declared = raw["labels" if f.role == "label" else "features"][f.name]
        if kind == "normalize":
            norm = entry["normalize"]
            where = declared if f.role == "label" else declared["preprocess"]
            where["normalize"] = {"mean": list(norm["mean"]), "std": list(norm["std"])}
        else:
            declared["vocabulary"] = list(entry["vocabulary"])
            # Only meaningful while the vocabulary is `auto`; the semantic check refuses them otherwise.
            declared.pop("max_tokens", None)
            declared.pop("min_count", None)
    if problems:
        raise ConfigError(problems)
    return type(spec).from_dict(raw)


def drop_auto(spec: FeatureSpec) -> FeatureSpec:
    """``FeatureSpec.without_auto``: the spec with ``auto`` statistics dropped."""
    if not spec.needs_statistics:
        return spec
    raw = plain(spec.raw)
    for f in spec.auto_features:
        declared = raw["labels" if f.role == "label" else "features"][f.name]
        if f.role == "label":
            del declared["normalize"]
        elif f.auto_statistic == "normalize":
            del declared["preprocess"]["normalize"]
        else:
            for key in ("vocabulary", "max_tokens", "min_count", "oov_buckets"):
                declared.pop(key, None)
    return type(spec).from_dict(raw)
