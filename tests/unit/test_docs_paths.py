"""The documentation describes only what exists: every repository path a
README or design note names in backticks is in the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
# `dir/...` in backticks: a path inside one of the repository's top-level folders
PATH = re.compile(r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_./*-]*)`")
GENERATED = {"p4src/build", "bench/results"}  # made by make p4 / make bench


def _docs() -> list[Path]:
    skip = {".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    return sorted(p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts))


def _named_paths(doc: Path) -> list[str]:
    found = []
    for m in PATH.finditer(doc.read_text(encoding="utf-8")):
        path = m.group(1)
        if path.split("/", 1)[0] in TOP and not any(path.startswith(g) for g in GENERATED):
            found.append(path)
    return found


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(doc: Path) -> None:
    missing = [p for p in _named_paths(doc) if not any(ROOT.glob(p.rstrip("/")))]
    assert missing == []
