"""Suite-wide options: which data-plane target the packet tests run on."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target",
        action="store",
        default="soft",
        choices=("soft", "bmv2"),
        help="data-plane target for tests/packet: soft (embedded) or bmv2 (simple_switch_grpc)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        for layer in ("unit", "packet", "system"):
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))
