"""``softswitch``: the embedded P4 target, a drop-in for simple_switch_grpc.

    softswitch -i 1@veth1 -i 2@veth3 --grpc-server-addr 127.0.0.1:9559 \\
        --cpu-port 255 [--device-id 0] [--no-p4 | program.json] \\
        [--grpc-server-ssl --grpc-server-cert CERT --grpc-server-key KEY \\
         [--grpc-server-with-client-auth --grpc-server-cacert CA]]

The P4Runtime server listens on loopback unless told otherwise (P4Runtime
itself has no authentication: anyone who reaches the port can program the
switch). The TLS options are simple_switch_grpc's; see softswitch/README.md.
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
from softswitch.p4runtime import DEFAULT_ADDRESS, Limits, P4RuntimeServer, TlsConfig
from softswitch.ports import AfPacketPort, PortHub, parse_interface

log = logging.getLogger("softswitch")


#: request limit options: option -> (Limits field, what it limits)
LIMIT_OPTIONS = {
    "grpc-max-message-bytes": (
        "max_message_bytes",
        "largest gRPC message taken or sent: WriteRequest, pipeline config",
    ),
    "max-write-updates": ("max_write_updates", "most updates in one WriteRequest"),
    "write-slice": ("write_slice", "updates applied before the ports get a turn again"),
    "max-write-error-bytes": (
        "max_error_bytes",
        "largest per-update error details of a Write; beyond, a summary",
    ),
}


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
    p.add_argument(
        "--grpc-server-addr",
        default=DEFAULT_ADDRESS,
        help=f"P4Runtime listen address (default {DEFAULT_ADDRESS}: loopback only)",
    )
    p.add_argument("--grpc-server-ssl", action="store_true", help="serve P4Runtime over TLS")
    p.add_argument("--grpc-server-cert", metavar="PEM", help="server certificate (chain) for TLS")
    p.add_argument("--grpc-server-key", metavar="PEM", help="server private key")
    p.add_argument(
        "--grpc-server-cacert",
        metavar="PEM",
        help="CA certificate(s) that client certificates must chain to",
    )
    p.add_argument(
        "--grpc-server-with-client-auth",
        action="store_true",
        help="mutual TLS: refuse clients without a certificate from --grpc-server-cacert",
    )
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
    d = Limits()
    for option, (field, what) in LIMIT_OPTIONS.items():
        p.add_argument(
            f"--{option}",
            type=int,
            default=getattr(d, field),
            metavar="N",
            help=f"{what} (default {getattr(d, field)})",
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
    _check_tls(args)
    limits(args)
    if args.cpu_port is not None and not 0 <= args.cpu_port < 511:
        raise ValueError("--cpu-port: must be in 0..510")
    ifaces = [parse_interface(s) for s in args.interface]
    ports = [p for p, _ in ifaces]
    if len(set(ports)) != len(ports):
        raise ValueError("-i: a port number is bound twice")
    if args.cpu_port is not None and args.cpu_port in ports:
        raise ValueError("--cpu-port: the CPU port cannot be bound to an interface")
    return ifaces


def limits(args: argparse.Namespace) -> Limits:
    """The request limits from the options; ValueError names the option."""
    values: dict[str, int] = {}
    for option, (field, _) in LIMIT_OPTIONS.items():
        values[field] = getattr(args, option.replace("-", "_"))
        if values[field] < 1:
            raise ValueError(f"--{option}: must be at least 1")
    return Limits(**values)


def _check_tls(args: argparse.Namespace) -> None:
    """The TLS options are consistent; a half-given TLS setup is refused, not
    ignored (simple_switch_grpc warns and serves plaintext)."""
    files = ("grpc_server_cert", "grpc_server_key", "grpc_server_cacert")
    if not args.grpc_server_ssl:
        given = [f"--{f.replace('_', '-')}" for f in files if getattr(args, f)]
        if args.grpc_server_with_client_auth:
            given.append("--grpc-server-with-client-auth")
        if given:
            raise ValueError(f"{given[0]}: needs --grpc-server-ssl")
        return
    for f in ("grpc_server_cert", "grpc_server_key"):
        if not getattr(args, f):
            raise ValueError(f"--grpc-server-ssl: --{f.replace('_', '-')} is required")
    if args.grpc_server_with_client_auth and not args.grpc_server_cacert:
        raise ValueError("--grpc-server-with-client-auth: --grpc-server-cacert is required")


def tls_config(args: argparse.Namespace) -> TlsConfig | None:
    """The server's TLS setup from the (checked) options; OSError names the option."""
    if not args.grpc_server_ssl:
        return None

    def read(option: str) -> bytes:
        path = getattr(args, option)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise OSError(f"--{option.replace('_', '-')}: {path}: {exc.strerror}") from None

    if args.grpc_server_cacert and not args.grpc_server_with_client_auth:
        log.warning(
            "--grpc-server-cacert without --grpc-server-with-client-auth: "
            "client certificates are not requested"
        )
    return TlsConfig(
        cert_chain=read("grpc_server_cert"),
        private_key=read("grpc_server_key"),
        client_ca=read("grpc_server_cacert") if args.grpc_server_with_client_auth else None,
    )


async def run(args: argparse.Namespace, ifaces: Sequence[tuple[int, str]]) -> int:
    tls = tls_config(args)
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
        limits=limits(args),
    )
    hub.cpu_hook = server.packet_in
    try:
        for port, ifname in ifaces:
            drv = AfPacketPort(hub, port, ifname)
            hub.attach(port, drv)
            drivers.append(drv)
            drv.start(loop)
        bound = await server.start(args.grpc_server_addr, tls=tls)
        log.info(
            "softswitch: P4Runtime on port %d (%s), %d interfaces",
            bound,
            "plaintext" if tls is None else "TLS" if tls.client_ca is None else "mutual TLS",
            len(drivers),
        )
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
