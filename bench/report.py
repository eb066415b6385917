"""Where each benchmark puts its figures: ``<out>/<name>.json``, indented,
one file a script (bench/__main__.py passes the same --out to all)."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(out: str | Path, name: str, result: object) -> Path:
    """``result`` as ``<out>/<name>.json`` (``out`` created if need be)."""
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
