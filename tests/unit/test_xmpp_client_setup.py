"""A connection attempt of the XMPP client does not load the system CA store.

slixmpp builds a default SSL context (ssl.create_default_context plus
set_default_verify_paths) unless it is given one; that is about 200 ms of CPU
on the event loop per attempt, and an agent retries every route server that
is down: its loop stalled for 0.3 s at each route-server restart in the chaos
lab. The client must hand slixmpp its own context instead.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from esxmpp.client import XmppClient
from esxmpp.config import ClientConfig
from esxmpp.pki import make_pki


def test_connection_attempt_builds_no_default_ssl_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path)
    cert = pki.client("02aa00000001")
    cfg = ClientConfig(
        jid="02aa00000001@rs1.lab",
        host="127.0.0.1",
        port=5222,
        certfile=cert.certfile,
        keyfile=cert.keyfile,
        cafile=pki.cafile,
    )
    made: list[Any] = []
    real = ssl.create_default_context

    def observed(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if not any(kwargs.get(k) for k in ("cafile", "capath", "cadata")):
            made.append(args)  # a context that loads the system CA store
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", observed)
    xmpp = XmppClient(cfg)._make()
    assert made == []
    # the context it uses is ours: our CA, our client certificate, TLS verified
    assert xmpp.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in xmpp.ssl_context.get_ca_certs()] == [
        ((("commonName", "esvpn test CA"),),)
    ]
