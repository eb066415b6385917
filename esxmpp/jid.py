"""JID comparison (RFC 7622).

A domainpart is case-insensitive: it is compared after removing one trailing
dot (§3.2), mapping internationalized labels to their ASCII form (IDNA, as
Python's ``idna`` codec does) and lower-casing, so ``torA.lab``,
``tora.lab`` and ``TORA.LAB.`` are the same server. Localparts are not
compared as text here: the dialect's localparts are system ids, which
:func:`esxmpp.dialect.parse_system_id` reads case-insensitively.
"""

from __future__ import annotations

import contextlib


def domain_key(domain: str) -> str:
    """The form of a JID domainpart two domains are compared in."""
    d = domain[:-1] if domain.endswith(".") else domain
    with contextlib.suppress(UnicodeError):  # not an IDNA name (an IP literal): as is
        d = d.encode("idna").decode("ascii")
    return d.lower()


def same_domain(a: str, b: str) -> bool:
    """True when the two domainparts name the same domain (RFC 7622 §3.2)."""
    return domain_key(a) == domain_key(b)
