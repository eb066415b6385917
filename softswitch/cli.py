"""``softswitch``: the embedded P4 target, a drop-in for simple_switch_grpc.

    softswitch -i 1@veth1 -i 2@veth3 --grpc-server-addr 127.0.0.1:9559 \\
        --cpu-port 255 [--device-id 0] [--no-p4 | program.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence

from softswitch.api import EngineError
from softswitch.engine import SoftEngine
from softswitch.ports import AfPacketPort, PortHub, parse_interface

log = logging.getLogger("softswitch")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="softswitch", description=__doc__.splitlines()[0])
    p.add_argument(
        "-i",
        "--interface",
        action="append",
        default=[],
        metavar="PORT@IFNAME",
        help="bind a port number to a Linux interface (repeatable)",
    )
    p.add_argument("--grpc-server-addr", default="0.0.0.0:9559", help="P4Runtime listen address")
    p.add_argument("--cpu-port", type=int, default=None, help="port number of the CPU port")
    p.add_argument(
        "--device-id",
        type=int,
        default=0,
        help="P4Runtime device id (0, as simple_switch_grpc and the agent default to)",
    )
    p.add_argument("--no-p4", action="store_true", help="start without a program")
    p.add_argument("-L", "--log-level", default="info", help="debug, info, warning, error")
    p.add_argument(
        "--log-console", action="store_true", help="accepted for simple_switch_grpc compatibility"
    )
    p.add_argument(
        "--general-write-path",
        action="store_true",
        help="decode every table entry the general way, without the compiled entry parsers "
        "(the reference they are measured against)",
    )
    p.add_argument("program", nargs="?", help="bmv2 JSON to run at start")
    return p


def _check(args: argparse.Namespace) -> list[tuple[int, str]]:
    if args.no_p4 and args.program:
        raise ValueError("--no-p4 and a program are mutually exclusive")
    if not args.no_p4 and not args.program:
        raise ValueError("give a bmv2 JSON program or --no-p4")
    if args.device_id < 0:
        raise ValueError("--device-id: must be an integer >= 0")
    if args.cpu_port is not None and not 0 <= args.cpu_port < 511:
        raise ValueError("--cpu-port: must be in 0..510")
    ifaces = [parse_interface(s) for s in args.interface]
    ports = [p for p, _ in ifaces]
    if len(set(ports)) != len(ports):
        raise ValueError("-i: a port number is bound twice")
    if args.cpu_port is not None and args.cpu_port in ports:
        raise ValueError("--cpu-port: the CPU port cannot be bound to an interface")
    return ifaces


async def run(args: argparse.Namespace, ifaces: Sequence[tuple[int, str]]) -> int:
    from softswitch.p4runtime import P4RuntimeServer

    engine = SoftEngine()
    if args.program:
        with open(args.program, encoding="utf-8") as f:
            engine.load(json.load(f))
    cpu_port = args.cpu_port if args.cpu_port is not None else 510
    hub = PortHub(engine, cpu_port)
    loop = asyncio.get_running_loop()
    drivers: list[AfPacketPort] = []
    server = P4RuntimeServer(
        engine,
        device_id=args.device_id,
        cpu_port=cpu_port,
        packet_out=lambda frame: hub.receive(cpu_port, frame),
        compiled_parsers=not args.general_write_path,
    )
    hub.cpu_hook = server.packet_in
    try:
        for port, ifname in ifaces:
            drv = AfPacketPort(hub, port, ifname)
            hub.attach(port, drv)
            drivers.append(drv)
            drv.start(loop)
        bound = await server.start(args.grpc_server_addr)
        log.info("softswitch: P4Runtime on port %d, %d interfaces", bound, len(drivers))
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await server.stop()
        hub.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # simple_switch_grpc takes its gRPC options after a "--"; accept both forms
    args = build_parser().parse_args(
        [a for a in (sys.argv[1:] if argv is None else argv) if a != "--"]
    )
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        ifaces = _check(args)
    except ValueError as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, ifaces))
    except (OSError, EngineError, json.JSONDecodeError) as exc:
        print(f"softswitch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
