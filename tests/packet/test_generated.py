"""The embedded target's generated code against its closures, byte for byte.

``SoftEngine`` compiles every program to closures, then generates Python
source for the per-packet path; ``SoftEngine(generate=False)`` runs the
closures alone. The same entries and the same frames (the differential
corpus: every feature, and seeded mutants) go into both, in process: every
frame out of every port and every counter cell must be equal. Runs in every
pass of the suite (it needs no other target).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.packet.harness import PORTS, Dataplane
from tests.packet.test_differential import _corpus, _program, counter_differences


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Dataplane, Dataplane]]:
    gen, ref = Dataplane("soft"), Dataplane("soft-closures")
    try:
        gen.start()
        ref.start()
        yield gen, ref
    finally:
        gen.stop()
        ref.stop()


def _drain(dp: Dataplane) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {p: [] for p in PORTS}
    for p in PORTS:
        while (f := dp.backend.recv(p, 0.0)) is not None:
            out[p].append(f)
    return out


def test_generated_code_emits_what_the_closures_emit(pair: tuple[Dataplane, Dataplane]) -> None:
    gen, ref = pair
    assert gen.backend.synchronous and ref.backend.synchronous
    for sw in (gen, ref):
        sw.reset()
        _program(sw)
    frames = _corpus()
    emitted = 0
    for i, (port, frame) in enumerate(frames):
        gen.send(port, frame)
        ref.send(port, frame)
        want, got = _drain(ref), _drain(gen)
        assert got == want, f"frame {i} in port {port}: {frame.hex()}"
        emitted += sum(map(len, want.values()))
    # the corpus is not all drops: forwarding, replication and replies happened
    # (most bit-flipped mutants fail a header checksum now: BAD_CHECKSUM)
    assert emitted > len(frames) // 6
    differ = counter_differences(gen, ref)
    assert not differ, "\n".join(differ)
