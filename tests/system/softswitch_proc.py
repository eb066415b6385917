"""The softswitch daemon (``python -m softswitch``) as a child process for
the system tests; not a test itself."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_grpc_ready(address: str, check_alive: Callable[[], None], seconds: float = 60) -> None:
    """Until a gRPC channel to ``address`` connects (``check_alive`` raises
    when the server's process has gone), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        check_alive()
        with grpc.insecure_channel(address) as ch:
            try:
                grpc.channel_ready_future(ch).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                assert time.monotonic() < deadline, "softswitch never listened"


class Softswitch:
    """``python -m softswitch --no-p4 --device-id 1 --cpu-port 255`` on
    127.0.0.1 (a free port) with ``args``; ready once its port accepts TCP."""

    def __init__(self, args: Sequence[str] = (), device_id: int = 1) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "softswitch", "--no-p4", "--device-id", str(device_id),
             "--grpc-server-addr", self.address, "--cpu-port", "255", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.output = ""
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"softswitch exited: {self.proc.communicate()[0].decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("softswitch never listened") from None
                time.sleep(0.02)  # polling for readiness, bounded by the deadline

    def stop(self) -> str:
        """SIGTERM; the daemon must exit 0 within 5 s. Returns its output."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(
                f"softswitch still running 5 s after SIGTERM: {out.decode()}"
            ) from None
        self.output = out.decode()
        assert self.proc.returncode == 0, self.output
        return self.output

    def __enter__(self) -> Softswitch:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
