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


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def byte_size(text: str) -> int:
    """argparse type: a size in bytes, ``65536``, ``64KB`` or ``8MB`` (units of 1024), at least 1 KB."""
    number = text.strip().rstrip("bBiI")
    digits = number.rstrip("kKmMgG")
    unit = text.strip()[len(digits) :].strip().lower()
    try:
        value = int(float(digits) * _UNITS[unit])
    except (ValueError, KeyError):
        value = 0
    if value < 1024:
        raise argparse.ArgumentTypeError(f"expected a size of at least 1KB such as 64KB or 8MB, got {text!r}")
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
