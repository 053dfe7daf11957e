"""``factory check``: read record files and check every record against the feature spec; with
``--against RUN_OR_EXPORT``, also measure how far they moved from the model's training records
(``factory.features.drift``), and with ``--max-missing-rate``, how often features are missing.

Exit status: 0 when every record fits and no check crosses its threshold, 1 when one crosses,
2 for a user error (a bad option, a run without statistics, a record that does not fit the spec).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.cli.args import add_compression
from factory.errors import ConfigError, FactoryError
from factory.features.drift import CHANCE, MEASURES, Comparison, Measure, Observed, Thresholds, compare, kind
from factory.features.drift import missing_rates as max_missing_rates
from factory.features.spec import FeatureSpec
from factory.names import EXPORT_STATISTICS, MANIFEST
from factory.run_dir import CONFIG, HYDRA_CONFIG, STATISTICS, read_json
from factory.serving.manifest import PredictError, find_export, read_manifest
from factory.validation import did_you_mean, load_yaml


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--features", metavar="SPEC", help="feature spec YAML file (with --against: the run's or export's spec)"
    )
    parser.add_argument("files", nargs="+", metavar="FILES", help="record files or globs (quote globs: 'out/train-*')")
    add_compression(parser, "from each file's extension: .gz GZIP, .zz ZLIB")
    parser.add_argument(
        "--against",
        metavar="RUN_OR_EXPORT",
        help="a run dir or an export (version, policy or export dir): compare with its training records",
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[NAME.]MEASURE=VALUE",
        help="a drift threshold for every feature or for one, or 'off' (repeatable; see below)",
    )
    parser.add_argument(
        "--max-missing-rate",
        action="append",
        default=[],
        metavar="[NAME=]RATE",
        help="most records (0 to 1) that may lack a feature, for every feature or for one (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")


def run(args: argparse.Namespace) -> int:
    """Check the records, then measure them; 1 when a check crosses its threshold."""
    if args.features is None and args.against is None:
        raise ConfigError("--features: required, unless --against names a run or export to take the spec from")
    given = FeatureSpec.from_yaml(args.features) if args.features else None
    reference = load_reference(args.against, given) if args.against else None
    spec = given or reference.spec
    options = [("--threshold", t) for t in args.threshold] + [("--max-missing-rate", r) for r in args.max_missing_rate]
    thresholds = parse_thresholds(options, spec, against=reference is not None)
    if reference is None and not thresholds.max_missing:
        counts = spec.check(args.files, compression=args.compression)
        print(_report(counts, None) if args.json else "\n".join(_count_lines(counts)))
        return 0

    from factory.features.pipeline import check_files  # defers TensorFlow
    from factory.features.reading import record_keys, resolve_files  # defers TensorFlow
    from factory.features.scan import scan  # defers TensorFlow

    plain = spec.without_auto()
    paths = resolve_files(args.files)
    # New records (a serving log) may lack the labels and the weight; then they are neither checked nor compared.
    targets = {f.name for f in plain.all() if f.role != "feature"}
    labels = reference is None or not targets or bool(targets & set(record_keys(paths[0], 0, args.compression)))
    counts = check_files(plain, paths, compression=args.compression, labels=labels)
    _, records, columns = scan(plain, paths, args.compression, summary=[f.name for f in plain.all()], auto=())
    observed = {name: Observed.of(column) for name, column in columns.items()}
    if reference is None:
        comparison = Comparison(max_missing_rates(plain, observed, thresholds), {})
    else:
        comparison = compare(reference.spec, reference.summary, observed, thresholds)
    if args.json:
        print(_report(counts, comparison, reference))
    else:
        lines = _count_lines(counts) + [m.line(records) for m in comparison.crossed]
        print("\n".join(lines + _notes(comparison, records) + [_verdict(comparison, records, reference)]))
    return 1 if comparison.crossed else 0


# -- the training records to compare with -----------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The model's resolved feature ``spec`` and the ``summary`` of its training records (``records`` of them)."""

    spec: FeatureSpec
    summary: dict[str, dict[str, Any]]
    records: int
    source: str


def load_reference(path: str, spec: FeatureSpec | None = None) -> Reference:
    """The training statistics of a run dir (``statistics.json``, its spec from ``config.yaml``) or an export
    (``assets.extra/statistics.json``, its spec from the manifest); version, policy and export dirs resolve
    as ``factory predict`` resolves them. ``spec`` stands in for a run dir without ``config.yaml``.
    ``FactoryError`` naming the file and the fix when it is not there, or lacks the summaries.
    """
    given = Path(path).expanduser()
    if not given.is_dir():
        state = "is a file, not a directory" if given.exists() else "does not exist"
        raise FactoryError(
            f"--against {given}: {state}; pass a run dir, or an export: RUN_DIR/export/<policy>[/<version>]"
        )
    if any((given / name).is_file() for name in (STATISTICS, CONFIG, HYDRA_CONFIG)):
        stats = read_statistics(given / STATISTICS, f"the run in {given}")
        config = next((given / name for name in (CONFIG, HYDRA_CONFIG) if (given / name).is_file()), None)
        if config is not None:
            raw = load_yaml(config)
            features = raw.get("features") if isinstance(raw, dict) else None
            spec = FeatureSpec.from_dict(features, source=str(config), prefix="features")
        elif spec is None:
            raise FactoryError(
                f"{given}: holds no {CONFIG} or {HYDRA_CONFIG} to take the feature spec from; pass --features SPEC"
            )
        return Reference(spec.with_statistics(stats), stats["summary"], stats.get("records", 0), f"the run in {given}")
    try:
        version = find_export(given)
    except PredictError:
        raise FactoryError(
            f"--against {given}: neither a run dir (no {STATISTICS} or {CONFIG}) nor a dir holding an export; pass "
            "RUN_DIR, or RUN_DIR/export/<policy>[/<version>]"
        ) from None
    manifest = read_manifest(version)
    stats = read_statistics(version / EXPORT_STATISTICS, f"the export {version}")
    spec = FeatureSpec.from_dict(manifest["feature_spec"], source=str(version / MANIFEST))
    return Reference(spec, stats["summary"], stats.get("records", 0), f"the export {version}")


def read_statistics(path: Path, what: str) -> dict[str, Any]:
    """A ``statistics.json`` with the summaries of the training records; ``what`` it belongs to names it in errors."""
    retrain = "retrain with this version of factory, or pass --against a run or export written by it"
    if not path.is_file():
        raise FactoryError(
            f"{path}: not found: {what} was trained before factory kept the statistics of its training records; {retrain}"
        )
    try:
        stats = read_json(path)
    except (OSError, ValueError) as err:
        raise FactoryError(f"{path}: cannot be read ({err}); {retrain}") from None
    summary = stats.get("summary") if isinstance(stats, dict) else None
    if not isinstance(summary, dict) or not all(isinstance(s, dict) and "records" in s for s in summary.values()):
        raise FactoryError(
            f"{path}: no `summary` key (the per-feature summaries of the training records drift is measured "
            f"against): {what} was trained before factory kept them; {retrain}"
        )
    return stats


# -- thresholds from the command line -------------------------------------------------------------


def parse_thresholds(options: Sequence[tuple[str, str]], spec: FeatureSpec, against: bool = True) -> Thresholds:
    """``Thresholds`` from ``(option, text)`` pairs in the order given (a later one wins):
    ``("--threshold", "[NAME.]MEASURE=VALUE")`` and ``("--max-missing-rate", "[NAME=]RATE")``. VALUE is a
    number >= 0 (at most 1 for all but ``mean_shift``) or ``off``. ``against``: a training reference is given
    (without one only ``max_missing`` can be measured). Every problem at once, as a ``ConfigError``.
    """
    defaults = {name: m.default for name, m in MEASURES.items()}
    features: dict[tuple[str, str], float | None] = {}
    problems = []
    kinds = {f.name: kind(f) for f in spec.all()}
    for option, text in options:
        where = f"{option} {text}"
        if option == "--max-missing-rate":
            name, _, value = text.rpartition("=")
            measure = "max_missing"
        else:
            key, equals, value = text.partition("=")
            name, _, measure = key.rpartition(".")
            if not equals or measure not in MEASURES:
                why = (
                    f"no measure '{measure}'{did_you_mean(measure, MEASURES)}"
                    if equals
                    else "expected [NAME.]MEASURE=VALUE"
                )
                problems.append(f"{where}: {why}; measures: {', '.join(MEASURES)}")
                continue
        number, problem = _threshold(value, MEASURES[measure])
        if problem:
            problems.append(f"{where}: {problem}")
        elif measure != "max_missing" and not against:
            problems.append(f"{where}: drift is measured against the training records; add --against RUN_OR_EXPORT")
        elif not name:
            defaults[measure] = number
        elif name not in kinds:
            problems.append(f"{where}: no feature '{name}'{did_you_mean(name, kinds)}; features: {', '.join(kinds)}")
        elif kinds[name] not in MEASURES[measure].kinds:
            fits = ", ".join(k for k, m in MEASURES.items() if kinds[name] in m.kinds)
            problems.append(
                f"{where}: {measure} does not apply to '{name}', a {kinds[name]} feature; its measures: {fits}"
            )
        else:
            features[(name, measure)] = number
    if problems:
        raise ConfigError(problems)
    return Thresholds(defaults, features)


def _threshold(text: str, measure: Measure) -> tuple[float | None, str | None]:
    if text.strip().lower() == "off":
        return None, None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= (1.0 if measure.unit else math.inf):
        return None, f"expected {'a number from 0 to 1' if measure.unit else 'a number >= 0'} or 'off', got {text!r}"
    return value, None


# -- the report -------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _count_lines(counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    lines = [f"{path}: {_plural(count, 'record')}" for path, count in counts.items()]
    return [*lines, f"total: {_plural(total, 'record')} in {_plural(len(counts), 'file')}"]


def _notes(comparison: Comparison, records: int) -> list[str]:
    notes = []
    if comparison.skipped:
        notes.append("note: not compared: " + ", ".join(f"{k} ({why})" for k, why in comparison.skipped.items()))
    limited = [m for m in comparison.measurements if not m.crossed and m.chance > m.threshold]
    if limited:
        notes.append(
            f"note: with {records} records, chance alone reaches past the threshold of {_plural(len(limited), 'check')}; "
            "they flag only a larger change (--json lists each check's chance level)"
        )
    return notes


def _verdict(comparison: Comparison, records: int, reference: Reference | None) -> str:
    total, crossed = len(comparison.measurements), len(comparison.crossed)
    verdict = f"{crossed} of {_plural(total, 'check')} crossed" if crossed else f"all {_plural(total, 'check')} within"
    against = f" against the {reference.records} training records of {reference.source}" if reference else ""
    return f"{'drift' if reference else 'missing'}: {verdict} their thresholds: {_plural(records, 'record')}{against}"


def _report(counts: dict[str, int], comparison: Comparison | None, reference: Reference | None = None) -> str:
    report: dict[str, Any] = {"files": counts, "records": sum(counts.values())}
    if comparison is not None:
        report["against"] = None if reference is None else {"source": reference.source, "records": reference.records}
        report["chance"] = CHANCE
        report["checks"] = [m.to_json() for m in comparison.measurements]
        report["crossed"] = len(comparison.crossed)
        report["skipped"] = comparison.skipped
    return json.dumps(report, indent=2)


EPILOG = f"""\
Every record is read and checked against the spec. With --against, the records
are also compared with the summaries of the training records the run or export
keeps (statistics.json), feature by feature; each check that crosses its
threshold is printed on one line, and the exit status is 1. The measures and
their default thresholds:
{chr(10).join(f"  {name:<12}{m.doc} ({m.default if m.default is not None else 'off'})" for name, m in MEASURES.items())}
--threshold MEASURE=VALUE sets one for every feature, NAME.MEASURE=VALUE for one
feature; 'off' turns it off. A check also needs its value beyond what chance alone
reaches with this many records (probability {CHANCE}), so a small unshifted sample
raises no alarm. Labels and the weight are compared when the new records hold them.

examples:
  factory check --features conf/features/x.yaml 'out/train-*'
  factory check --against runs/a 'new/*.tfrecord'
  factory check --against runs/a/export/best --threshold js=0.3 --threshold age.mean_shift=1 'new/*'
  factory check --features conf/features/x.yaml --max-missing-rate 0.1 --max-missing-rate bmi=0.3 'new/*'
"""
