"""``factory stats``: per-feature summaries of record files, and the ``auto`` statistics training would compute."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Mapping
from typing import Any

from factory.cli.args import add_compression, positive_int
from factory.cluster.preflight import RAY_EXTRA, ray_installed
from factory.errors import FactoryError
from factory.features.checks import SHOWN_VOCABULARY, shown
from factory.features.spec import FeatureSpec

# Most frequent values of a string feature printed in the text report (--json has more).
SHOWN_TOP = 10
# --engine ray: Ray tasks running at once (and the CPUs of the Ray instance started for the pass).
DEFAULT_WORKERS = 2


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, metavar="SPEC", help="feature spec YAML file")
    parser.add_argument(
        "--input",
        required=True,
        action="extend",
        nargs="+",
        metavar="FILES",
        help="record files or globs (quote globs: 'records/train-*'); may be repeated",
    )
    add_compression(parser, "from each file's extension: .gz GZIP, .zz ZLIB")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: read the files in this process (default); ray: as Ray tasks, one per file (factory[ray]); "
        "the same report",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="--engine ray: the Ray cluster's address (default: a Ray instance of --workers CPUs of its own)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help=f"--engine ray: files read at once, one Ray task each (default: {DEFAULT_WORKERS})",
    )


def run(args: argparse.Namespace) -> int:
    """Validate the options and the spec (before TensorFlow or Ray loads), read every record once, print the report."""
    _check_engine(args)
    spec = FeatureSpec.from_yaml(args.features)
    from factory.features.profile import summarize  # defers TensorFlow

    scan_with = None
    if args.engine == "ray":
        from factory.cluster.ray_scan import scan_on_ray  # defers TensorFlow (and Ray, inside it)

        scan_with = functools.partial(scan_on_ray, address=args.address, workers=args.workers or DEFAULT_WORKERS)
    report = summarize(spec, args.input, compression=args.compression, scan_with=scan_with)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(spec, report))
    return 0


def _check_engine(args: argparse.Namespace) -> None:
    """``--address`` and ``--workers`` go with ``--engine ray``, which needs Ray (checked without importing it)."""
    if args.engine != "ray":
        given = [option for option, value in (("--address", args.address), ("--workers", args.workers)) if value]
        if given:
            raise FactoryError(f"{' and '.join(given)}: only with --engine ray")
    elif not ray_installed():
        raise FactoryError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _list(values: list) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else _num(v) for v in values) + "]"


def format_report(spec: FeatureSpec, report: Mapping[str, Any]) -> str:
    """The text form of ``summarize``'s report: one block per feature."""
    files = report["files"]
    lines = [f"{report['records']} records in {len(files)} file{'' if len(files) == 1 else 's'}"]
    for f in spec.all():
        s = report["features"][f.name]
        role = "" if f.role == "feature" else f" ({f.role})"
        lines += ["", f"{f.name}{role}: {f.describe()}"]
        rate = f" ({s['missing'] / s['records']:.1%})" if s["records"] and s["missing"] else ""
        lines.append(f"  records {s['records']}, missing {s['missing']}{rate}, values {s['values']}")
        if "distinct" in s:
            lines.append(f"  distinct {s['distinct']}")
            if s["top"]:
                top = s["top"][:SHOWN_TOP]
                lines.append("  top values:")
                width = max(len(repr(v)) for v, _ in top)
                lines += [f"    {value!r:<{width}}  {count}" for value, count in top]
        else:
            lines.append(f"  min {_num(s['min'])}, max {_num(s['max'])}, mean {_num(s['mean'])}, std {_num(s['std'])}")
        stats = s.get("statistics")
        if stats is None:
            continue
        if "error" in stats:
            lines.append(f"  {f.waits_for} -> cannot be computed: {stats['error']}")
            continue
        if "fill" in stats:
            lines.append(f"  missing.fill: {f.missing.fill} -> {_list(stats['fill'])}")
        if "normalize" in stats:
            norm = stats["normalize"]
            scaled = " (after scale)" if f.preprocess.scale is not None else ""
            lines.append(f"  normalize: auto -> mean {_list(norm['mean'])}, std {_list(norm['std'])}{scaled}")
            if stats.get("constant_channels"):
                lines.append(
                    f"    constant (std 0, divided by 1.0): channel {', '.join(map(str, stats['constant_channels']))}"
                )
        if "bins" in stats:
            lines.append(
                f"  bins: {{auto: {f.auto_bins}}} -> {len(stats['bins']) + 1} bins, boundaries {_list(stats['bins'])}"
            )
        if "text" in stats:
            text = stats["text"]
            lines.append(
                f"  text -> {len(text['vocabulary'])} of {text['distinct']} tokens (seen {f.text.min_count} times or "
                f"more, at most {f.text.kept}) in {text['texts']} texts: {shown(text['vocabulary'], quote=True)}"
            )
        if "vocabulary" in stats:
            vocab = stats["vocabulary"]
            lines.append(
                f"  vocabulary: auto -> {len(vocab)} of {stats['distinct']} values: {shown(vocab, quote=True)}"
            )
            left = stats["left_out"]
            if left["distinct"]:
                note = "" if f.oov_buckets else "; training would stop on them: set `oov_buckets: 1` (or more)"
                values = "value" if left["distinct"] == 1 else "values"
                lines.append(f"    left out: {left['distinct']} {values} seen {left['values']} times{note}")
    return "\n".join(lines)


EPILOG = f"""\
Reads every record once and prints, per feature (labels and the weight too):
  records, missing (records without the feature; for a variable-length one,
  empty ones) and its rate, and values; min, max, mean and std of numbers
  (decoded pixels for png/jpeg images); the number of distinct strings and the
  {SHOWN_TOP} most frequent. --json adds each number's histogram (bins between
  quantiles) and up to 100 most frequent strings.
For `missing.fill` (mean, median, most_frequent), `preprocess.normalize: auto`,
`vocabulary: auto`, `bins: {{auto: K}}` and `text` features it also prints the
statistics training computes from data.train: the fill (over present values),
mean and std per channel (after `scale`, over what training reads: present
values, defaults for missing values without `missing:`, real values of padded
sequences), the bins' boundaries, or the vocabulary (of values, or of a text's
tokens), most frequent first. Only the first {SHOWN_VOCABULARY} vocabulary entries are
printed; --json gives all of them.

--engine ray reads the files as Ray tasks, one per file and --workers at a time,
on a Ray instance of its own (--workers CPUs) or the cluster at --address, and
merges them in file order as the pass in one process does: the same report, to
the last digit. Needs Ray (pip install 'factory[ray]').

examples:
  factory stats --features conf/features/x.yaml --input 'records/train-*'
  factory stats --features conf/features/x.yaml --input 'records/train-*' --engine ray --workers 4
"""
