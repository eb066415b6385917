"""RFC 7622 domainpart comparison."""

from __future__ import annotations

import pytest

from esxmpp.jid import domain_key, same_domain


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("torA.lab", "tora.lab", True),
        ("TORA.LAB.", "tora.lab", True),
        ("bücher.example", "xn--bcher-kva.example", True),
        ("BÜCHER.example", "bücher.example", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("[::1]", "[::1]", True),
        ("tora.lab", "torb.lab", False),
        ("tora.lab", "tora.lab.example", False),
    ],
)
def test_same_domain(a: str, b: str, same: bool) -> None:
    assert same_domain(a, b) is same


def test_domain_key() -> None:
    assert domain_key("Fwd1.Test.") == "fwd1.test"
