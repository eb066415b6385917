"""The lab: the whole system as real processes in network namespaces.

``Lab(topology, workdir).up()`` makes the namespaces and links, a CA and
certificates (mutual TLS on both XMPP hops), every daemon's configuration,
and starts, in order: the GoBGP route reflector, the route servers (each
with its ExaBGP), the switches (the embedded target, or simple_switch_grpc
with ``target="bmv2"``), the agents, each end-system's ``esvpn host run``
session (which then subscribes its VLAN and publishes its addresses), and
each end-system's traffic generator (lab/traffic.py). ``down()`` stops every
process (SIGTERM, and records how long each took to exit) and removes every
namespace; ``python -m lab down`` does the same from another process,
through the record the lab keeps in ``workdir/lab.json``.

Layout (names carry the topology's prefix ``P``)::

    P-hub: bridge br0 joining every node's mgmt0 and the root namespace's
           P-mgmt (the management network: XMPP, BGP, control APIs)
    P-tora, P-torb: switch + agent; fab0 is the fabric link between them,
           pN the switch port of the end-system on port N
    P-rs1, P-rs2: route server + ExaBGP;  P-rr: gobgpd (route reflector)
    P-h1..: end-system: eth0 to its ToR's port, its host session, traffic
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import tomli_w

from bmv2 import switch_command
from lab import netns
from lab.topology import ASN, FABRIC, EndSystem, Topology

REPO = Path(__file__).resolve().parents[1]
P4INFO = REPO / "p4src/build/esvpn.p4info.txtpb"
BMV2_JSON = REPO / "p4src/build/esvpn.json"
XMPP_PORT = 5222
AGENT_CONTROL = 9180
RS_CONTROL = 8179
GOBGP_API = 50051
RECORDS = Path("/run/esvpn-lab")


class LabError(RuntimeError):
    pass


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """``check()``'s first truthy value, or LabError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(every)


def answers(fn: Callable[..., Any], *args: Any) -> bool:
    """``fn(*args)`` returned (whatever it returned)."""
    fn(*args)
    return True


@dataclass
class Proc:
    """One daemon of the lab: how to start it, and its process."""

    name: str
    ns: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Every live (not zombie) descendant of ``pid``, from one pass over /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) and fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, pp in parents.items() if pp == parent]
        out += kids
        todo += kids
    return out


def pid_alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


@dataclass
class Lab:
    topo: Topology
    workdir: Path
    target: str = "soft"  # or "bmv2" (simple_switch_grpc on PATH or $SIMPLE_SWITCH_GRPC)
    rate: float = 50.0  # packets/s of each flow
    stale: float = 60.0  # agents' timers.stale
    retention: float = 60.0  # route servers' and agents' [xmpp] retention
    ping: float = 1.0  # XMPP ping interval (and client ping timeout) on both hops
    procs: dict[str, Proc] = field(default_factory=dict)
    exit_times: dict[str, float] = field(default_factory=dict)

    # ---- paths and addresses -------------------------------------------------

    def path(self, *parts: str) -> Path:
        return self.workdir.joinpath(*parts)

    def mgmt(self, node: str) -> str:
        t = self.topo
        if node == "rr":
            return t.addr(t.reflector_host)
        for tor in t.tors:
            if node == f"tor{tor.name}":
                return t.addr(tor.mgmt_host)
        for rs in t.route_servers:
            if node == rs.name:
                return t.addr(rs.mgmt_host)
        return t.addr(t.end_system(node).mgmt_host)

    def nodes(self) -> list[str]:
        t = self.topo
        return (
            ["rr"]
            + [rs.name for rs in t.route_servers]
            + [f"tor{x.name}" for x in t.tors]
            + [e.name for e in t.end_systems]
        )

    # ---- building -----------------------------------------------------------

    def build_network(self) -> None:
        t = self.topo
        hub = t.ns("hub")
        netns.add_namespace(hub)
        netns.bridge(hub, "br0")
        netns.veth(None, f"{t.prefix}-mgmt", hub, "m-root")
        netns.enslave(hub, "m-root", "br0")
        netns.address(None, f"{t.prefix}-mgmt", f"{t.addr(t.root_host)}/{t.mgmt.prefixlen}")
        for node in self.nodes():
            ns = t.ns(node)
            netns.add_namespace(ns)
            netns.veth(ns, "mgmt0", hub, f"m-{node}")
            netns.enslave(hub, f"m-{node}", "br0")
            netns.address(ns, "mgmt0", f"{self.mgmt(node)}/{t.mgmt.prefixlen}")
        a, b = t.tors  # the fabric: one link between the two ToRs
        netns.veth(t.ns(f"tor{a.name}"), "fab0", t.ns(f"tor{b.name}"), "fab0", mtu=9000)
        for es in t.end_systems:
            netns.veth(t.ns(es.name), "eth0", t.ns(f"tor{es.tor}"), f"p{es.port}")

    def build_configs(self) -> None:
        from esxmpp.pki import make_pki

        t = self.topo
        pki = make_pki(self.path("pki"), "esvpn lab CA")
        ca = str(pki.cafile)

        def pair(kind: str, name: str) -> dict[str, Any]:
            c = pki.server(name) if kind == "server" else pki.client(name)
            return {"certfile": str(c.certfile), "keyfile": str(c.keyfile), "cafile": ca}

        gobgp = [
            "[global.config]",
            f"  as = {ASN}",
            f'  router-id = "{self.mgmt("rr")}"',
            f'  local-address-list = ["{self.mgmt("rr")}"]',
        ]
        for rs in t.route_servers:
            gobgp += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{self.mgmt(rs.name)}"',
                f"    peer-as = {ASN}",
                "  [neighbors.transport.config]",
                "    passive-mode = true",
                "  [neighbors.route-reflector.config]",
                "    route-reflector-client = true",
                f'    route-reflector-cluster-id = "{self.mgmt("rr")}"',
                "  [neighbors.graceful-restart.config]",
                "    enabled = true",
                "    restart-time = 30",
            ]
            for fam in ("l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast", "rtc"):
                gobgp += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "{fam}"',
                    "    [neighbors.afi-safis.mp-graceful-restart.config]",
                    "      enabled = true",
                ]
        self.path("rr").mkdir(parents=True, exist_ok=True)
        self.path("rr", "gobgpd.toml").write_text("\n".join(gobgp) + "\n")

        for rs in t.route_servers:
            addr = self.mgmt(rs.name)
            cfg: dict[str, Any] = {
                "server": {"router_id": addr, "asn": ASN, "local_address": addr},
                "xmpp": {
                    "domain": rs.domain,
                    "host": addr,
                    "port": XMPP_PORT,
                    **pair("server", rs.domain),
                    "retention": self.retention,
                    "own_nodes_only": False,
                    # only the ToRs' agents may act as forwarders here
                    "forwarders": [tor.system_id for tor in t.tors],
                    "ping_interval": self.ping,
                    "ping_misses": 3,
                },
                "control": {"host": addr, "port": RS_CONTROL},
                "bgp": {
                    "graceful_restart": 30,
                    "neighbor": [
                        {
                            "address": self.mgmt("rr"),
                            "asn": ASN,
                            "families": ["vpnv4", "vpnv6", "rtc"],
                        }
                    ],
                },
                "vrf": [
                    {"vpn": v.name, "import_targets": [v.target], "export_targets": [v.target]}
                    for v in t.vpns
                ],
            }
            self.path(rs.name).mkdir(parents=True, exist_ok=True)
            self.path(rs.name, "routeserver.toml").write_text(toml(cfg))

        for tor in t.tors:
            node = f"tor{tor.name}"
            other = next(o for o in t.tors if o is not tor)
            cfg = {
                "agent": {
                    "system_id": tor.system_id,
                    "state_file": str(self.path(node, "agent-state.json")),
                    "control": f"{self.mgmt(node)}:{AGENT_CONTROL}",
                },
                "switch": {
                    "address": f"{self.mgmt(node)}:9559",
                    "device_id": 0,
                    "election_id": 10,
                    "p4info": str(P4INFO),
                    "bmv2_json": str(BMV2_JSON),
                },
                "fabric": {
                    "infra_address": tor.infra,
                    "ports": [t.fabric_port],
                    "underlay": [
                        {
                            "prefix": str(FABRIC),
                            "port": t.fabric_port,
                            "src_mac": tor.fabric_mac,
                            "dst_mac": other.fabric_mac,
                        }
                    ],
                },
                "end_systems": {
                    "ports": {e.system_id: e.port for e in t.end_systems if e.tor == tor.name}
                },
                "xmpp": {
                    "domain": tor.domain,
                    "host": self.mgmt(node),
                    "port": XMPP_PORT,
                    **pair("server", tor.domain),
                    "retention": self.retention,
                    "ping_interval": self.ping,
                    "ping_misses": 3,
                },
                "route_servers": [
                    {
                        "jid": f"{tor.system_id}@{rs.domain}",
                        "host": self.mgmt(rs.name),
                        "port": XMPP_PORT,
                        **pair("client", tor.system_id),
                        "ping_interval": self.ping,
                        "ping_timeout": self.ping,
                    }
                    for rs in t.route_servers
                ],
                "timers": {"stale": self.stale, "reconnect": 0.5},
                # the VPNs this ToR serves (host routes only, the default)
                "vpns": {v.name: {} for v in t.vpns},
            }
            self.path(node).mkdir(parents=True, exist_ok=True)
            self.path(node, "agent.toml").write_text(toml(cfg))

        for es in t.end_systems:
            tor = t.tor(es.tor)
            cfg = {
                "host": {"socket": str(self.path(es.name, "host.sock")), "reconnect": 0.5},
                "xmpp": {
                    "jid": f"{es.system_id}@{tor.domain}",
                    "host": self.mgmt(f"tor{tor.name}"),
                    "port": XMPP_PORT,
                    **pair("client", es.system_id),
                    "ping_interval": self.ping,
                    "ping_timeout": self.ping,
                },
            }
            self.path(es.name).mkdir(parents=True, exist_ok=True)
            self.path(es.name, "host.toml").write_text(toml(cfg))

    def define_procs(self) -> None:
        t = self.topo
        py = [sys.executable]
        self.add_proc(
            "rr",
            "rr",
            [
                "gobgpd",
                "-f",
                str(self.path("rr", "gobgpd.toml")),
                "--api-hosts",
                f"127.0.0.1:{GOBGP_API}",
                "-l",
                "info",
            ],
        )
        for rs in t.route_servers:
            cfg = str(self.path(rs.name, "routeserver.toml"))
            self.add_proc(rs.name, rs.name, [*py, "-m", "routeserver.cli", "run", "--config", cfg])
        for tor in t.tors:
            node = f"tor{tor.name}"
            ports = [f"{t.fabric_port}@fab0"] + [
                f"{e.port}@p{e.port}" for e in t.end_systems if e.tor == tor.name
            ]
            argv = switch_command(self.target, ports, f"{self.mgmt(node)}:9559", 0, t.cpu_port)
            self.add_proc(f"switch-{tor.name}", node, argv)
            agent_cfg = str(self.path(node, "agent.toml"))
            self.add_proc(
                f"agent-{tor.name}",
                node,
                [*py, "-m", "control.agent", "--config", agent_cfg, "--log-format", "json"],
            )
        for es in t.end_systems:
            host_cfg = str(self.path(es.name, "host.toml"))
            self.add_proc(
                f"host-{es.name}",
                es.name,
                [*py, "-m", "control.cli", "host", "run", "--config", host_cfg],
            )
            argv = [
                *py,
                "-m",
                "lab.traffic",
                "--iface",
                "eth0",
                "--mac",
                es.mac,
                "--vlan",
                str(t.vpn(es.vpn).vlan),
                "--rate",
                str(self.rate),
                "--status",
                str(self.path(es.name, "traffic.json")),
            ]
            for name, src, _dst, sa, da in t.flows():
                if src is es:
                    argv += ["--send", f"{name},{sa},{da}"]
            for name, _src, dst, _sa, _da in t.flows():
                if dst is es:
                    argv += ["--expect", name]
            self.add_proc(f"traffic-{es.name}", es.name, argv)

    def add_proc(self, name: str, node: str, argv: list[str]) -> None:
        self.procs[name] = Proc(name, self.topo.ns(node), argv, self.path("logs", f"{name}.log"))

    # ---- running ------------------------------------------------------------

    def start(self, name: str) -> Proc:
        p = self.procs[name]
        if p.alive():
            raise LabError(f"{name} is already running (pid {p.pid})")
        p.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        with open(p.log, "ab") as logf:
            logf.write(f"--- start {p.starts + 1}: {' '.join(p.argv)}\n".encode())
            logf.flush()
            p.popen = subprocess.Popen(
                ["ip", "netns", "exec", p.ns, *p.argv],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.workdir),
                env=env,
                start_new_session=True,
            )
        p.starts += 1
        self.save_record()
        return p

    def up(self) -> None:
        """Build everything and start it; returns when every daemon answers and
        every end-system has joined (not waiting for traffic)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.save_record()
        try:
            self.build_network()
            self.build_configs()
            self.define_procs()
            self.start("rr")
            poll(self.gobgp_ok, 20, "gobgpd's API")
            for rs in self.topo.route_servers:
                self.start(rs.name)
            for rs in self.topo.route_servers:
                poll(partial(answers, self.rs_show, rs.name, "sessions"), 30, f"{rs.name}")
            for tor in self.topo.tors:
                self.start(f"switch-{tor.name}")
            for tor in self.topo.tors:
                poll(
                    partial(self.tcp_open, f"tor{tor.name}", self.mgmt(f"tor{tor.name}"), 9559),
                    30,
                    f"switch {tor.name}'s P4Runtime port",
                )
                self.start(f"agent-{tor.name}")
            for tor in self.topo.tors:
                poll(
                    partial(answers, self.agent_show, tor.name, "sessions"),
                    30,
                    f"agent {tor.name}",
                )
            for es in self.topo.end_systems:
                self.start(f"host-{es.name}")
            for es in self.topo.end_systems:
                self.join(es)
            for es in self.topo.end_systems:
                self.start(f"traffic-{es.name}")
        except BaseException:
            self.down()
            raise

    def join(self, es: EndSystem, timeout: float = 30) -> None:
        """The end-system subscribes its VLAN and publishes its addresses."""
        vpn = self.topo.vpn(es.vpn)
        poll(
            lambda: self.host_cmd(es, {"op": "status"}).get("connected"),
            timeout,
            f"{es.name}'s session with its forwarder",
        )
        self.expect_ok(es, {"op": "subscribe", "vpn": vpn.name, "vlan": vpn.vlan})
        for a in es.addresses:
            plen = 32 if ":" not in a else 128
            self.expect_ok(
                es, {"op": "publish", "prefix": f"{a}/{plen}", "vpn": vpn.name, "version": 1}
            )

    def expect_ok(self, es: EndSystem, req: dict[str, Any]) -> None:
        resp = self.host_cmd(es, req)
        if resp.get("ok") is not True:
            raise LabError(f"{es.name}: {req} refused: {resp}")

    def host_cmd(self, es: EndSystem, req: dict[str, Any], timeout: float = 15) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.path(es.name, "host.sock")))
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        resp: dict[str, Any] = json.loads(buf)
        return resp

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.alive():
            os.kill(p.pid, sig)
            if sig == signal.SIGKILL:
                assert p.popen is not None
                p.popen.wait(10)

    def terminate(self, name: str, grace: float = 5.0) -> float:
        """SIGTERM ``name``; the seconds until it and its children were gone
        (SIGKILL after ``grace``: then the result is > grace)."""
        p = self.procs[name]
        if not p.alive():
            return 0.0
        kids = descendants(p.pid)
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGTERM)
        assert p.popen is not None
        try:
            p.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.popen.wait(5)
        while any(pid_alive(k) for k in kids) and time.monotonic() - t0 < grace:
            time.sleep(0.02)
        took = time.monotonic() - t0
        for k in kids:
            if pid_alive(k):
                took = max(took, grace + 0.001)
                with contextlib.suppress(OSError):
                    os.kill(k, signal.SIGKILL)
        self.exit_times[name] = took
        return took

    def down(self) -> dict[str, float]:
        """Stop every process (end-systems first, the reflector last) and
        remove every namespace and link. The exit time of each process."""
        order = [n for n in self.procs if n.startswith("traffic-")]
        order += [n for n in self.procs if n.startswith("host-")]
        order += [n for n in self.procs if n.startswith("agent-")]
        order += [n for n in self.procs if n.startswith("switch-")]
        order += [n for n in self.procs if n.startswith("rs")] + ["rr"]
        for name in order:
            if name in self.procs:
                with contextlib.suppress(Exception):
                    self.terminate(name)
        teardown(self.topo.prefix)
        with contextlib.suppress(OSError):
            (RECORDS / f"{self.topo.prefix}.json").unlink()
        return dict(self.exit_times)

    def save_record(self) -> None:
        rec = {
            "prefix": self.topo.prefix,
            "mgmt": str(self.topo.mgmt),
            "owner": os.getpid(),  # the process that runs the lab (the demo's live view)
            "workdir": str(self.workdir),
            "pids": {n: p.pid for n, p in self.procs.items() if p.popen is not None},
        }
        RECORDS.mkdir(parents=True, exist_ok=True)
        path = RECORDS / f"{self.topo.prefix}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, path)  # readers never see half a record

    # ---- faults -------------------------------------------------------------

    def cut(self, a: str, b: str, on: bool = True) -> None:
        """Silently drop every packet between nodes a and b (both ways)."""
        netns.blackhole(self.topo.ns(a), self.mgmt(b), on)
        netns.blackhole(self.topo.ns(b), self.mgmt(a), on)

    def exabgp_pid(self, rs: str) -> int | None:
        p = self.procs[rs]
        if not p.alive():
            return None
        for pid in descendants(p.pid):
            with contextlib.suppress(OSError):
                if b"exabgp" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    # ---- looking ------------------------------------------------------------

    def tcp_open(self, node: str, host: str, port: int) -> bool:
        res = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.topo.ns(node),
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(('{host}', {port}), 1).close()",
            ],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return res.returncode == 0

    def http_json(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def agent_show(self, tor: str, view: str) -> Any:
        return self.http_json(f"http://{self.mgmt('tor' + tor)}:{AGENT_CONTROL}/v1/{view}")

    def agent_metrics(self, tor: str) -> str:
        url = f"http://{self.mgmt('tor' + tor)}:{AGENT_CONTROL}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def rs_metrics(self, rs: str) -> str:
        url = f"http://{self.mgmt(rs)}:{RS_CONTROL}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def rs_show(self, rs: str, what: str) -> Any:
        return self.http_json(f"http://{self.mgmt(rs)}:{RS_CONTROL}/show/{what}")

    def gobgp(self, *args: str) -> str:
        res = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.topo.ns("rr"),
                "gobgp",
                "-u",
                "127.0.0.1",
                "-p",
                str(GOBGP_API),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=15,
        )
        if res.returncode != 0:
            raise LabError(f"gobgp {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def gobgp_ok(self) -> bool:
        self.gobgp("neighbor")
        return True

    def traffic(self, es: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path(es, "traffic.json").read_text())
        return data


def toml(d: dict[str, Any]) -> str:
    return tomli_w.dumps(d)


class Slot:
    """An exclusive (prefix, management /24) for one lab on this machine.

    Labs of the chaos suite and the benchmarks may run side by side (two
    pytest runs): each holds a lock file under /run/esvpn-lab for its slot;
    slot N is prefix ``<kind>N`` with management network 198.18.N.0/24 (RFC
    2544's benchmarking range: never routed beyond this machine's own
    namespaces). A slot whose lock is free but whose namespaces remain was
    left by a killed run: it is cleaned before use.
    """

    def __init__(self, kind: str, slots: int = 200) -> None:
        RECORDS.mkdir(parents=True, exist_ok=True)
        for n in range(slots):
            fd = os.open(RECORDS / f"slot-{n}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd, self.number = fd, n
            self.prefix, self.mgmt = f"{kind}{n}", f"198.18.{n}.0/24"
            for leftover in [ns for ns in netns.namespaces() if ns.endswith("-hub")]:
                if ns_net(leftover) == self.mgmt:
                    teardown(leftover.removesuffix("-hub"))
            teardown(self.prefix)
            return
        raise LabError(f"all {slots} lab slots are in use (/run/esvpn-lab/slot-*.lock)")

    def release(self) -> None:
        os.close(self.fd)


def ns_net(hub: str) -> str | None:
    """The management network a lab's hub serves, from the lab record."""
    rec = RECORDS / f"{hub.removesuffix('-hub')}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads(rec.read_text())["mgmt"])
    return None


def teardown(prefix: str) -> None:
    """Kill whatever runs in the lab's namespaces and remove them all."""
    mine = [ns for ns in netns.namespaces() if ns.startswith(f"{prefix}-")]
    for ns in mine:
        for pid in netns.pids(ns):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    for ns in mine:
        netns.delete_namespace(ns)
    netns.delete_link(None, f"{prefix}-mgmt")


@contextlib.contextmanager
def running(lab: Lab) -> Iterator[Lab]:
    lab.up()
    try:
        yield lab
    finally:
        lab.down()
