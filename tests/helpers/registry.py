"""Helpers for the network registry tests: an isolated registry, user modules and installed plugins on disk."""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.networks import registry
from factory.networks.registry import known_networks

# Modules that tests write and import; they are dropped from sys.modules afterwards.
TEST_MODULE_PREFIXES = ("plug_", "user_nets", "bad_", "dup_", "needs_")


@contextlib.contextmanager
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside, the registry holds the built-ins only; on leaving, registry, sys.path and sys.modules are restored."""
    known_networks()  # load the built-ins before the snapshot
    networks = dict(registry._networks)
    raw = dict(registry._raw)
    loaded = set(registry._loaded_entry_points)
    failed = dict(registry._failed_entry_points)
    module_eps = dict(registry._module_entry_points)
    modules = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    registry._networks.clear()
    registry._networks.update(networks)
    registry._raw.clear()
    registry._raw.update(raw)
    registry._loaded_entry_points.clear()
    registry._loaded_entry_points.update(loaded)
    registry._failed_entry_points.clear()
    registry._failed_entry_points.update(failed)
    registry._module_entry_points.clear()
    registry._module_entry_points.update(module_eps)
    for name in set(sys.modules) - modules:
        if name.startswith(TEST_MODULE_PREFIXES):
            del sys.modules[name]


def write_module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return path


def write_distribution(directory: Path, dist: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution: what `pip install` leaves in site-packages."""
    info = directory / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[factory.networks]\n" + "\n".join(lines) + "\n")
    importlib.invalidate_caches()
