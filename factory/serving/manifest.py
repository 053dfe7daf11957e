"""An export on disk: the version dir a path stands for, and its manifest. No TensorFlow.

``find_export`` takes any directory of a run's export tree:

- a version dir, ``RUN_DIR/export/<policy>/<version>`` (``saved_model.pb``);
- a policy dir, ``RUN_DIR/export/<policy>``: the version its ``current`` link
  points at, else the highest numbered version;
- an export dir, ``RUN_DIR/export``: its ``best`` policy, else ``final``, else
  ``latest``;
- a run dir, ``RUN_DIR``: the same, through ``export/``.

The manifest (``assets.extra/manifest.json``) says what the export takes and
returns, so inputs can be checked before TensorFlow loads.

Export retention of a running training deletes old versions (by one rename,
see ``factory.serving.export_tree``), possibly between the moment a reader
resolves a path and the moment it has read the version: ``vanished`` tells
that this happened, and ``follow`` resolves the path the reader was given
again. A version is never seen half-written: it appears by a rename when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from factory.errors import RecordError
from factory.names import CURRENT, MANIFEST, POLICY_PREFERENCE, SAVED_MODEL
from factory.run_dir import CONFIG, EXPORT, HYDRA


class PredictError(RecordError):
    """Inputs that do not match what an export takes, or an export that cannot be found or read.

    A ``RecordError``: a record given to predict, like one given to the writer, is named with its
    feature and position.

    ``index`` is the position of the record at fault in the batch given to
    ``Predictor.predict_examples`` (None otherwise) and ``detail`` the message without it.
    """

    def __init__(self, message: str, index: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.index = index
        self.detail = detail if detail is not None else message


def _is_version(path: Path) -> bool:
    return (path / SAVED_MODEL).is_file()


def _policy_version(path: Path) -> Path | None:
    """The version a policy dir stands for: ``current``'s target, else the highest numbered one."""
    current = path / CURRENT
    try:  # read the link once: a training run may move or remove it meanwhile
        target = path / os.readlink(current)
    except OSError:  # no link (or a plain dir named current)
        target = current
    if _is_version(target):
        return target
    try:
        numbered = [p for p in path.iterdir() if p.name.isdigit() and not p.is_symlink() and _is_version(p)]
    except OSError:
        return None
    return max(numbered, key=lambda p: int(p.name)) if numbered else None


def _export_version(path: Path) -> Path | None:
    for policy in POLICY_PREFERENCE:
        if (path / policy).is_dir():
            found = _policy_version(path / policy)
            if found is not None:
                return found
    return None


def _run_version(path: Path) -> Path | None:
    return _export_version(path / EXPORT)


def find_export(path: str | os.PathLike) -> Path:
    """The version dir ``path`` stands for (see the module docstring); ``PredictError`` if there is none.

    ``path`` may also name the ``saved_model.pb`` file itself.
    """
    given = Path(path).expanduser()
    if given.name == SAVED_MODEL and given.is_file():
        given = given.parent
    if given.is_symlink():  # e.g. <policy>/current: read the version it points at now, even if it moves on
        given = given.resolve()
    if not given.exists():
        raise PredictError(f"export not found: {given} does not exist")
    if not given.is_dir():
        raise PredictError(
            f"{given} is a file, not an export directory; pass RUN_DIR/export/<policy>/<version> or a directory above it"
        )
    if _is_version(given):
        return given
    for look in (_policy_version, _export_version, _run_version):
        found = look(given)
        if found is not None:
            return found
    raise PredictError(
        f"{given}: no export found; looked for {SAVED_MODEL} (a version dir, RUN_DIR/export/<policy>/<version>), "
        f"a `{CURRENT}` link or numbered versions (a policy dir), {', '.join(p + '/' for p in POLICY_PREFERENCE)} "
        "(an export dir, RUN_DIR/export) and export/ (a run dir). Train with an export policy enabled "
        "(export.best.enabled=true) to write one"
    )


def read_manifest(version_dir: str | os.PathLike) -> dict[str, Any]:
    """The export's ``assets.extra/manifest.json`` as a dict; ``PredictError`` if it is missing or not a manifest."""
    path = Path(version_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictError(
            f"{path.parent.parent}: a SavedModel without {MANIFEST}; factory loads exports written by a "
            "factory run (RUN_DIR/export/<policy>/<version>)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictError(f"{path}: cannot read the export's manifest ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("feature_spec"), dict):
        raise PredictError(f"{path}: not an export manifest (no `feature_spec`); was it written by factory?")
    return manifest


def vanished(version_dir: str | os.PathLike) -> bool:
    """Whether the version dir ``version_dir`` is gone (deleted by retention, or replaced and not yet back)."""
    return not _is_version(Path(version_dir))


def follow(given: str | os.PathLike, gone: str | os.PathLike) -> Path:
    """The version to read instead of ``gone``, deleted while it was read: ``given`` (what the reader was asked
    to load) resolved again.

    ``PredictError`` (one line) when ``given`` named ``gone`` itself, or when no version is left under it.
    """
    given, gone = Path(given).expanduser(), Path(gone)
    why = f"{gone} was deleted while it was being loaded (export retention of a running training removes old versions)"
    named = given.parent if given.name == SAVED_MODEL else given
    if not given.is_symlink() and os.path.abspath(named) == os.path.abspath(gone):
        raise PredictError(f"{why}; pass its policy dir ({gone.parent}) to load the version that replaced it")
    try:
        return find_export(given)
    except PredictError:
        raise PredictError(
            f"{why}, and {given} holds no other export; train with an export policy to write one"
        ) from None


def model_base(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """What ``factory serve PATH`` watches: ``(policy dir, None)``, TF Serving's model base path whose
    numbered versions come and go, or ``(its policy dir, version dir)`` when ``path`` names one version.

    A run dir or an export dir stands for its ``best`` policy, else ``final``, else ``latest``; one
    with no export yet stands for ``export/best``, whose first version a running training may still
    write. ``PredictError`` if ``path`` does not exist or is none of these.
    """
    given = Path(path).expanduser()
    if given.name == SAVED_MODEL and given.is_file():
        given = given.parent
    if given.is_symlink():
        given = given.resolve()
    if not given.is_dir():
        raise PredictError(
            f"{given} does not exist" if not given.exists() else f"{given} is a file, not an export directory"
        )
    if _is_version(given):
        return given.parent, given
    if any(p.name.isdigit() for p in given.iterdir()) or (given / CURRENT).is_symlink():
        return given, None
    export = given if given.name == EXPORT else given / EXPORT
    for policy in POLICY_PREFERENCE:
        if (export / policy).is_dir():
            return export / policy, None
    if export.is_dir() or (given / CONFIG).is_file() or (given / HYDRA).is_dir():
        return export / POLICY_PREFERENCE[0], None
    raise PredictError(
        f"{given}: not a run dir, an export dir, a policy dir or a version dir; pass RUN_DIR, "
        "RUN_DIR/export/<policy> (TF Serving's model base path) or RUN_DIR/export/<policy>/<version>"
    )


def manifest_model_name(manifest: dict[str, Any]) -> str | None:
    """The model name the export was written for (``export.model_name``), or None if it does not say."""
    serving = manifest.get("serving") or {}
    name = serving.get("model_name")
    if isinstance(name, str) and name:
        return name
    url = serving.get("rest_url")
    if isinstance(url, str) and "/v1/models/" in url:
        return url.split("/v1/models/", 1)[1].split(":", 1)[0] or None
    return None
