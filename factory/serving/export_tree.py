"""The export tree on disk, as its writer sees it: publishing, pointing ``current`` and retention. No TensorFlow.

``RUN_DIR/export/<policy>/<version>/`` holds one complete SavedModel. A version
appears and disappears by ``rename`` only, so a reader sees a whole version or
none, never half of one:

- an export is written aside, into ``RUN_DIR/export/.staging-<policy>-<version>-<pid>``,
  and renamed into place when it is complete and verified (``publish``);
- retention renames a version to ``RUN_DIR/export/.deleting-...`` and only then
  removes its files (``prune``).

Names starting with ``.`` are never versions: ``find_export`` (``factory.serving.manifest``)
lists numbered directories only, and ``remove_leftovers`` removes the staging and
trash dirs of writers that died.

Retention does not wait for readers. A version can be deleted between the moment
a reader resolves it and the moment TensorFlow has read it; the reader then
resolves the same path again and loads the version that replaced it (``Predictor``).
Deferring deletion while a version is read would need a protocol between
processes (a lease or lock file per reader, and a rule for the leases of readers
that died), and a training run would keep old versions because of a stuck
reader; the retry needs nothing from the writer and costs nothing when no
version is deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from factory.names import CURRENT
from factory.processes import alive
from factory.run_dir import EXPORT

# Prefixes of the export dir's hidden entries: an export being written, a version being replaced, one being deleted.
STAGING, STALE, DELETING = ".staging-", ".stale-", ".deleting-"


class ExportTree:
    """The versions of a run's export policies: list them, publish one, point ``current``, delete old ones."""

    def __init__(self, run_dir: str | os.PathLike):
        self.root = Path(run_dir) / EXPORT

    def remove_leftovers(self) -> None:
        """Staging and trash dirs of processes that died mid-export (never visible as versions)."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            kind, _, pid = path.name.rpartition("-")
            if kind.startswith((STAGING, STALE, DELETING)) and pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)

    def policy_dir(self, policy: str) -> Path:
        return self.root / policy

    def current(self, policy: str) -> int | None:
        """The version ``<policy>/current`` points at, or None."""
        link = self.policy_dir(policy) / CURRENT
        try:
            return int(os.readlink(link))
        except (OSError, ValueError):
            return None

    def versions(self, policy: str) -> list[int]:
        """The published versions of ``policy``, ascending."""
        directory = self.policy_dir(policy)
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and not p.is_symlink())

    def staging(self, policy: str, version: int) -> Path:
        """Where this process writes ``<policy>/<version>`` before ``publish`` (removed if it was there)."""
        path = self.root / f"{STAGING}{policy}-{version}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def publish(self, staging: Path, policy: str, version: int) -> Path:
        """Rename the complete export ``staging`` to ``<policy>/<version>`` (replacing one left there); returns it."""
        final = self.policy_dir(policy) / str(version)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # left by a run killed after this export and before its checkpoint
            stale = self.root / f"{STALE}{policy}-{version}-{os.getpid()}"
            os.rename(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, final)
        return final

    def point(self, policy: str, version: int) -> None:
        """Atomically point ``<policy>/current`` at ``version``."""
        link = self.policy_dir(policy) / CURRENT
        tmp = self.policy_dir(policy) / f".{CURRENT}-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(str(version), tmp)
        os.replace(tmp, link)

    def prune(self, policy: str, versions: Sequence[int]) -> list[int]:
        """Delete exported versions (never the one ``current`` points at); returns those deleted.

        Each version leaves the policy dir by one rename before its files are
        removed; a reader loading it at that moment resolves its path again (see the module docstring).
        """
        keep = self.current(policy)
        deleted = []
        for version in versions:
            path = self.policy_dir(policy) / str(version)
            if version != keep and path.is_dir():
                trash = self.root / f"{DELETING}{policy}-{version}-{os.getpid()}"
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)
                deleted.append(version)
        return deleted

    def remove_newer(self, policy: str, next_version: int) -> list[int]:
        """Delete versions >= ``next_version``: exports written after the checkpoint a run resumes from."""
        orphans = [v for v in self.versions(policy) if v >= next_version]
        current = self.current(policy)
        if current is not None and current >= next_version:
            (self.policy_dir(policy) / CURRENT).unlink(missing_ok=True)
            older = [v for v in self.versions(policy) if v < next_version]
            if older:
                self.point(policy, older[-1])
        return self.prune(policy, orphans)
