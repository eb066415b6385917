"""Faults for the chaos suite and ``bench/faults.py``, and what "recovered" means.

Each fault breaks one part of a running lab and repairs it the way an
operator (or a supervisor such as systemd) would: a killed daemon is started
again, a cut link is healed. ``run_fault`` applies one under traffic and
measures: packets lost (sequence numbers that never arrived), time to
recover (from the fault until every flow delivers again), and then waits
for the whole system to hold exactly the intended state:

- every agent's switch holds what the agent intends (``/v1/diff`` empty), and
  each agent selects exactly the routes of its VPNs: its own end-systems'
  addresses delivered locally, the other ToR's through the other ToR's
  tunnel endpoint;
- every route server holds, per VRF, each end-system address from XMPP (its
  forwarders publish to both route servers), none stale, and nothing else
  (from BGP: the other route server's path for the same address, when the
  reflector's best path is not its own: both use the forwarder's RD);
- the reflector holds each address once per route server, with the RD and
  next hop that route server advertises for it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lab.lab import Lab, LabError, poll


@dataclass
class FaultResult:
    fault: str
    lost: int  # packets that never arrived, all flows together
    recovery: float  # seconds from the fault until the last packet loss ended
    converged: float  # seconds from the fault until the state was exact again
    outages: list[dict[str, Any]] = field(default_factory=list)
    loop_lag: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# ---- faults: each breaks and repairs; returns when the repair is under way --


def restart(lab: Lab, name: str, sig: int = signal.SIGKILL) -> None:
    if sig == signal.SIGKILL:
        lab.kill(name)
    else:
        took = lab.terminate(name)
        if took > 5.0:
            raise LabError(f"{name} took {took:.1f} s to exit after SIGTERM")
    lab.start(name)


def kill_exabgp(lab: Lab, rs: str) -> None:
    pid = lab.exabgp_pid(rs)
    if pid is None:
        raise LabError(f"{rs} has no ExaBGP child")
    os.kill(pid, signal.SIGKILL)

    # the route server starts a new one: wait until its peer is up again
    def renewed() -> bool:
        return lab.exabgp_pid(rs) not in (None, pid)

    poll(renewed, 30, f"{rs} to start a new ExaBGP")


def restart_end_system(lab: Lab, name: str) -> None:
    """kill -9 of an end-system's host tool; it keeps nothing on disk, so its
    hypervisor hook subscribes and publishes again once it is back (within
    the agent's retention, so the vif, its label and routes are kept)."""
    restart(lab, f"host-{name}")
    lab.join(lab.topo.end_system(name))


def route_server_outage(lab: Lab, rs: str, seconds: float) -> None:
    lab.kill(rs)
    time.sleep(seconds)  # the outage itself is the fault: a deliberate wait
    lab.start(rs)


def cut_session(lab: Lab, tor: str, rs: str, seconds: float) -> None:
    lab.cut(f"tor{tor}", rs)
    time.sleep(seconds)  # the outage itself is the fault: a deliberate wait
    lab.cut(f"tor{tor}", rs, on=False)


def faults(lab: Lab) -> dict[str, Callable[[], None]]:
    """Every fault of the suite, by name, for this lab."""
    t = lab.topo
    out: dict[str, Callable[[], None]] = {}
    for tor in t.tors:
        out[f"kill-agent-{tor.name}"] = partial(restart, lab, f"agent-{tor.name}")
        out[f"kill-switch-{tor.name}"] = partial(restart, lab, f"switch-{tor.name}")
    for rs in t.route_servers:
        out[f"kill-{rs.name}"] = partial(restart, lab, rs.name)
        out[f"kill-{rs.name}-exabgp"] = partial(kill_exabgp, lab, rs.name)
    es = t.end_systems[0]
    out[f"kill-host-{es.name}"] = partial(restart_end_system, lab, es.name)
    out["kill-reflector"] = partial(restart, lab, "rr")
    rs0 = t.route_servers[0].name
    out[f"{rs0}-down-past-stale"] = partial(route_server_outage, lab, rs0, lab.stale + 2.0)
    tor0 = t.tors[0].name
    out[f"cut-tor{tor0}-{rs0}"] = partial(cut_session, lab, tor0, rs0, 4.0)
    for name in (
        [f"agent-{x.name}" for x in t.tors]
        + [r.name for r in t.route_servers]
        + [f"switch-{t.tors[0].name}"]
    ):
        out[f"sigterm-{name}"] = partial(restart, lab, name, signal.SIGTERM)
    return out


# ---- looking at the lab -----------------------------------------------------


def flow_state(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every expected flow's receive record, by flow name."""
    out: dict[str, dict[str, Any]] = {}
    for es in lab.topo.end_systems:
        status = lab.traffic(es.name)
        if status["leaks"] or status["unexpected"]:
            raise LabError(f"{es.name} received another VPN's or a wrong frame: {status}")
        out.update(status["received"])
    return out


def flowing_since(lab: Lab, since: float) -> bool:
    """Every flow delivered a packet after ``since`` (CLOCK_MONOTONIC);
    LabError naming the flows that did not."""
    late = {
        f: round(since - r["last"], 2) for f, r in flow_state(lab).items() if r["last"] <= since
    }
    if late:
        raise LabError(f"flows silent (seconds before the mark): {late}")
    return True


def flowing_recently(lab: Lab, within: float = 0.5) -> bool:
    return flowing_since(lab, time.monotonic() - within)


def expected_agent_routes(lab: Lab, tor: str) -> set[tuple[str, str, str]]:
    t = lab.topo
    out = set()
    for es in t.end_systems:
        if not any(o.tor == tor and o.vpn == es.vpn for o in t.end_systems):
            continue  # a VPN this ToR does not serve
        for a in es.addresses:
            plen = 32 if ipaddress.ip_address(a).version == 4 else 128
            via = "local" if es.tor == tor else t.tor(es.tor).infra
            out.add((es.vpn, f"{a}/{plen}", via))
    return out


def agent_routes(lab: Lab, tor: str) -> set[tuple[str, str, str]]:
    out = set()
    for r in lab.agent_show(tor, "routes"):
        if r["source"] != "route-server":
            continue
        for hop in r["nexthops"]:
            via = "local" if hop.startswith("local") else hop.split()[0]
            out.add((r["vpn"], r["prefix"], via))
    return out


def expected_routes(lab: Lab) -> set[tuple[str, str, str]]:
    """(VPN, prefix, tunnel endpoint) of every end-system address."""
    out = set()
    for es in lab.topo.end_systems:
        for a in es.addresses:
            plen = 32 if ipaddress.ip_address(a).version == 4 else 128
            out.add((es.vpn, f"{a}/{plen}", lab.topo.tor(es.tor).infra))
    return out


def rs_problems(lab: Lab, rs: str, want: set[tuple[str, str, str]]) -> list[str]:
    """A route server must hold every address once from XMPP (its own
    forwarders publish to it), nothing stale, and from BGP (the other route
    server's path, when the reflector's best is not its own) only those."""
    routes = lab.rs_show(rs, "routes")
    xmpp = {(r["vrf"], r["prefix"], r["nexthop"]) for r in routes if r["source"] == "xmpp"}
    every = {(r["vrf"], r["prefix"], r["nexthop"]) for r in routes}
    stale = [(r["vrf"], r["prefix"], r["source"]) for r in routes if r["stale"]]
    problems = []
    if xmpp != want:
        problems.append(f"{rs}: from XMPP extra {xmpp - want}, missing {want - xmpp}")
    if every - want:
        problems.append(f"{rs}: unexpected {every - want}")
    if stale:
        problems.append(f"{rs}: stale {stale}")
    return problems


def expected_rr_routes(lab: Lab) -> set[tuple[str, str, str, str]]:
    """Each route server's XMPP routes, as it advertises them: (RD, prefix,
    next hop, route server address)."""
    out = set()
    for rs in lab.topo.route_servers:
        for r in lab.rs_show(rs.name, "routes"):
            if r["source"] == "xmpp":
                out.add((r["rd"], r["prefix"], r["nexthop"], lab.mgmt(rs.name)))
    return out


def rr_routes(lab: Lab) -> set[tuple[str, str, str, str]]:
    out = set()
    for fam in ("vpnv4", "vpnv6"):
        text = lab.gobgp("-j", "global", "rib", "-a", fam)
        table = json.loads(text) if text.strip() else {}
        for paths in table.values():
            for p in paths:
                rd = p["nlri"]["rd"]
                nh = next(a["nexthop"] for a in p["attrs"] if a["type"] == 14 or a["type"] == 3)
                rd_text = f"{rd['admin']}:{rd['assigned']}"
                nh += " (stale)" if p.get("stale") else ""
                out.add((rd_text, p["nlri"]["prefix"], nh, p.get("neighbor-ip", "?")))
    return out


def state_differences(lab: Lab) -> list[str]:
    """What differs from the intended state (empty: exact)."""
    problems = []
    for tor in lab.topo.tors:
        diff = lab.agent_show(tor.name, "diff")
        if diff.get("updates"):
            problems.append(f"agent {tor.name}: switch differs: {diff['updates'][:5]}")
        got, want = agent_routes(lab, tor.name), expected_agent_routes(lab, tor.name)
        if got != want:
            problems.append(f"agent {tor.name}: extra {got - want}, missing {want - got}")
    want = expected_routes(lab)
    for rs in lab.topo.route_servers:
        problems += rs_problems(lab, rs.name, want)
    got_rr, want_rr = rr_routes(lab), expected_rr_routes(lab)
    if got_rr != want_rr:
        problems.append(f"reflector: extra {got_rr - want_rr}, missing {want_rr - got_rr}")
    return problems


def wait_exact(lab: Lab, timeout: float) -> None:
    last: list[str] = []

    def exact() -> bool:
        nonlocal last
        last = state_differences(lab)
        return not last

    try:
        poll(exact, timeout, "the intended state", every=0.2)
    except LabError as exc:
        raise LabError(f"{exc}: {last}") from None


def loop_lags(lab: Lab) -> dict[str, float]:
    """Worst event-loop lag each daemon reports in /metrics, where it does."""
    out: dict[str, float] = {}
    for tor in lab.topo.tors:
        out[f"agent-{tor.name}"] = _metric_max(lab.agent_metrics(tor.name))
    for rs in lab.topo.route_servers:
        out[rs.name] = _metric_max(lab.rs_metrics(rs.name))
    return {k: v for k, v in out.items() if v >= 0}


def _metric_max(text: str) -> float:
    """The ``*_loop_lag_recent_max_seconds`` gauge of a /metrics text, or -1."""
    for fam in text_string_to_metric_families(text):
        if fam.name.endswith("_loop_lag_recent_max_seconds"):
            return max(float(s.value) for s in fam.samples)
    return -1.0


def run_fault(
    lab: Lab, name: str, recover_within: float = 60.0, converge_within: float = 90.0
) -> FaultResult:
    """Apply one fault under traffic and measure it (see the module text)."""
    fault = faults(lab)[name]
    poll(partial(flowing_recently, lab), 30, "traffic before the fault")
    wait_exact(lab, 30)
    before = flow_state(lab)
    t0 = time.monotonic()
    fault()
    repaired = time.monotonic()
    poll(partial(flowing_since, lab, repaired), recover_within, f"traffic after {name}")
    wait_exact(lab, converge_within)
    converged = time.monotonic() - t0
    # the timers that could still undo the recovery (stale routes, retained
    # end-system state) run out in this window: the state must stay exact
    time.sleep(max(lab.stale, lab.retention) + 1.0)
    poll(partial(flowing_recently, lab), 5, f"traffic to keep flowing after {name}")
    problems = state_differences(lab)
    if problems:
        raise LabError(f"after {name}, the state changed once the timers ran out: {problems}")
    # only a gap below a later arrival counts as lost: once every flow has
    # delivered again after this mark, the count is complete
    poll(partial(flowing_since, lab, time.monotonic()), 5, "the last packets")
    after = flow_state(lab)
    lost = sum(after[f]["missing"] - before[f]["missing"] for f in after)
    outages = [
        {"flow": f, **o}
        for f, r in after.items()
        for o in r["outages"][len(before[f]["outages"]) :]
    ]
    # an arrival gap without a lost packet is delay (a busy CPU), not an outage
    recovery = max((o["end"] - t0 for o in outages if o["lost"]), default=0.0)
    return FaultResult(name, lost, round(recovery, 3), round(converged, 3), outages, loop_lags(lab))
