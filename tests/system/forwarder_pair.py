"""Two forwarders (Labs A and B) on one route server of the project's own
(routeserver/): the route server's configuration and the start of both labs,
shared by the system tests that run them together."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esxmpp.testing import Pki
from routeserver.config import load_dict
from routeserver.server import RouteServer
from tests.system.test_agent_flow import Lab

A_FWD, B_FWD = "02aa00000001", "02aa00000002"
A_HOST, B_HOST = "0a0000000001", "0a0000000002"


def route_server(pki: Pki, vpns: Mapping[str, str] | None = None, **xmpp: Any) -> RouteServer:
    """A route server on free ports that takes external forwarders' relayed
    nodes; ``vpns``: route target of each VRF (red 64512:100 by default),
    ``xmpp``: further keys of its [xmpp] table."""
    cert = pki.server("rs.test")
    return RouteServer(
        load_dict(
            {
                "server": {"router_id": "127.0.6.1", "asn": 64512},
                "xmpp": {
                    "domain": "rs.test",
                    "certfile": str(cert.certfile),
                    "keyfile": str(cert.keyfile),
                    "cafile": str(pki.cafile),
                    "port": 0,
                    # external forwarders relay their end-systems' nodes
                    "own_nodes_only": False,
                    **xmpp,
                },
                "control": {"port": 0},
                "vrf": [
                    {"vpn": vpn, "import_targets": [rt], "export_targets": [rt]}
                    for vpn, rt in (vpns or {"red": "64512:100"}).items()
                ],
            }
        )
    )


def two_labs(tmp: Path, pki: Pki) -> tuple[Lab, Lab]:
    """Forwarder A (infra 192.0.2.1) and B (192.0.2.2), one end-system each."""
    return (
        Lab(tmp / "a", pki, A_FWD, A_HOST, "192.0.2.1"),
        Lab(tmp / "b", pki, B_FWD, B_HOST, "192.0.2.2"),
    )


async def start_labs(rs_port: int, *labs: Lab) -> None:
    """Each lab's switch, agent (to the route server on ``rs_port``) and end-system."""
    for lab in labs:
        lab.rs_address = ("127.0.0.1", rs_port)
        await lab.start_switch()
        await lab.start_agent()
        await lab.start_host()
