"""Fixtures of the packet suite: one switch per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.packet.harness import Dataplane


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that compare against bmv2 belong to the bmv2 pass of the suite
    (`make test` runs it when simple_switch_grpc is installed)."""
    if config.getoption("--target") == "bmv2":
        return
    keep = [i for i in items if i.get_closest_marker("needs_bmv2") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def dataplane(request: pytest.FixtureRequest) -> Iterator[Dataplane]:
    dp = Dataplane(str(request.config.getoption("--target")))
    dp.start()
    try:
        yield dp
    finally:
        dp.stop()


@pytest.fixture
def dp(dataplane: Dataplane) -> Iterator[Dataplane]:
    """A switch with a fresh pipeline; fails the test if a frame is left over."""
    dataplane.reset()
    yield dataplane
    dataplane.expect_nothing()
