"""The output of ``factory predict``: one JSON object per record, ``{"index": i, <output>: value, ...}``.

Every line is strict JSON (RFC 8259): a float output that is NaN or infinite
(a model can overflow on extreme but finite inputs) is written as ``null``,
never as the bare ``NaN``/``Infinity`` most JSON parsers reject. Inputs are
checked to be finite before they reach the model (``factory.serving.inputs``).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from factory.errors import RecordError


class JsonLinesOutput:
    """JSON Lines to standard output (``path`` None), or to a file that appears only when every prediction is written.

    Use it as a context manager; ``count`` is the number of records written.
    On an exception the partial file is removed and ``path`` is left as it was.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.count = 0
        self._file: IO[str] | None = None
        self._partial: Path | None = None

    def __enter__(self) -> JsonLinesOutput:
        if self.path is None:
            self._file = sys.stdout
            return self
        if self.path.is_dir():
            raise RecordError(
                f"--output {self.path} is a directory; give a file name, e.g. {self.path / 'predictions.jsonl'}"
            )
        if not self.path.parent.is_dir():
            raise RecordError(f"--output {self.path}: the directory {self.path.parent} does not exist")
        self._partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        try:
            self._file = open(self._partial, "w", encoding="utf-8")
        except OSError as err:
            raise RecordError(f"cannot write {self.path}: {err.strerror or err}") from None
        return self

    def write(self, indexes: Sequence[int], outputs: Mapping[str, np.ndarray]) -> None:
        """One line per example of ``outputs`` (arrays whose first axis counts examples); ``indexes``: their
        positions in the input, written as ``"index"``."""
        columns = {name: _json_column(values) for name, values in outputs.items()}
        lines = (
            json.dumps({"index": index, **{name: col[i] for name, col in columns.items()}}, allow_nan=False)
            for i, index in enumerate(indexes)
        )
        self._file.write("".join(line + "\n" for line in lines))
        self.count += len(indexes)

    def __exit__(self, kind, error, tb) -> None:
        if self._partial is None:
            if self._file is not None:
                self._file.flush()
            return
        self._file.close()
        if kind is None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)


def _json_text(item: Any) -> Any:
    # Bytes that are not UTF-8 text travel as base64, the way TF Serving's REST API writes them.
    if isinstance(item, bytes):
        try:
            return item.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(item).decode()}
    return item


def _json_column(values: np.ndarray) -> list:
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():  # NaN and infinities: null (see the module docstring)
            values = np.where(finite, values, None)
        return values.tolist()
    if values.dtype.kind not in "SO":
        return values.tolist()
    return [np.vectorize(_json_text, otypes=[object])(v).tolist() if np.ndim(v) else _json_text(v) for v in values]
