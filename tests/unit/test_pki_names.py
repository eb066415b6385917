"""``esvpn certs`` names: a system id is a client, anything else a server domain."""

from __future__ import annotations

import pytest

from esxmpp.pki import classify


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("02aa00000001", ("02aa00000001", False)),
        ("02:AA:00:00:00:01", ("02aa00000001", False)),
        ("02aa.0000.0001", ("02aa00000001", False)),
        ("torA.lab", ("tora.lab", True)),
        ("rs.example.net.", ("rs.example.net", True)),
        ("localhost", ("localhost", True)),
        ("127.0.0.1", ("127.0.0.1", True)),
    ],
)
def test_classify(name: str, want: tuple[str, bool]) -> None:
    assert classify(name) == want


@pytest.mark.parametrize("name", ["", "a b", "a..b", "x" * 64 + ".lab", "bücher.lab", "a/b"])
def test_classify_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="neither a system id nor a domain name"):
        classify(name)
