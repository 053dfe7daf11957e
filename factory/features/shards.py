"""Shard sets: the ``PREFIX-NNNNN-of-NNNNN`` names, and whether a list of files holds whole sets. No TensorFlow.

``factory write`` (``RecordWriter``) writes a set of ``shards`` files named
``PREFIX-00000-of-0000N.tfrecord`` (``.gz``/``.zz`` when compressed). A set is
all or nothing: every reader (training, evaluation, ``factory stats``,
``factory check``, ``factory predict``) goes through ``check_complete``, which
refuses a list of files holding some but not all shards of a set, naming the
missing ones. Files whose names do not follow the pattern are not sets and pass.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from factory.errors import RecordError
from factory.features.tfrecord import COMPRESSION_SUFFIX

# A shard's file name: PREFIX-<index>-of-<count><suffix>; the writer uses five digits, others may use more.
SHARD_NAME = re.compile(r"(?P<prefix>.+)-(?P<index>\d{5,})-of-(?P<count>\d{5,})(?P<suffix>(?:\.[^.-]+)*)")
# Missing shards named one by one in an error; more are counted.
SHOWN_MISSING = 5


def shard_name(prefix: str, index: int, count: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def shard_paths(prefix: str | Path, shards: int, compression: str | None) -> list[Path]:
    """The file names of a set of ``shards`` written under ``prefix`` (``compression``: None, GZIP, ZLIB)."""
    prefix = Path(prefix)
    suffix = ".tfrecord" + COMPRESSION_SUFFIX[compression]
    return [prefix.with_name(shard_name(prefix.name, i, shards, suffix)) for i in range(shards)]


def existing_shards(prefix: str | Path) -> list[Path]:
    """The shard files of any set (any count, any compression) already under ``prefix``, sorted."""
    digits = "[0-9]" * 5
    pattern = glob.escape(str(prefix)) + f"-{digits}-of-{digits}.tfrecord*"
    return sorted(Path(p) for p in glob.glob(pattern))


def missing_shards(paths: Sequence[str]) -> dict[str, list[str]]:
    """``{set: [missing shard paths]}`` for every set of which ``paths`` holds some but not all shards.

    A set is named ``PREFIX-*-of-NNNNN<suffix>``, in the directory of its shards.
    """
    present: dict[tuple[str, str, int, int, str], set[int]] = {}
    for path in paths:
        directory, name = os.path.split(str(path))
        match = SHARD_NAME.fullmatch(name)
        if match is None:
            continue
        count, index = int(match["count"]), int(match["index"])
        key = (directory, match["prefix"], count, len(match["count"]), match["suffix"])
        present.setdefault(key, set()).add(index)
    out = {}
    for (directory, prefix, count, width, suffix), indexes in present.items():
        lacking = sorted(set(range(count)) - indexes)
        if lacking:
            name = f"{prefix}-*-of-{count:0{width}d}{suffix}"
            out[os.path.join(directory, name)] = [
                os.path.join(directory, f"{prefix}-{i:0{width}d}-of-{count:0{width}d}{suffix}") for i in lacking
            ]
    return out


def check_complete(paths: Sequence[str], exists: Callable[[str], bool] = os.path.exists) -> None:
    """``RecordError`` when ``paths`` holds some but not all shards of a ``-of-NNNNN`` set.

    The message names the set and its missing shards, and says whether they
    exist (``exists``, e.g. ``tf.io.gfile.exists`` for remote file systems):
    then the glob or list left them out; else the set on disk is incomplete.
    """
    for name, lacking in missing_shards(paths).items():
        count = len(lacking)
        shown = ", ".join(os.path.basename(p) for p in lacking[:SHOWN_MISSING])
        more = f" and {count - SHOWN_MISSING} more" if count > SHOWN_MISSING else ""
        what = f"missing shard{'' if count == 1 else 's'} {shown}{more}"
        if all(exists(p) for p in lacking):
            fix = "the files given leave them out; give the whole set (a glob such as 'PREFIX-*')"
        else:
            fix = (
                "the set on disk is incomplete; run the `factory write` that wrote it again "
                "(it finishes an interrupted write), or write the set again with --overwrite"
            )
        raise RecordError(f"{name}: incomplete shard set, {what}; {fix}")
