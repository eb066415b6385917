"""Run a P4RuntimeServer on its own event loop thread and talk to it with
ordinary (synchronous) gRPC clients, the way controllers do. Used by the
system tests (tests/system/test_softswitch_p4rt*.py); not a test itself."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import grpc
from google.rpc import status_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from softswitch import api
from softswitch.p4runtime import P4RuntimeServer, TlsConfig

DEVICE_ID = 1
CPU_PORT = 255


class ServerThread:
    def __init__(self, engine: api.Engine, tls: TlsConfig | None = None, **kw: Any) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = P4RuntimeServer(engine, DEVICE_ID, CPU_PORT, **kw)
        self.port = self.run(self.server.start("127.0.0.1:0", tls=tls))
        self.address = f"127.0.0.1:{self.port}"

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run fn on the server's loop (the only thread touching the engine)."""
        fut: Future[Any] = Future()

        def go() -> None:
            try:
                fut.set_result(fn())
            except Exception as exc:  # pragma: no cover - surfaced to the test
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(go)
        return fut.result(timeout)

    def close(self) -> None:
        self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Client:
    """One controller: a channel, a stub and (optionally) a stream."""

    def __init__(
        self,
        address: str,
        election_id: int | None = None,
        channel: grpc.Channel | None = None,
        role: str = "",
    ) -> None:
        self.channel = channel or grpc.insecure_channel(address)
        self.stub = p4runtime_pb2_grpc.P4RuntimeStub(self.channel)
        self.election_id = election_id
        self.role = role
        self.out: queue.Queue[p4runtime_pb2.StreamMessageRequest | None] = queue.Queue()
        self.incoming: queue.Queue[Any] = queue.Queue()
        self.stream: Any = None

    def open_stream(self, device_id: int = DEVICE_ID) -> p4runtime_pb2.StreamMessageResponse:
        def requests() -> Iterator[p4runtime_pb2.StreamMessageRequest]:
            while (msg := self.out.get()) is not None:
                yield msg

        self.stream = self.stub.StreamChannel(requests())

        def pump() -> None:
            try:
                for msg in self.stream:
                    self.incoming.put(msg)
            except grpc.RpcError as exc:
                self.incoming.put(exc)
            self.incoming.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.arbitrate(device_id)
        return self.next()

    def arbitrate(self, device_id: int = DEVICE_ID) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = device_id
        if self.role:
            req.arbitration.role.name = self.role
        if self.election_id is not None:
            req.arbitration.election_id.high = self.election_id >> 64
            req.arbitration.election_id.low = self.election_id & (2**64 - 1)
        self.out.put(req)

    def next(self, timeout: float = 5) -> Any:
        return self.incoming.get(timeout=timeout)

    def send(self, msg: p4runtime_pb2.StreamMessageRequest) -> None:
        self.out.put(msg)

    def close_stream(self) -> None:
        self.out.put(None)

    def close(self) -> None:
        self.out.put(None)
        self.channel.close()

    def _election(self, req: Any) -> None:
        if self.election_id is not None:
            req.election_id.high = self.election_id >> 64
            req.election_id.low = self.election_id & (2**64 - 1)
        if self.role:
            req.role = self.role

    def set_pipeline(
        self,
        config: p4runtime_pb2.ForwardingPipelineConfig,
        action: int = p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
    ) -> None:
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(device_id=DEVICE_ID, action=action)
        req.config.CopyFrom(config)
        self._election(req)
        self.stub.SetForwardingPipelineConfig(req, timeout=10)

    def write(self, *updates: p4runtime_pb2.Update, atomicity: int = 0) -> None:
        req = p4runtime_pb2.WriteRequest(device_id=DEVICE_ID, atomicity=atomicity)
        req.updates.extend(updates)
        self._election(req)
        self.stub.Write(req, timeout=10)

    def read(self, *entities: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
        req = p4runtime_pb2.ReadRequest(device_id=DEVICE_ID)
        req.entities.extend(entities)
        out: list[p4runtime_pb2.Entity] = []
        for resp in self.stub.Read(req, timeout=10):
            out.extend(resp.entities)
        return out


def write_errors(exc: grpc.RpcError) -> list[tuple[int, str]]:
    """The per-update (canonical_code, message) list of a failed Write."""
    assert exc.code() == grpc.StatusCode.UNKNOWN
    (blob,) = [v for k, v in exc.trailing_metadata() if k == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(blob)
    out = []
    for detail in status.details:
        err = p4runtime_pb2.Error()
        assert detail.Unpack(err)
        out.append((err.canonical_code, err.message))
    return out
