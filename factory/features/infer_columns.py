"""``factory init``'s decision for one column of a data file (``column_decision``): dtype, shape,
vocabulary, hash buckets or free text, image, missing values, each with its reason. No TensorFlow.

The thresholds below are where a decision turns; each says why it sits where it does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.features.checks import nested_shape
from factory.features.feature import IMAGE_CHANNELS, ONE_HOT_MAX, embedding_size
from factory.features.images import image_size
from factory.features.table_sample import Table, from_cell

# A label is a class id when it holds at most this many distinct whole numbers, with at least
# CLASS_ROWS rows per class on average; otherwise it is a regression target.
MAX_CLASSES = 20
CLASS_ROWS = 5
# A string column whose values repeat (at least this many rows per distinct value) gets a vocabulary.
REPEATS = 2
# A value seen fewer times than this may be absent from an 80% training split (0.2**5 < 0.1%):
# the vocabulary then keeps a bucket for values it has not seen.
RARE = 5
# At least this many values seen once: they share that bucket (`min_count: 2`) instead of each
# taking an input learned from one row.
MANY_SINGLETONS = 10
# A vocabulary holds at most this many strings (as many as MAX_TOKENS words). Past it most values are rare
# (a sample of 10000 rows sees the average one under 10 times), the vocabulary is large to learn, store and
# look up, and its embedding is no wider (64 dims from about 730 ids): `hash_buckets` take any value instead.
MAX_VOCABULARY = 1000
# Hash buckets: the next power of two at or above HASH_PER_VALUE x the distinct values seen (2x to 4x: a
# share 1 - exp(-distinct/buckets), a fifth to two fifths, of the values shares its bucket with another, a
# frequent one mostly with rare ones), at most MAX_HASH_BUCKETS (an embedding of 32768 x 64 weights, 8 MB).
HASH_PER_VALUE = 2
MAX_HASH_BUCKETS = 2**15
# Ids (one-word strings, code-like whole numbers) held by one row alone in more than this share of the rows
# are identifiers, left out: the share seen once estimates how often a new row brings a value never seen
# (Good-Turing), so most rows would teach nothing about the rest.
UNSEEN_SHARE = 0.5
# Strings too varied for a vocabulary (mostly distinct, or more than MAX_VOCABULARY) of at least
# FREE_TEXT_WORDS words and more than FREE_TEXT_CHARS characters on average are free text (Ludwig's text
# type): no vocabulary or hash buckets of whole values, but `text: {}`, a multi-hot vector of their words.
# Shorter phrases of two words or more get `text: {}` too.
FREE_TEXT_WORDS = 3
FREE_TEXT_CHARS = 30
# Lists of words (JSON arrays of strings): words kept at most, and the longest list (in words, at
# LENGTH_PERCENTILE) worth one input per word position; longer lists are left out.
MAX_TOKENS = 1000
TEXT_MAX_LENGTH = 32
LENGTH_PERCENTILE = 95
# Above this share of blank rows a missing value also gets an indicator input; numbers whose
# skewness exceeds SKEWED are filled with the median instead of the mean.
INDICATOR_SHARE = 0.05
SKEWED = 1.0
# Numbers of more than MAX_CLASSES distinct values whose skewness exceeds HEAVY_SKEW (an exponential's is 2)
# get a commented `bins: {auto: BINS}` alternative: standardised, their tail squeezes most rows together.
HEAVY_SKEW = 2.0
BINS = 10
# Columns named like this whose values are all distinct are identifiers, not inputs.
_ID_NAME = re.compile(r"(^|[^a-z])(id|index|key|uuid)$|^(id|index)([^a-z]|$)", re.IGNORECASE)
# Whole numbers with more than MAX_CLASSES distinct values are ids, hashed, when their name ends like a code's
# (`zip`, `zip_code`, `productId`, `sku`) or a CSV writes them with leading zeros and 3 digits or more
# (`02134`, as no quantity is written); fewer distinct values stay numbers, with a hint.
_CODE_NAME = re.compile(r"(^|_)(id|code|zip|zipcode|postcode|sku|key)$")
_ZERO_PADDED = re.compile(r"^0\d{2,}$")
_IMAGE_FILE = re.compile(r"\.(png|jpe?g)$", re.IGNORECASE)
# Image files whose headers are read to decide an image column.
IMAGE_FILES_CHECKED = 200


@dataclass
class Decision:
    """One column: its spec ``entry`` (None: left out, ``note`` says why), the reason for each key
    (``why``) and the feature ``name``."""

    header: str
    entry: dict | None = None
    why: dict[str, str] = field(default_factory=dict)
    note: str = ""
    name: str = ""
    # Commented alternatives (key, value, reason), shown after the entry for the reviewer to swap in.
    alternatives: list[tuple[str, Any, str]] = field(default_factory=list)

    def leave_out(self, note: str) -> Decision:
        self.entry, self.note = None, note
        return self


def _n(x: float) -> str:
    return f"{x:.4g}"


def _rows(table: Table, present: int, header: str = "") -> str:
    """``in 178 rows`` (``in the 160 rows that have one`` with blanks), or ``in 10000 sampled rows``."""
    blank = table.missing.get(header, 0)
    if present + blank < table.rows:
        return f"in {present} sampled rows"
    return f"in the {present} rows that have one" if blank else f"in {present} rows"


def _percentile_length(lengths: Sequence[int]) -> int:
    return max(1, int(np.percentile(lengths, LENGTH_PERCENTILE, method="higher")))


def _typed(values: list, table: Table) -> list:
    """CSV cells as ``factory write`` reads them when all are numbers or lists; else the cells as text."""
    if table.format != "csv":
        return values
    parsed = [from_cell(v) for v in values]
    return values if any(isinstance(v, str) for v in parsed) else parsed


def _kind(values: list) -> str:
    """``number``, ``int``, ``list``, ``str``, ``tokens``, ``bytes``, or why it cannot be a feature."""
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "number"
    if kinds <= {str}:
        return "str"
    if kinds <= {bytes}:
        return "bytes"
    if bool in kinds:
        return "true/false values: write them as 0 and 1"
    if kinds <= {list, int, float}:
        flat = [x for v in values for x in (_flat(v) if isinstance(v, list) else [v])]
        if all(type(x) in (int, float) for x in flat):
            return "list"
        if all(isinstance(x, str) for x in flat) and all(isinstance(v, list) for v in values):
            return "tokens"
    if dict in kinds:
        return "nested objects: flatten them into columns of their own"
    return f"mixed values ({', '.join(sorted(t.__name__ for t in kinds))}): give the column one type"


def _flat(value: Any) -> list:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def column_decision(header: str, table: Table, base_dir: Path) -> Decision:
    d, raw = Decision(header), table.sample.get(header, [])
    if not raw:
        why = "an object array (np.load needs allow_pickle)" if table.format == "npz" else "blank in every row"
        return d.leave_out(f"{why}; nothing to learn from")
    values = _typed(raw, table)
    kind, dtype = _kind(values), table.dtypes.get(header)
    if dtype is not None and dtype.kind == "b":
        kind = "true/false values: save them as 0 and 1"
    if dtype == np.uint8 and np.ndim(values[0]) == 3 and len(values[0][0][0]) in (1, 2, 3, 4):
        return _pixels(d, values, table)
    if kind in ("int", "number"):
        return _number_feature(d, values, table, kind, raw)
    if kind == "list":
        return _list_feature(d, values, table)
    if kind == "bytes":
        return _image_feature(d, values, table, "values")
    if kind == "str":
        paths = [v for v in values[:IMAGE_FILES_CHECKED] if _IMAGE_FILE.search(v.strip())]
        if len(paths) == min(len(values), IMAGE_FILES_CHECKED):
            return _image_feature(d, [_file_head(base_dir, v) for v in paths], table, "files")
        return _string_feature(d, values, table)
    if kind == "tokens":
        return _text_feature(d, [len(v) for v in values], [t for v in values for t in v], table, "lists of words")
    return d.leave_out(kind)


def _number_feature(d: Decision, values: list, table: Table, kind: str, raw: list) -> Decision:
    x = np.asarray(values, dtype=np.float64)
    distinct, lo, hi = len(np.unique(x)), x.min(), x.max()
    if distinct == 1:
        return d.leave_out(f"{_n(lo)} in every row; nothing to learn from")
    if (
        kind == "int"
        and distinct == len(values) == table.rows
        and (_ID_NAME.search(d.header) or hi - lo == distinct - 1)
    ):
        return d.leave_out(f"a different whole number in every row ({_n(lo)}..{_n(hi)}): an identifier")
    if kind == "int" and distinct > MAX_CLASSES and (code := _code_like(d.header, raw, table)):
        return _ids(d, Counter(values), table, "whole numbers", code)
    d.entry = {"dtype": "int64" if kind == "int" else "float32", "shape": []}
    whole = bool(np.all(x == np.round(x)))
    what = "whole numbers" if whole else "numbers"
    d.why["dtype"] = f"{distinct} distinct {what} {_rows(table, len(values), d.header)}, {_n(lo)} to {_n(hi)}"
    if whole and distinct <= MAX_CLASSES and distinct * REPEATS <= len(values):  # repeating codes?
        d.why["shape"] = (
            "kept as a number: two values say as much as a category"
            if distinct == 2
            else "kept as a number, which keeps their order"
            + ("; for unordered codes use dtype: string, vocabulary: auto" if table.format == "csv" else "")
        )
    d.entry["preprocess"] = {"normalize": "auto"}
    if distinct > MAX_CLASSES and abs(skew := _skewness(x)) > HEAVY_SKEW:
        d.alternatives.append(
            ("bins", {"auto": BINS}, f"in place of preprocess: skewness {skew:.1f}; {BINS} bins of equal counts")
        )
    _missing(d, table, x, "median" if whole else None)
    return d


def _code_like(header: str, raw: list, table: Table) -> str:
    """Why whole numbers look like ids or codes (their name, their leading zeros), or ``""``."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", header).lower()
    if _CODE_NAME.search(name):
        return f"named like a code ({header!r})"
    if table.format == "csv" and (padded := next((v.strip() for v in raw if _ZERO_PADDED.match(v.strip())), None)):
        return f"written with leading zeros ({padded})"
    return ""


def hash_buckets(distinct: int) -> int:
    """The hash buckets for ``distinct`` values: the next power of two at or above ``HASH_PER_VALUE``
    times as many, at most ``MAX_HASH_BUCKETS``: 64 for 20 values, 4096 for 1500."""
    return min(MAX_HASH_BUCKETS, 1 << (HASH_PER_VALUE * distinct - 1).bit_length())


def _encoded(ids: int) -> str:
    """How ``ids`` ids reach the network by default (``Feature.encoded_as``), said for a comment."""
    if ids <= ONE_HOT_MAX:
        return "one-hot"
    return f"embedded in {embedding_size(ids)} dims (the default above {ONE_HOT_MAX} ids)"


def _ids(d: Decision, counts: Counter, table: Table, what: str, why: str) -> Decision:
    """``hash_buckets`` for ids or codes (strings, or whole numbers): ``why`` says why they are ids; left out
    as identifiers when most rows hold a value no other sampled row holds."""
    distinct, n = len(counts), sum(counts.values())
    singles = sum(1 for c in counts.values() if c == 1)
    rows = _rows(table, n, d.header)
    if singles > UNSEEN_SHARE * n:
        return d.leave_out(f"{distinct} distinct {what} {rows}, {singles} seen once: an identifier, not a category")
    buckets = hash_buckets(distinct)
    dtype = "string" if what == "strings" else "int64"
    d.entry = {"dtype": dtype, "shape": [], "hash_buckets": buckets}
    d.why["dtype"] = f"{distinct} distinct {what} {rows}, {why}: ids, hashed (unseen values too)"
    capped = f", at most {MAX_HASH_BUCKETS}" if buckets == MAX_HASH_BUCKETS else ""
    d.why["hash_buckets"] = f"{HASH_PER_VALUE} x {distinct}, to a power of two{capped}; {_encoded(buckets)}"
    if dtype == "string":
        alternative = ("vocabulary", "auto", "in place of hash_buckets: exact ids of the training values")
    else:
        alternative = ("preprocess", {"normalize": "auto"}, "in place of hash_buckets, if they are amounts")
    d.alternatives.append(alternative)
    _missing(d, table, None, "most_frequent")
    return d


def _skewness(x: np.ndarray) -> float:
    std = x.std()
    return float(np.mean(((x - x.mean()) / std) ** 3)) if std > 0 else 0.0


def _missing(d: Decision, table: Table, x: np.ndarray | None, fill: str | None = None) -> None:
    """``missing: {fill, indicator}`` for a column blank in some rows: the median for skewed numbers
    (and whole numbers), the mean for others, the most frequent string; an indicator above 5%."""
    blank = table.missing.get(d.header, 0)
    if not blank:
        return
    share = blank / table.rows
    if fill is not None:
        why = {"median": "the median, a whole number", "most_frequent": "the most frequent value"}[fill]
    elif abs(skew := _skewness(x.reshape(-1))) > SKEWED:
        fill, why = "median", f"the median, as the tail (skewness {skew:.1f}) pulls the mean"
    else:
        fill, why = "mean", "the mean"
    indicator = share > INDICATOR_SHARE
    flag = "; an input flags them" if indicator else "; too few to flag"
    d.entry["missing"] = {"fill": fill, "indicator": indicator}
    d.why["missing"] = f"blank in {blank} of {table.rows} rows ({share:.1%}): {why}{flag}"


def _list_feature(d: Decision, values: list, table: Table) -> Decision:
    shapes = Counter(nested_shape(v) if isinstance(v, list) else (1,) for v in values)
    whole = all(isinstance(x, int) for v in values for x in _flat(v) if not isinstance(x, list))
    dtype = "int64" if whole else "float32"
    if None in shapes:
        return d.leave_out("nested lists of unequal lengths")
    if len(shapes) == 1:
        shape = list(next(iter(shapes)))
        d.entry = {"dtype": dtype, "shape": shape, "preprocess": {"normalize": "auto"}}
        d.why["shape"] = f"{' x '.join(map(str, shape))} numbers in every row, standardised per position"
        _missing(d, table, np.asarray(values, dtype=np.float64).reshape(len(values), -1))
        return d
    if any(len(s) != 1 for s in shapes):
        return d.leave_out(f"lists of {len(shapes)} different shapes; only the first axis may vary")
    lengths = [s[0] for s in shapes.elements()]
    longest = _percentile_length(lengths)
    d.entry = {"dtype": dtype, "shape": [None], "max_length": longest, "preprocess": {"normalize": "auto"}}
    d.why["shape"] = f"{min(lengths)} to {max(lengths)} numbers a row: variable length"
    d.why["max_length"] = f"{LENGTH_PERCENTILE}% of rows hold at most {longest}: padded with 0 or cut to {longest}"
    return d


def _file_head(base_dir: Path, name: str) -> bytes:
    path = Path(name.strip()).expanduser()
    path = path if path.is_absolute() else base_dir / path
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)  # a JPEG's frame size may follow a large EXIF block
    except OSError:
        return b""


def _image_feature(d: Decision, values: list[bytes], table: Table, what: str) -> Decision:
    sizes = Counter(image_size(v) for v in values)
    if None in sizes or any(size[1] == 0 for size in sizes):  # a JPEG whose header holds no frame size
        return d.leave_out(
            f"{what} that are not all PNG or JPEG images" + (" (or files not found)" * (what == "files"))
        )
    if any(c not in IMAGE_CHANNELS[encoding] for encoding, _, _, c in sizes):
        return d.leave_out(f"images with {', '.join(str(s[3]) for s in sizes)} channels, which factory cannot decode")
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}x{c}" for _, h, w, c in list(sizes)[:3])
        return d.leave_out(f"images of {len(sizes)} sizes ({shown}, ...); resize them to one size first")
    if table.missing.get(d.header, 0):
        return d.leave_out(f"images missing in {table.missing[d.header]} rows; an image cannot be filled in")
    encoding, height, width, channels = next(iter(sizes))
    d.entry = {"dtype": "uint8", "shape": [height, width, channels], "encoding": encoding}
    d.entry["preprocess"] = {"normalize": "auto"}
    d.why["encoding"] = f"{encoding.upper()} {what}, {height}x{width} with {channels} channels (from their headers)"
    d.why["preprocess"] = "pixels standardised per channel; add `augment:` if flips or shifts keep the meaning"
    return d


def _pixels(d: Decision, values: list, table: Table) -> Decision:
    height, width, channels = np.shape(values[0])
    d.entry = {"dtype": "uint8", "shape": [height, width, channels], "encoding": "png"}
    d.entry["preprocess"] = {"normalize": "auto"}
    d.why["encoding"] = f"uint8 arrays of {height}x{width}x{channels}: images, stored as PNG (lossless, small)"
    d.why["preprocess"] = "pixels standardised per channel; add `augment:` if flips or shifts keep the meaning"
    return d


def _string_feature(d: Decision, values: list[str], table: Table) -> Decision:
    """Categories (a vocabulary; hash buckets past MAX_VOCABULARY), ids (hash buckets), free text and short
    phrases (``text``) or identifiers (left out), by how often values repeat and how long they are."""
    counts = Counter(values)
    distinct, rows = len(counts), _rows(table, len(values), d.header)
    if distinct == 1:
        return d.leave_out(f"{values[0]!r} in every row; nothing to learn from")
    repeating = distinct * REPEATS <= len(values)
    if repeating and distinct <= MAX_VOCABULARY:
        d.entry = {"dtype": "string", "shape": [], "vocabulary": "auto"}
        d.why["vocabulary"] = f"{distinct} distinct strings {rows}: a vocabulary"
        _rare_values(d, counts)
        ids = sum(1 for n in counts.values() if n >= d.entry.get("min_count", 1)) + d.entry.get("oov_buckets", 0)
        d.why["vocabulary"] += f", {_encoded(ids)}" if ids <= ONE_HOT_MAX else f" of about {ids} ids, {_encoded(ids)}"
        _missing(d, table, None, "most_frequent")
        return d
    words = [len(v.split()) for v in values]
    mean_words, mean_chars = float(np.mean(words)), float(np.mean([len(v) for v in values]))
    if mean_words >= FREE_TEXT_WORDS and mean_chars > FREE_TEXT_CHARS:
        return _free_text(d, "free text", distinct, len(values), mean_words)
    if repeating:
        return _ids(d, counts, table, "strings", f"more than {MAX_VOCABULARY} for a vocabulary")
    if mean_words < 2:
        return _ids(d, counts, table, "strings", f"one word each, under {REPEATS} rows a value")
    return _free_text(d, "short phrases", distinct, len(values), mean_words)


def _free_text(d: Decision, what: str, distinct: int, rows: int, mean_words: float) -> Decision:
    """Text too varied for a vocabulary of whole values: ``text``, its words the tokens."""
    d.entry = {"dtype": "string", "shape": [], "text": {}}
    d.why["text"] = (
        f"{what} ({distinct} distinct of {rows}, {mean_words:.1f} words a value on average): a multi-hot vector of "
        "the words seen twice or more, learnt from the training records; a blank cell is an empty text"
    )
    return d


def _rare_values(d: Decision, counts: Counter) -> None:
    rare = sum(1 for n in counts.values() if n < RARE)
    if not rare:
        return
    d.entry["oov_buckets"] = 1
    d.why["oov_buckets"] = (
        f"{rare} values seen under {RARE} times may miss the training split: a bucket for unseen ones"
    )
    singles = sum(1 for n in counts.values() if n == 1)
    if singles >= MANY_SINGLETONS:
        d.entry["min_count"] = 2
        d.why["min_count"] = f"{singles} values seen once share the unknown-value bucket"


def _text_feature(d: Decision, lengths: list[int], tokens: list[str], table: Table, what: str) -> Decision:
    longest, counts = _percentile_length(lengths), Counter(tokens)
    d.entry = {"dtype": "string", "shape": [None], "max_length": longest, "vocabulary": "auto"}
    d.why["shape"] = f"{what}, {np.mean(lengths):.1f} words a row on average: a list of words"
    d.why["max_length"] = f"{LENGTH_PERCENTILE}% of rows hold at most {longest} words: padded or cut to {longest}"
    if longest > TEXT_MAX_LENGTH:  # too long for an input per position: one set of words, any length
        del d.entry["max_length"], d.why["max_length"]
        d.entry["encode"] = "multi_hot"
        d.why["encode"] = (
            f"up to {longest} words ({LENGTH_PERCENTILE}th percentile), too many for an input per position: "
            "the set of words, any length"
        )
    d.why["vocabulary"] = f"{len(counts)} distinct words {_rows(table, len(lengths), d.header)}"
    if len(counts) > MAX_TOKENS:
        d.entry["max_tokens"] = MAX_TOKENS
        d.why["max_tokens"] = "the most frequent words only"
    d.entry["min_count"] = 2
    d.why["min_count"] = "a word seen once teaches nothing; it goes to the unknown-word bucket"
    d.entry["oov_buckets"] = 1
    return d
