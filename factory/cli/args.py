"""Arguments shared by the ``factory`` subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_compression(parser: argparse.ArgumentParser, default_help: str) -> None:
    """``--compression none|gzip|zlib`` (case-insensitive); ``default_help`` says what leaving it out means."""
    parser.add_argument(
        "--compression",
        choices=("none", "gzip", "zlib"),
        type=str.lower,
        default=None,
        help=f"TFRecord compression (default: {default_help})",
    )
