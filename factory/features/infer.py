"""A feature spec proposed from a data file, every decision with its reason: ``infer_spec``.

The file is read once (``factory.features.table_sample``): a uniform sample of its rows decides
types, shapes, cardinalities and lengths (each column: ``factory.features.infer_columns``); blanks
and the label's values are counted over all
rows read. Like TFDV's ``infer_schema`` the dtype comes from
the values and a fixed shape only from a count that never varies; like Ludwig's
``infer_type`` strings are split into categories, ids, free text and identifiers by how often
values repeat and how many words they hold: a vocabulary for categories, hash buckets past
``MAX_VOCABULARY`` values and for ids or codes (Keras' ``FeatureSpace.string_hashed``), free text
left out for a ``text:`` feature. Unlike both, each proposal is a spec that
trains as it is (vocabularies, lengths and missing values settled for the model, not just
described), the label's task is decided too, and every choice carries its reason as a
comment for the person who reviews it.

No TensorFlow.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from factory.errors import RecordError
from factory.features.checks import nested_shape
from factory.features.feature import indicator_name
from factory.features.infer_columns import (
    CLASS_ROWS,
    MAX_CLASSES,
    Decision,
    _kind,
    _n,
    _rows,
    _typed,
    column_decision,
)
from factory.features.table_sample import Table
from factory.names import HEAD


@dataclass
class Proposal:
    """A proposed spec: ``features`` (kept), ``label``, ``left_out``, the ``task`` and what was read."""

    table: Table
    features: list[Decision]
    label: Decision
    left_out: list[Decision]
    task: str

    @property
    def sampled(self) -> int:
        """Rows the decisions looked at (all rows read, unless there were more than the sample holds)."""
        return max((len(v) + self.table.missing.get(k, 0) for k, v in self.table.sample.items()), default=0)


def _label(header: str, table: Table) -> tuple[Decision, str]:
    """The label's entry and task: class ids, a vocabulary of classes, binary, or regression."""
    d, counts = Decision(header), table.labels
    values = _typed(table.sample.get(header, []), table)
    kind = _kind(values) if values else "blank"
    if kind == "str":
        classes = sorted(str(c) for c in counts)
        if len(classes) < 2:
            raise RecordError(f"{table.path}: the label '{header}' is {classes[0]!r} in every row; nothing to learn")
        d.entry = {"dtype": "string", "shape": [], "vocabulary": classes}
        d.why["vocabulary"] = f"{len(classes)} distinct strings {_rows(table, table.rows)}: the classes, sorted"
        return d, "classification"
    if kind in ("int", "number"):
        numbers = sorted({float(v) for v in counts})
        distinct, lo, hi = len(numbers), numbers[0], numbers[-1]
        if distinct < 2:
            raise RecordError(f"{table.path}: the label '{header}' is {_n(lo)} in every row; nothing to learn")
        whole = all(x.is_integer() for x in numbers)
        few = distinct <= MAX_CLASSES and distinct * CLASS_ROWS <= table.rows
        rows = _rows(table, table.rows)
        if whole and few and lo >= 0:
            d.entry = {"dtype": "int64", "shape": []}
            if numbers == [0.0, 1.0]:
                d.entry["task"] = "binary"
                d.why["task"] = f"0 and 1 {rows}: a binary label"
                return d, "binary"
            d.entry["num_classes"] = int(hi) + 1
            unused = int(hi) + 1 - distinct
            gap = f"; {unused} ids below {int(hi)} never occur" if unused else ""
            d.why["num_classes"] = f"{distinct} distinct whole numbers {_n(lo)}..{_n(hi)} {rows}: class ids{gap}"
            return d, "classification"
        if whole and few and table.format == "csv":  # negative ids: the classes by their text
            d.entry = {"dtype": "string", "shape": [], "vocabulary": sorted(counts, key=float)}
            d.why["vocabulary"] = f"{distinct} distinct whole numbers {_n(lo)}..{_n(hi)} {rows}: classes, by name"
            return d, "classification"
        d.entry = {"dtype": "float32", "shape": [], "normalize": "auto"}
        d.why["dtype"] = f"{distinct} distinct numbers {rows}, {_n(lo)} to {_n(hi)}: a regression target"
        d.why["normalize"] = "the network predicts it standardised; predictions come back in its units"
        return d, "regression"
    if kind == "list" and len({nested_shape(v) for v in values}) == 1:
        d.entry = {"dtype": "float32", "shape": list(nested_shape(values[0])), "normalize": "auto"}
        d.why["shape"] = "the same number of values in every row: a regression target per value"
        return d, "regression"
    raise RecordError(
        f"{table.path}: the label '{header}' cannot be a label ({kind}); pick a column of classes or numbers"
    )


# -- names --------------------------------------------------------------------------------------

VALID_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def snake_name(text: str, fallback: str = "column") -> str:
    """A valid feature name for ``text``: ``'sepal length (cm)'`` -> ``sepal_length_cm``,
    ``'od280/od315_of_diluted_wines'`` -> ``od280_od315_of_diluted_wines``; unchanged if already valid."""
    if VALID_NAME.match(text):
        return text
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", ascii_text)
    name = re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_").lower()
    if not name:
        return fallback
    return name if name[0].isalpha() else f"{fallback}_{name}"


def _name(d: Decision, used: set[str]) -> None:
    """A valid name that clashes with no other, nor with ``logits`` or an indicator input; ``column`` maps it."""
    base = snake_name(d.header)
    flagged = bool(d.entry and isinstance(d.entry.get("missing"), dict) and d.entry["missing"]["indicator"])
    name, n = base, 1
    while name in used or (flagged and indicator_name(name) in used):
        n += 1
        name = f"{base}_{n}"
    used.update([name, indicator_name(name)] if flagged else [name])
    d.name = name
    if name != d.header:
        why = "the header is not a valid feature name" if base != d.header else "the name is taken"
        if d.header == HEAD:
            why = f"'{HEAD}' names the model's output"
        d.entry = {"column": d.header, **d.entry}
        d.why["column"] = why


def infer_spec(table: Table, label: str, base_dir: Path | None = None) -> Proposal:
    """A spec for ``table`` whose column ``label`` is the label; columns that cannot be inputs are
    left out, each with the reason. ``base_dir`` resolves image file paths (default: the file's)."""
    base_dir = base_dir or Path(table.path).resolve().parent
    label_decision, task = _label(label, table)
    columns = [column_decision(h, table, base_dir) for h in table.headers if h != label]
    features = [d for d in columns if d.entry is not None]
    if not features:
        reasons = "; ".join(f"{d.header}: {d.note}" for d in columns) or "it is the only column"
        raise RecordError(f"{table.path}: no column besides the label '{label}' can be an input ({reasons})")
    used = {HEAD}
    for d in [label_decision, *features]:
        _name(d, used)
    return Proposal(table, features, label_decision, [d for d in columns if d.entry is None], task)
