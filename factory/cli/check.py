"""``factory check``: read record files and check every record against the feature spec."""

from __future__ import annotations

import argparse

from factory.cli.args import add_compression
from factory.features.spec import FeatureSpec


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, metavar="SPEC", help="feature spec YAML file")
    parser.add_argument("files", nargs="+", metavar="FILES", help="record files or globs (quote globs: 'out/train-*')")
    add_compression(parser, "from each file's extension: .gz GZIP, .zz ZLIB")


def run(args: argparse.Namespace) -> int:
    """Read every record of the files against the spec; print per-file counts and the total."""
    spec = FeatureSpec.from_yaml(args.features)
    counts = spec.check(args.files, compression=args.compression)
    for path, count in counts.items():
        print(f"{path}: {count} record{'' if count == 1 else 's'}")
    total = sum(counts.values())
    print(f"total: {total} record{'' if total == 1 else 's'} in {len(counts)} file{'' if len(counts) == 1 else 's'}")
    return 0
