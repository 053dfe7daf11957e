"""The value checks (``factory.features.checks``) and how each caller words them, as tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factory import FeatureSpec, RecordError
from factory.features import checks
from factory.features.checks import (
    VocabularyCheck,
    flatten,
    nested_shape,
    number_problem,
    numbers_problem,
    shape_matches,
    shape_problem,
    string_problem,
)
from factory.features.conversion import BadValue, FieldConverter
from factory.features.encoder import encode_columns, encode_record
from factory.features.images import encode_png
from factory.serving.inputs import ServingInputs, TensorInfo
from factory.serving.manifest import PredictError

# (value, dtype, the problem or None)
NUMBERS = [
    (3, "int64", None),
    (3.0, "int64", None),
    (np.float32(2.0), "uint8", None),
    (2.5, "float32", None),
    (np.int64(-1), "float32", None),
    (2.5, "int64", "2.5 is not a whole number (int64 holds whole numbers)"),
    (float("nan"), "uint8", "nan is not a whole number (uint8 holds whole numbers)"),
    (float("inf"), "int64", "inf is not a whole number (int64 holds whole numbers)"),
    (300, "uint8", "300 is outside the uint8 range 0..255"),
    (-1, "uint8", "-1 is outside the uint8 range 0..255"),
    (2**63, "int64", "9223372036854775808 is outside the int64 range -9223372036854775808..9223372036854775807"),
    (True, "int64", "bool True is not a number"),
    ("7", "float32", "string '7' is not a number"),
    (None, "float32", "NoneType None is not a number"),
]


@pytest.mark.parametrize(("value", "dtype", "expected"), NUMBERS)
def test_number_problem(value, dtype, expected):
    problem = number_problem(value, dtype)
    assert (None if problem is None else str(problem)) == expected


# (array, dtype, the problem or None); only whole numbers in range pass for integer dtypes.
ARRAYS = [
    (np.array([1.5, -2.0]), "float32", None),
    (
        np.array([1.5, np.nan]),
        "float32",
        "nan at [1] is NaN; float32 values must be finite numbers (a value that is NaN throughout reads as "
        "missing when the spec says what a missing value becomes: `missing:` or `default`)",
    ),
    (np.array([[1.0], [-np.inf]]), "float32", "-inf at [1, 0] is infinite; float32 values must be finite numbers"),
    (np.array([1e39]), "float32", "1e+39 at [0] is outside the float32 range -3.4028235e+38..3.4028235e+38"),
    (np.array([3.0e38], np.float32), "float32", None),
    (np.array([[1, 2], [3, 4]]), "int64", None),
    (np.array([0.0, 255.0]), "uint8", None),
    (np.zeros((0, 3)), "uint8", None),
    (np.array([[1.0, 2.0], [3.0, 2.5]]), "int64", "2.5 at [1, 1] is not a whole number (int64 holds whole numbers)"),
    (np.array([1.0, np.inf]), "int64", "inf at [1] is not a whole number (int64 holds whole numbers)"),
    (np.array([[0, 1], [999, 2]]), "uint8", "999 at [1, 0] is outside the uint8 range 0..255"),
    (np.array([-3], np.int8), "uint8", "-3 at [0] is outside the uint8 range 0..255"),
    (
        np.array([2**63], np.uint64),
        "int64",
        "9223372036854775808 at [0] is outside the int64 range -9223372036854775808..9223372036854775807",
    ),
    (np.array([1e30]), "int64", "1e+30 at [0] is outside the int64 range -9223372036854775808..9223372036854775807"),
    # 2**63 as a float is one past int64's largest value (which rounds up to it as a float).
    (
        np.array([1.0, 2.0**63]),
        "int64",
        "9.223372036854776e+18 at [1] is outside the int64 range -9223372036854775808..9223372036854775807",
    ),
    (np.array([-(2.0**63)]), "int64", None),
]


@pytest.mark.parametrize(("arr", "dtype", "expected"), ARRAYS)
def test_numbers_problem_names_the_first_bad_element(arr, dtype, expected):
    problem = numbers_problem(arr, dtype)
    assert (None if problem is None else str(problem)) == expected


def test_positions_count_from_a_batch_start_and_split_into_rows():
    problem = numbers_problem(np.array([[1, 2], [3, 300]]), "uint8")
    assert problem.text(start=10) == "300 at [11, 1] is outside the uint8 range 0..255"
    row, inside = problem.in_row()
    assert (row, str(inside)) == (1, "300 at [1] is outside the uint8 range 0..255")


SHAPES = [
    ((2, 3), (2, 3), True),
    ((None, 3), (5, 3), True),
    ((None, 3), (5, 4), False),
    ((2,), (2, 1), False),
    ((), (), True),
    ((), (1,), False),
]


@pytest.mark.parametrize(("declared", "got", "matches"), SHAPES)
def test_shape_matches(declared, got, matches):
    assert shape_matches(declared, got) is matches
    assert (shape_problem(declared, got, "x") is None) is matches


def test_shape_problem_wording():
    assert shape_problem((2,), (3,), "float32 [2]") == "expected float32 [2], got shape [3]"
    assert shape_problem((None, 2), (4, 3), "float32 [null, 2]", "float64 of shape [4, 3]") == (
        "expected float32 [null, 2], got float64 of shape [4, 3]"
    )


NESTED = [
    (1, (), [1]),
    ([1, 2], (2,), [1, 2]),
    ([[1], [2]], (2, 1), [1, 2]),
    ([[1], [2, 3]], None, [1, 2, 3]),
    ([], (0,), []),
]


@pytest.mark.parametrize(("value", "shape", "flat"), NESTED)
def test_nested_shape_and_flatten(value, shape, flat):
    assert nested_shape(value) == shape and flatten(value) == flat


STRINGS = [
    ("a", None),
    (b"a", None),
    (np.str_("a"), None),
    (np.bytes_(b"a"), None),
    (1, "int 1 is not a string"),
    (None, "NoneType None is not a string"),
]


@pytest.mark.parametrize(("value", "expected"), STRINGS)
def test_string_problem(value, expected):
    problem = string_problem(value)
    assert (None if problem is None else str(problem)) == expected


VOCABULARY = [
    ("red", None),
    (b"green", None),
    (
        "gren",
        "'gren' is not in the vocabulary (did you mean 'green'?); expected one of red, green, blue (the feature has no oov_buckets for other values)",
    ),
    (
        "purple",
        "'purple' is not in the vocabulary; expected one of red, green, blue (the feature has no oov_buckets for other values)",
    ),
]


@pytest.mark.parametrize(("value", "expected"), VOCABULARY)
def test_vocabulary_problem(value, expected):
    problem = VocabularyCheck(["red", "green", "blue"]).problem(value)
    assert (None if problem is None else str(problem)) == expected


def test_a_long_vocabulary_is_shown_in_part():
    problem = VocabularyCheck([f"w{i}" for i in range(30)]).problem("zzz", (2,))
    assert str(problem).startswith("'zzz' at [2] is not in the vocabulary; expected one of w0, w1,")
    assert "w19, ... (the feature has no oov_buckets" in str(problem)


# -- one wording in every caller ------------------------------------------------------------------

SPEC = FeatureSpec.from_dict(
    {
        "features": {
            "px": {"dtype": "uint8", "shape": [2]},
            "color": {"dtype": "string", "shape": [], "vocabulary": ["red", "green"]},
        },
        "labels": {"y": {"dtype": "int64", "shape": []}},
    }
)
GOOD = {"px": [1, 2], "color": "red", "y": 1}
# (feature, bad value, the problem every caller reports after its own location)
SAME_WORDING = [
    ("px", [1, 300], "300 at [1] is outside the uint8 range 0..255"),
    ("px", [1.5, 2], "1.5 at [0] is not a whole number (uint8 holds whole numbers)"),
    ("y", 2.5, "2.5 is not a whole number (int64 holds whole numbers)"),
    ("color", "gren", "'gren' is not in the vocabulary (did you mean 'green'?)"),
]


@pytest.mark.parametrize(("name", "value", "problem"), SAME_WORDING)
def test_record_and_predict_inputs_word_a_problem_alike(name, value, problem):
    with pytest.raises(RecordError) as record_error:
        encode_record(SPEC, {**GOOD, name: value}, index=4)
    assert f"record 4: feature '{name}': {problem}" in str(record_error.value)
    if name == "y":
        return  # a label is no input of the export
    inputs = ServingInputs({f.name: TensorInfo(f.name, f.dtype, f.shape) for f in SPEC.features}, SPEC)
    batch = {k: [v] for k, v in {**GOOD, name: value}.items()}
    with pytest.raises(PredictError) as predict_error:
        inputs.check(batch)
    position = problem.replace(" at [", " at [0, ") if " at [" in problem else problem.replace(" is ", " at [0] is ", 1)
    assert f"feature '{name}': {position}" in str(predict_error.value)


def test_columns_name_the_record_and_the_position_inside_it():
    columns = {"px": np.array([[1, 2], [3, 4], [5, 999]]), "color": np.array(["red"] * 3), "y": np.arange(3)}
    with pytest.raises(
        RecordError, match=r"^record 7: feature 'px': 999 at \[1\] is outside the uint8 range 0\.\.255$"
    ):
        encode_columns(SPEC, columns, start=5)


CONVERSION = [
    ("y", "x", "feature 'y': string 'x' is not a number; expected int64 []"),
    ("y", "2.5", "feature 'y': 2.5 is not a whole number (int64 holds whole numbers)"),
    ("y", "3.0", None),
]


@pytest.mark.parametrize(("name", "text", "expected"), CONVERSION)
def test_csv_cells_are_checked_with_the_same_wording(name, text, expected):
    field = FieldConverter(SPEC[name], Path("."))
    if expected is None:
        assert field.from_text(text) == 3.0
        return
    with pytest.raises(BadValue) as err:
        field.from_text(text)
    assert str(err.value) == expected


IMAGE_CASES = [
    # (id, data, declared encoding, the problem or None)
    ("png_of_the_size", encode_png(np.zeros((4, 4, 1), np.uint8)), "png", None),
    ("any_format_when_none_is_declared", encode_png(np.zeros((4, 4, 3), np.uint8)), None, None),
    (
        "wrong_size",
        encode_png(np.zeros((3, 5, 1), np.uint8)),
        "png",
        "expected an image of 4x4 pixels, got a PNG image of 3x5",
    ),
    (
        "not_an_image",
        b"GIF89a...",
        None,
        "expected a PNG or JPEG image of 4x4 pixels, got 9 bytes that are neither PNG nor JPEG",
    ),
    (
        "other_format",
        b"\xff\xd8\xff\xd9",
        "png",
        "expected a PNG image, got JPEG bytes; re-encode the image or set `encoding: jpeg`",
    ),
]


@pytest.mark.parametrize(("case", "data", "encoding", "want"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_problem(case, data, encoding, want):
    assert checks.image_problem(data, 4, 4, encoding) == want
