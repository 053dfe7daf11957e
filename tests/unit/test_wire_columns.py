"""Whole columns encode to exactly the records ``encode_record`` makes of their rows, and fail with its errors.

Seeded random tables over many schemas (numbers scalar, fixed and variable, int64
values of every varint width, strings empty, unicode and long, missing values as
None, NaN, ``""`` and the int64 marker), each column in one of the forms a caller
may give it (numpy arrays, lists, object arrays, pyarrow arrays), under both
record layouts of ``wire.examples_from_parts``. The reference is the per-record
encoder, row by row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from factory.errors import RecordError
from factory.features import wire
from factory.features.encoder import encode_columns, encode_record
from factory.features.feature import MISSING_VALUE
from factory.features.images import encode_png
from factory.features.spec import FeatureSpec

try:  # an optional dependency: without it, the pyarrow forms are left out
    import pyarrow as pa
except ImportError:  # pragma: no cover
    pa = None

LABEL = {"y": {"dtype": "int64", "shape": [], "num_classes": 10}}
VOCABULARY = ["red", "grün", "blau", "ß" * 70]
TEXTS = ["", "a", "city_17", "ünïcödé €", "😀 emoji", "x" * 127, "y" * 128, "long " * 60]


def row_of(column, i: int):
    """Row i of a column as a caller's record holds it."""
    value = column[i]
    return value.as_py() if pa is not None and isinstance(column, pa.Array | pa.ChunkedArray) else value


def records_of(columns: dict, rows: int) -> list[dict]:
    return [{name: row_of(c, i) for name, c in columns.items() if c is not None} for i in range(rows)]


def reference(spec: FeatureSpec, columns: dict, rows: int, start: int = 0) -> tuple[list[bytes], Counter]:
    """The per-record encoder's records and missing counts, or its first error (raised)."""
    missing: Counter = Counter()
    out = [encode_record(spec, r, start + i, missing=missing) for i, r in enumerate(records_of(columns, rows))]
    return out, missing


def object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# -- features: a spec, a value drawer and the forms a column of them may take ---------------------


@dataclass
class Kind:
    spec: dict
    draw: Callable  # (rng) -> one valid value (None, NaN, "" where the spec allows a missing value)
    forms: tuple  # names of column forms, see `column`


def optional(rng, base: dict, fills: list[dict]) -> dict:
    choice = rng.integers(len(fills) + 1)
    return base if choice == len(fills) else {**base, **fills[choice]}


def int64_value(rng) -> int:
    width = int(rng.integers(1, 11))  # varint bytes
    if width == 10:
        return int(rng.integers(-(2**63), 0)) if rng.random() < 0.9 else 2**63 - 1
    return int(rng.integers(1 << (7 * (width - 1)), 1 << min(7 * width, 63))) if width > 1 else int(rng.integers(128))


def text(rng) -> str:
    if rng.random() < 0.01:
        return "z" * 16500  # a length of three varint bytes
    if rng.random() < 0.3:
        return f"city_{rng.integers(3000)}"
    return TEXTS[rng.integers(len(TEXTS))]


def float_kind(rng) -> Kind:
    shape = [[], [3], [2, 2]][rng.integers(3)]
    spec = optional(rng, {"dtype": "float32", "shape": shape}, [{"default": 0.5}, {"missing": "mean"}])
    gaps = "default" in spec or "missing" in spec
    size = math.prod(shape)

    def draw(rng):
        if gaps and rng.random() < 0.2:
            return None if rng.random() < 0.5 else (math.nan if not shape else np.full(shape, np.nan).tolist())
        values = (rng.standard_normal(size) * 10.0 ** rng.integers(-3, 6)).reshape(shape)
        return float(values) if not shape else values.tolist()

    return Kind(spec, draw, ("array32", "array64", "list", "object", "object-arrays"))


def int_kind(rng) -> Kind:
    shape = [[], [2]][rng.integers(2)]
    dtype = "uint8" if shape and rng.random() < 0.3 else "int64"
    fills = [{"default": 7 if not shape else [1, 2]}] + ([{"missing": "median"}] if dtype == "int64" else [])
    spec = optional(rng, {"dtype": dtype, "shape": shape}, fills)
    gaps, marker = "default" in spec or "missing" in spec, "missing" in spec
    size = math.prod(shape)

    def draw(rng):
        if gaps and rng.random() < 0.2:
            if marker and rng.random() < 0.5:
                return MISSING_VALUE["int64"] if not shape else [MISSING_VALUE["int64"]] * size
            return None
        values = [int(rng.integers(256)) if dtype == "uint8" else int64_value(rng) for _ in range(size)]
        if rng.random() < 0.1 and all(abs(v) < 2**53 for v in values):
            values = [float(v) for v in values]  # whole floats, as a CSV or pandas gives integers
        return values[0] if not shape else values

    return Kind(spec, draw, ("array64", "list", "object", "object-arrays", "floats"))


def variable_kind(rng) -> Kind:
    dtype, shape = [("float32", [None]), ("int64", [None]), ("float32", [None, 2])][rng.integers(3)]

    def draw(rng):
        if rng.random() < 0.15:
            return None
        n = int(rng.integers(0 if len(shape) == 1 else 1, 5))  # [] has shape [0], not [0, 2]
        if dtype == "int64":
            values = [int64_value(rng) for _ in range(n)]
            return [float(v % 1000) for v in values] if rng.random() < 0.1 else values  # whole floats too
        if rng.random() < 0.1 and len(shape) == 1:
            return [int(v) for v in rng.integers(-5, 5, n)]  # integers for a float feature
        return rng.standard_normal((n, *shape[1:])).tolist()

    return Kind({"dtype": dtype, "shape": shape}, draw, ("list", "object-arrays", "equal"))


def string_kind(rng) -> Kind:
    shape = [[], [], [2], [None]][rng.integers(4)]
    vocab = rng.random() < 0.3
    spec = {"dtype": "string", "shape": shape} | ({"vocabulary": VOCABULARY} if vocab else {})
    if shape != [None]:
        spec = optional(rng, spec, [{"default": "red" if not shape else ["red", "blau"]}, {"missing": "most_frequent"}])
    gaps = shape == [None] or "default" in spec or "missing" in spec

    def one(rng):
        return VOCABULARY[rng.integers(len(VOCABULARY))] if vocab else text(rng)

    def draw(rng):
        if gaps and rng.random() < 0.2:
            return "" if "missing" in spec and not shape and rng.random() < 0.5 else None
        if not shape:
            return one(rng)
        return [one(rng) for _ in range(2 if shape == [2] else int(rng.integers(0, 4)))]

    forms = ("list", "object", "unicode", "bytes", "arrow", "arrow-large", "arrow-binary") if not shape else ()
    return Kind(spec, draw, forms or ("list", "object", "object-arrays", "unicode"))


def image_kind(rng) -> Kind:
    def draw(rng):
        pixels = rng.integers(0, 256, (4, 4, 1), dtype=np.uint8)
        return pixels if rng.random() < 0.5 else encode_png(pixels)

    return Kind({"dtype": "uint8", "shape": [4, 4, 1], "encoding": "png"}, draw, ("object",))


KINDS = [float_kind, int_kind, variable_kind, string_kind, image_kind]


def column(kind: Kind, values: list, form: str):
    """``values`` as a column of ``form``, or None when the form cannot hold them."""
    dtype = kind.spec["dtype"]
    has_none = any(v is None for v in values)
    if form == "list":
        return list(values)
    if form == "object":
        return object_array(values)
    if form == "object-arrays":  # rows as numpy arrays
        return object_array([v if v is None or isinstance(v, str) else np.asarray(v) for v in values])
    if form in ("array32", "array64", "floats") and not has_none:
        array = np.asarray(values, dtype={"array32": np.float32, "array64": None, "floats": np.float64}[form])
        if dtype != "float32" and array.dtype.kind == "f" and np.abs(array).max() >= 2**53:
            return None  # integers beyond float64's whole numbers
        return array
    if form == "equal" and not has_none and len({len(v) for v in values}) == 1:
        return np.asarray(values, dtype=np.float32 if dtype == "float32" else np.int64)
    if form == "unicode" and not has_none and len({len(v) if isinstance(v, list) else -1 for v in values}) == 1:
        return np.asarray(values, dtype=str)
    if form == "bytes":
        return [v if v is None else v.encode() for v in values]
    if form.startswith("arrow") and pa is not None:
        if form == "arrow-binary":
            return pa.array([v if v is None else v.encode() for v in values], type=pa.binary())
        return pa.array(values, type=pa.large_string() if form == "arrow-large" else pa.string())
    return None


def random_table(seed: int) -> tuple[FeatureSpec, dict, int]:
    rng = np.random.default_rng(seed)
    kinds = [KINDS[i](rng) for i in rng.integers(0, len(KINDS) - (rng.random() > 0.1), size=rng.integers(1, 6))]
    rows = int(rng.choice([1, 2, 7, 64, 300, 1500]))
    features, columns = {}, {}
    for i, kind in enumerate(kinds):
        name = f"{kind.spec['dtype']}_{i}"
        features[name] = kind.spec
        values = [kind.draw(rng) for _ in range(rows + 1)]
        for form in rng.permutation(kind.forms):
            col = column(kind, values, str(form))
            if col is not None:
                break
        else:
            col = list(values)
        columns[name] = col[1:]  # a slice: a pyarrow array's first row is then at an offset in its buffers
        if kind.spec.get("default") is not None and rng.random() < 0.1:
            columns[name] = None  # the whole column missing: every record takes the default
    columns["y"] = rng.integers(0, 10, rows)
    return FeatureSpec.from_dict({"features": features, "labels": LABEL}), columns, rows


@pytest.fixture(params=["groups", "scattered"])
def layout(request, monkeypatch):
    """Both ways ``examples_from_parts`` lays out records: a block per group of rows, or scattered."""
    if request.param == "scattered":
        monkeypatch.setattr(wire, "GROUPS_MIN", 0)
        monkeypatch.setattr(wire, "ROWS_PER_GROUP", 1 << 40)
    else:
        monkeypatch.setattr(wire, "GROUPS_MIN", 1 << 40)
    return request.param


@pytest.mark.parametrize("seed", range(60))
def test_columns_encode_to_the_records_of_their_rows(seed, layout, monkeypatch):
    # Pieces copied by slices or by index arrays, varints encoded in blocks of rows or at once.
    monkeypatch.setattr(wire, "LONG", [0, 32, 1 << 40][seed % 3])
    monkeypatch.setattr(wire, "VARINT_VALUES", [1 << 20, 64][seed % 2])
    spec, columns, rows = random_table(seed)
    expected, expected_missing = reference(spec, columns, rows)
    missing: Counter = Counter()
    got = encode_columns(spec, columns, missing=missing)
    assert len(got) == rows
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == b, f"row {i}: {records_of(columns, rows)[i]}"
    assert missing == expected_missing


# -- errors: the record encoder's, for the first bad row ------------------------------------------


def bad_values(spec: dict) -> list:
    """Values the record encoder may reject for a feature of ``spec`` (some pass as missing values)."""
    dtype, shape = spec["dtype"], spec["shape"]
    if spec.get("encoding"):
        return [np.zeros((3, 3, 1), np.uint8), b"GIF89a", "image.png", None]
    if dtype == "string":
        out = [5, None, ["red"] * 3, [1, "red"], b"\xff", "purple", np.float64(1.0)]
        return out + (["red", ["red"]] if not shape else [[["red"]]])
    common = ["abc", True, None, [1.0] * 5, np.int64(3), np.array([1.0, math.nan])]
    if shape and shape[0] is None:
        return [*common, 1.0, [[1.0]], [1.5], [math.nan], [True], [2**64], [2**63]]
    if dtype == "float32":
        return [*common, math.inf, -math.inf, 1e39, math.nan, np.float64(-1e40)]
    return [*common, 1.5, 300, -1, 2**64, 2**63, math.nan, math.inf, np.float32(2.5), MISSING_VALUE["int64"]]


def check_against_records(spec: FeatureSpec, columns: dict, rows: int, start: int) -> None:
    try:
        expected, expected_missing = reference(spec, columns, rows, start)
    except RecordError as err:
        with pytest.raises(RecordError) as caught:
            encode_columns(spec, columns, start=start, missing=Counter())
        assert str(caught.value) == str(err)
        return
    missing: Counter = Counter()
    assert encode_columns(spec, columns, start=start, missing=missing) == expected
    assert missing == expected_missing


@pytest.mark.parametrize("seed", range(80))
def test_a_bad_value_raises_the_record_encoders_error_for_its_row(seed):
    spec, columns, rows = random_table(seed)
    rng = np.random.default_rng(10_000 + seed)
    names = [n for n, c in columns.items() if c is not None]
    for _ in range(int(rng.integers(1, 3))):  # one bad value, or two in different places
        name = names[rng.integers(len(names))]
        row = int(rng.integers(rows))
        choices = bad_values(spec[name].__dict__ | {"shape": list(spec[name].shape)})
        bad = choices[rng.integers(len(choices))]
        column = columns[name]
        if (
            isinstance(column, np.ndarray)
            and column.dtype.kind == "f"
            and isinstance(bad, float)
            and rng.random() < 0.5
        ):
            column = column.astype(np.float64)  # stays an array of numbers
            column[row] = bad
        else:
            values = [row_of(column, i) for i in range(rows)]
            values[row] = bad
            column = values if rng.random() < 0.5 else object_array(values)
        columns[name] = column
    check_against_records(spec, columns, rows, start=int(rng.integers(0, 1000)))


def test_a_required_column_left_out_is_named_for_the_first_record():
    spec = FeatureSpec.from_dict(
        {"features": {"a": {"dtype": "float32", "shape": []}, "s": {"dtype": "string", "shape": []}}, "labels": LABEL}
    )
    columns = {"a": np.ones(3), "y": np.zeros(3, np.int64)}
    check_against_records(spec, columns, 3, start=5)
    with pytest.raises(RecordError, match=r"^record 5: feature 's': missing, and it has no default"):
        encode_columns(spec, columns, start=5)


# -- the usual forms take no value-by-value pass ------------------------------------------------------


def test_the_usual_forms_are_checked_and_encoded_whole(monkeypatch):
    """Columns as tables and data frames give them never go value by value through the record encoder."""
    from factory.features import columns as whole

    def by_values(enc, values, rows):
        raise AssertionError(f"{enc.f.name} went value by value")

    monkeypatch.setattr(whole, "by_values", by_values)
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "f": {"dtype": "float32", "shape": [], "missing": "mean"},
                "v": {"dtype": "float32", "shape": [2], "default": [0, 1]},
                "n": {"dtype": "int64", "shape": [], "missing": "median"},
                "k": {"dtype": "int64", "shape": [], "default": 3},
                "s": {"dtype": "string", "shape": [], "missing": "most_frequent"},
                "c": {"dtype": "string", "shape": [], "vocabulary": VOCABULARY},
                "u": {"dtype": "string", "shape": []},
                "b": {"dtype": "string", "shape": []},
                "pair": {"dtype": "string", "shape": [2]},
                "tags": {"dtype": "string", "shape": [None]},
                "seq": {"dtype": "float32", "shape": [None]},
                "ids": {"dtype": "int64", "shape": [None]},
            },
            "labels": LABEL,
        }
    )
    rng = np.random.default_rng(7)
    rows = 500
    f = rng.standard_normal(rows)
    f[::7] = np.nan
    v = rng.standard_normal((rows, 2)).astype(np.float32)
    v[::5] = np.nan
    columns = {
        "f": f,
        "v": v,
        "n": object_array([None if i % 9 == 0 else int64_value(rng) for i in range(rows)]),
        "k": [None if i % 4 == 0 else int(i) for i in range(rows)],
        "s": object_array([None if i % 6 == 0 else text(rng) for i in range(rows)]),
        "c": np.array([VOCABULARY[i % len(VOCABULARY)] for i in range(rows)]),
        "u": [text(rng) for _ in range(rows)],
        "b": [text(rng).encode() for _ in range(rows)],
        "pair": [[text(rng), "x"] for _ in range(rows)],
        "tags": object_array([None if i % 3 == 0 else np.array(["a", "b"][: i % 3]) for i in range(rows)]),
        "seq": object_array([rng.standard_normal(i % 4).astype(np.float32) for i in range(rows)]),
        "ids": [None if i % 8 == 0 else [int64_value(rng) for _ in range(i % 3)] for i in range(rows)],
        "y": rng.integers(0, 10, rows),
    }
    if pa is not None:
        columns["s"] = pa.array(columns["s"].tolist(), type=pa.string())
    check_against_records(spec, columns, rows, start=0)


def test_numeric_matrices_encode_as_records():
    spec = FeatureSpec.from_dict({"features": {"x": {"dtype": "float32", "shape": [3]}}, "labels": LABEL})
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((100, 3)).astype(np.float32), rng.integers(-(2**40), 2**40, (100, 1))
    got = wire.examples_from_matrices([("x", "float", x), ("y", "int64", y)])
    assert got == [encode_record(spec, {"x": x[i], "y": y[i, 0]}) for i in range(100)]
    assert wire.examples_from_matrices([("x", "float", x[:0])]) == []
    with pytest.raises(ValueError, match="only float and int64 columns"):
        wire.examples_from_matrices([("s", "bytes", x)])


@pytest.mark.skipif(pa is None, reason="pyarrow is not installed")
def test_pyarrow_columns_encode_as_their_python_values():
    spec = FeatureSpec.from_dict(
        {
            "features": {
                "s": {"dtype": "string", "shape": [], "missing": "most_frequent"},
                "c": {"dtype": "string", "shape": [], "vocabulary": VOCABULARY},
                "f": {"dtype": "float32", "shape": [], "default": 1.5},
                "n": {"dtype": "int64", "shape": []},
                "tags": {"dtype": "string", "shape": [None]},
            },
            "labels": LABEL,
        }
    )
    rows = 300
    rng = np.random.default_rng(5)
    words = [None if i % 7 == 0 else "" if i % 11 == 0 else text(rng) for i in range(rows)]
    colors = [VOCABULARY[i % len(VOCABULARY)] for i in range(rows)]
    columns = {
        "s": pa.chunked_array([words[:100], words[100:]], type=pa.large_string()),
        "c": pa.array(colors).dictionary_encode(),
        "f": pa.array([None if i % 5 == 0 else float(i) for i in range(rows)], type=pa.float64()),
        "n": pa.array(rng.integers(-(2**40), 2**40, rows)),
        "tags": pa.array([None if i % 3 == 0 else ["a", "bc"][: i % 3] for i in range(rows)]),
        "y": pa.array(rng.integers(0, 10, rows)),
    }
    check_against_records(spec, columns, rows, start=0)
    columns["c"] = pa.array([*colors[:-1], "purple"])  # outside the vocabulary: the last record is named
    check_against_records(spec, columns, rows, start=3)
    with pytest.raises(RecordError, match=rf"^record {rows + 2}: feature 'c': 'purple' is not in the vocabulary"):
        encode_columns(spec, columns, start=3)
