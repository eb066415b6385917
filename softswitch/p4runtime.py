"""P4Runtime gRPC server of the embedded P4 target (stand-in for simple_switch_grpc).

The only module of the softswitch that speaks gRPC. Validation, the entity
store and the engine calls live in `softswitch.p4rt_store.DeviceState`
(pure, synchronous); primary/backup arbitration in
`softswitch.p4rt_arbitration.Arbitration`. This module is the asyncio shell
(grpc.aio): everything — RPC handlers, engine calls, packet I/O — runs on one
event loop, so the engine is never entered from two threads.

Wiring it (what the CLI does)::

    server = P4RuntimeServer(engine, device_id=0, cpu_port=255,
                             packet_out=inject)   # or emit=send_to_port
    port = await server.start("127.0.0.1:9559")               # plaintext
    port = await server.start("10.0.0.1:9559", tls=TlsConfig(cert_pem, key_pem, ca_pem))
    ...
    server.packet_in(frame)   # a frame the engine emitted on cpu_port
    ...
    await server.stop()

* ``packet_out(frame)``: called (on the event loop) with the frame a primary
  client's PacketOut becomes — the packet_out controller header built from the
  P4Info ``controller_packet_metadata`` followed by the payload. The callee
  runs it through the engine as received on ``cpu_port`` and sends the
  outputs out of their ports (outputs on ``cpu_port`` back to
  ``server.packet_in``).
* Without ``packet_out``, the server does that itself:
  ``engine.process(cpu_port, frame)``; outputs on ``cpu_port`` become
  PacketIns, the others go to ``emit(port, frame)``.
* ``packet_in(frame)`` must be called on the server's event loop (use
  ``loop.call_soon_threadsafe`` from another thread). It parses the
  packet_in controller header and sends a PacketIn to every primary client
  of the device; frames are dropped (and counted in ``packet_in_dropped``)
  while there is no pipeline or no primary, or when a client has
  ``MAX_QUEUED_PACKET_INS`` messages it has not read yet.

Status codes: per-update Write errors come back as gRPC UNKNOWN whose
``grpc-status-details-bin`` trailer is a google.rpc.Status holding one
p4.v1.Error per update (OK for those applied); see p4rt_store for the rules.
When those details would exceed ``Limits.max_error_bytes``, the Status has
no details and its message counts the failures and quotes the first
``ERRORS_QUOTED`` (a client that needs them all splits the batch).

What one request may cost is bounded by `Limits` (softswitch/README.md):
the message size (gRPC refuses bigger ones with RESOURCE_EXHAUSTED), the
updates per WriteRequest (RESOURCE_EXHAUSTED before any is decoded), and the
updates applied between two turns of the event loop, so that ports keep
forwarding while a batch is applied. Writes and pipeline changes run one at
a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from softswitch import api
from softswitch.p4rt_arbitration import Arbitration
from softswitch.p4rt_store import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    PERMISSION_DENIED,
    DeviceState,
    P4RTError,
)
from softswitch.p4rt_wire import count_updates, decode_write_request, read_response

log = logging.getLogger(__name__)

P4RUNTIME_API_VERSION = "1.4.1"
#: loopback: P4Runtime has no authentication of its own (TLS options: TlsConfig)
DEFAULT_ADDRESS = "127.0.0.1:9559"
#: failures quoted in the message of a Write error whose details were omitted
ERRORS_QUOTED = 10
_QUOTE_CHARS = 160  # of each quoted failure's message
#: PacketIns waiting for a slow client before new ones are dropped
MAX_QUEUED_PACKET_INS = 4096

_CODE_TO_GRPC = {s.value[0]: s for s in grpc.StatusCode}


@dataclass(frozen=True)
class Limits:
    """What one request may cost the switch (CLI options in softswitch/cli.py)."""

    #: gRPC message size, both ways: WriteRequests, pipeline configs, read responses
    max_message_bytes: int = 8 * 1024 * 1024
    #: updates in one WriteRequest; more are refused as a whole
    max_write_updates: int = 20_000
    #: updates applied before the event loop (ports, other RPCs) gets a turn
    write_slice: int = 256
    #: size of the per-update error details of a Write; over it, a summary
    max_error_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_write_updates", "write_slice", "max_error_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate chain and key (PEM); a client CA makes client certs mandatory."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None


def _clip(message: str) -> str:
    return message if len(message) <= _QUOTE_CHARS else message[: _QUOTE_CHARS - 3] + "..."


def _grpc_code(code: int) -> grpc.StatusCode:
    return _CODE_TO_GRPC.get(code, grpc.StatusCode.UNKNOWN)


@dataclass(frozen=True)
class Peer:
    """Who sent a request: its gRPC connection (``context.peer()``, the
    client's address and port) and, under mutual TLS, its certificate."""

    address: str
    certificate: bytes | None

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext) -> Peer:
        auth = context.auth_context() or {}
        certs = auth.get("x509_pem_cert") or [None]
        return cls(str(context.peer()), certs[0])


class _Stream:
    """One StreamChannel client: an outbound queue drained by the RPC task."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[p4runtime_pb2.StreamMessageResponse | None] = asyncio.Queue()
        self.closing: P4RTError | None = None

    def send(self, msg: p4runtime_pb2.StreamMessageResponse) -> None:
        self.queue.put_nowait(msg)


class _WriteGc:
    """The cyclic GC around write batches.

    A batch allocates many long-lived objects (the entries), so the GC is
    off while one runs. After a big batch the whole heap is frozen
    (gc.freeze, O(1)): otherwise every later full collection rescans the
    entries of every earlier batch, which costs a bulk load about as much
    as storing them. A freeze holds HOLD seconds, whatever comes meanwhile
    (later big batches freeze what they add); then the heap is thawed and
    collected once, which frees whatever became cyclic garbage while it
    was frozen, so such garbage is bounded by HOLD seconds of writes. The
    freeze is the process's: one server per process, as the daemon has."""

    FREEZE_MIN = 256  # updates in a batch
    HOLD = 5.0  # seconds

    def __init__(self) -> None:
        self._thaw: asyncio.TimerHandle | None = None

    def batch_done(self, updates: int) -> None:
        if updates < self.FREEZE_MIN:
            return
        gc.freeze()
        if self._thaw is None:
            self._thaw = asyncio.get_running_loop().call_later(self.HOLD, self.thaw)

    def thaw(self) -> None:
        if self._thaw is not None:
            self._thaw.cancel()
            self._thaw = None
            gc.unfreeze()
            gc.collect()

    @property
    def thaw_at(self) -> float | None:
        """The loop time the current freeze ends; None when not frozen."""
        return None if self._thaw is None else self._thaw.when()


class P4RuntimeServer(p4runtime_pb2_grpc.P4RuntimeServicer):  # type: ignore[misc]
    def __init__(
        self,
        engine: api.Engine,
        device_id: int,
        cpu_port: int,
        packet_out: Callable[[bytes], None] | None = None,
        emit: api.EmitHook | None = None,
        compiled_parsers: bool = True,
        limits: Limits = Limits(),
    ) -> None:
        self.device = DeviceState(engine, device_id, compiled_parsers)
        self.limits = limits
        # writes and pipeline changes one at a time: a batch applied in slices
        # is never interleaved with another's (nor with a new primary's)
        self._write_lock = asyncio.Lock()
        self.device_id = device_id
        self.cpu_port = cpu_port
        self._packet_out = packet_out
        self._emit = emit
        self._arbitration = Arbitration()
        self._streams: dict[Hashable, _Stream] = {}
        self._server: grpc.aio.Server | None = None
        self.packet_in_dropped = 0
        self.write_gc = _WriteGc()

    # --- lifecycle -----------------------------------------------------------------
    async def start(self, address: str = DEFAULT_ADDRESS, tls: TlsConfig | None = None) -> int:
        """Listen on ``address`` (``host:port``, port 0 = ephemeral); returns the port."""
        server = grpc.aio.server(
            options=[
                # bmv2 JSON configs and write batches may exceed gRPC's 4 MB default;
                # bigger messages are refused by gRPC (RESOURCE_EXHAUSTED)
                ("grpc.max_receive_message_length", self.limits.max_message_bytes),
                ("grpc.max_send_message_length", self.limits.max_message_bytes),
                # a second server on a port in use must fail, not share it
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        try:
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                creds = grpc.ssl_server_credentials(
                    [(tls.private_key, tls.cert_chain)],
                    root_certificates=tls.client_ca,
                    require_client_auth=tls.client_ca is not None,
                )
                port = server.add_secure_port(address, creds)
        except RuntimeError as exc:
            raise OSError(f"P4Runtime server cannot listen on {address}: {exc}") from None
        if port == 0:
            raise OSError(f"P4Runtime server cannot listen on {address}")
        await server.start()
        self._server = server
        log.info("P4Runtime server for device %d on port %d", self.device_id, port)
        return int(port)

    def _handlers(self) -> grpc.GenericRpcHandler:
        pb = p4runtime_pb2

        def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req, response_serializer=resp.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            "p4.v1.P4Runtime",
            {
                # Write takes the serialized request: p4rt_wire decodes table entries fast.
                "Write": unary(self.Write, None, pb.WriteResponse),
                # Read yields serialized responses: table entries are encoded fast.
                "Read": grpc.unary_stream_rpc_method_handler(
                    self.Read, request_deserializer=pb.ReadRequest.FromString
                ),
                "SetForwardingPipelineConfig": unary(
                    self.SetForwardingPipelineConfig,
                    pb.SetForwardingPipelineConfigRequest.FromString,
                    pb.SetForwardingPipelineConfigResponse,
                ),
                "GetForwardingPipelineConfig": unary(
                    self.GetForwardingPipelineConfig,
                    pb.GetForwardingPipelineConfigRequest.FromString,
                    pb.GetForwardingPipelineConfigResponse,
                ),
                "StreamChannel": grpc.stream_stream_rpc_method_handler(
                    self.StreamChannel,
                    request_deserializer=pb.StreamMessageRequest.FromString,
                    response_serializer=pb.StreamMessageResponse.SerializeToString,
                ),
                "Capabilities": unary(
                    self.Capabilities, pb.CapabilitiesRequest.FromString, pb.CapabilitiesResponse
                ),
            },
        )

    async def stop(self, grace: float | None = 0.5) -> None:
        for stream in self._streams.values():
            stream.queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        self.write_gc.thaw()

    # --- helpers -------------------------------------------------------------------
    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RTError(code_pb2.NOT_FOUND, f"unknown device id {device_id}")

    def _check_primary(
        self, device_id: int, role: str, election: Any, context: grpc.aio.ServicerContext
    ) -> None:
        """A write is the primary's when it carries the primary's election id
        AND comes from the primary's StreamChannel connection (same gRPC peer,
        and under mutual TLS the same client certificate). The P4Runtime
        specification lets a server trust the election id alone; knowing the
        number is not enough here (softswitch/README.md)."""
        eid = election if isinstance(election, int) else (election.high << 64) | election.low
        key = self._arbitration.primary_key(device_id, role, eid)
        if key is None:
            raise P4RTError(
                PERMISSION_DENIED,
                f"election id {eid} is not the primary of device {device_id} role '{role}'",
            )
        stream = self._streams.get(key)
        peer = Peer.of(context)
        if stream is None or stream.peer != peer:
            what = (
                "client certificate"
                if stream is not None and stream.peer.address == peer.address
                else "connection"
            )
            raise P4RTError(
                PERMISSION_DENIED,
                f"election id {eid} is the primary's of device {device_id} role '{role}', "
                f"but this request does not come from the primary's {what}",
            )

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, exc: P4RTError) -> NoReturn:
        await context.abort(_grpc_code(exc.code), exc.message)
        raise AssertionError("unreachable")  # context.abort raises

    # --- unary RPCs ----------------------------------------------------------------
    async def Capabilities(
        self, request: p4runtime_pb2.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> p4runtime_pb2.CapabilitiesResponse:
        return p4runtime_pb2.CapabilitiesResponse(p4runtime_api_version=P4RUNTIME_API_VERSION)

    async def SetForwardingPipelineConfig(
        self,
        request: p4runtime_pb2.SetForwardingPipelineConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> p4runtime_pb2.SetForwardingPipelineConfigResponse:
        try:
            async with self._write_lock:
                self._check_device(request.device_id)
                self._check_primary(request.device_id, request.role, request.election_id, context)
                self.device.set_pipeline(request.action, request.config)
        except P4RTError as exc:
            await self._abort(context, exc)
        return p4runtime_pb2.SetForwardingPipelineConfigResponse()

    async def GetForwardingPipelineConfig(
        self,
        request: p4runtime_pb2.GetForwardingPipelineConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> p4runtime_pb2.GetForwardingPipelineConfigResponse:
        try:
            self._check_device(request.device_id)
            config = self.device.get_pipeline(request.response_type)
        except P4RTError as exc:
            await self._abort(context, exc)
        return p4runtime_pb2.GetForwardingPipelineConfigResponse(config=config)

    async def Write(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> p4runtime_pb2.WriteResponse:
        error: P4RTError | None = None
        results: list[P4RTError | None] = []
        try:
            n = count_updates(request)
            if n > self.limits.max_write_updates:
                raise P4RTError(
                    code_pb2.RESOURCE_EXHAUSTED,
                    f"WriteRequest has {n} updates; this switch takes at most "
                    f"{self.limits.max_write_updates} in one request (--max-write-updates)",
                )
            async with self._write_lock:
                results = await self._write_batch(request, context)
        except P4RTError as exc:
            error = exc
        if error is not None:
            await self._abort(context, error)
        if any(r is not None for r in results):
            status = self._write_status(results)
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                status.message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        return p4runtime_pb2.WriteResponse()

    async def _write_batch(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> list[P4RTError | None]:
        """Decode, check and apply one WriteRequest, ``write_slice`` updates
        at a time with a turn of the event loop between slices."""
        # Decoding and storing a batch allocate many objects and create no
        # cycles; no cyclic GC pass while it runs (each would rescan what the
        # batch allocated), and see _WriteGc for after.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            try:
                batch = decode_write_request(request, self.device.entry_parsers)
            except DecodeError as exc:
                raise P4RTError(INVALID_ARGUMENT, f"malformed WriteRequest: {exc}") from None
            self._check_device(batch.device_id)
            self._check_primary(batch.device_id, batch.role, batch.election_id, context)
            if batch.atomicity != p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RTError(
                    code_pb2.UNIMPLEMENTED, "only CONTINUE_ON_ERROR atomicity is supported"
                )
            if not self.device.has_pipeline:
                raise P4RTError(FAILED_PRECONDITION, "no forwarding pipeline config set")
            updates = batch.updates
            step = self.limits.write_slice
            results: list[P4RTError | None] = []
            for i in range(0, len(updates), step):
                if i:
                    await asyncio.sleep(0)  # the ports and other RPCs get a turn
                results += self.device.write_entities(updates[i : i + step])
        finally:
            if gc_was_enabled:
                gc.enable()
        self.write_gc.batch_done(len(results))
        return results

    def _write_status(self, results: list[P4RTError | None]) -> status_pb2.Status:
        """The google.rpc.Status of a Write with failed updates: one p4.v1.Error
        per update, or (over ``max_error_bytes``) a summary without details."""
        status = status_pb2.Status(code=code_pb2.UNKNOWN)
        failed = [(i, r) for i, r in enumerate(results) if r is not None]
        ok = any_pb2.Any()
        ok.Pack(p4runtime_pb2.Error(canonical_code=code_pb2.OK))
        size = 0
        for r in results:
            detail = ok
            if r is not None:
                detail = any_pb2.Any()
                detail.Pack(p4runtime_pb2.Error(canonical_code=r.code, message=r.message))
            size += detail.ByteSize() + 4  # with the field's tag and length
            if size > self.limits.max_error_bytes:
                break
            status.details.append(detail)
        status.message = f"{len(failed)} of {len(results)} updates failed"
        if size <= self.limits.max_error_bytes:
            return status
        del status.details[:]
        quoted = "; ".join(
            f"#{i} {code_pb2.Code.Name(r.code)}: {_clip(r.message)}"
            for i, r in failed[:ERRORS_QUOTED]
        )
        status.message += (
            f"; per-update errors omitted: they exceed {self.limits.max_error_bytes} bytes "
            f"(--max-write-error-bytes); first {min(len(failed), ERRORS_QUOTED)}: {quoted}"
        )
        return status

    async def Read(
        self, request: p4runtime_pb2.ReadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        try:
            self._check_device(request.device_id)
            entities = self.device.read_serialized(request.entities)
        except P4RTError as exc:
            await self._abort(context, exc)
        # serialized ReadResponses of up to 1000 entities; one, empty, for none
        for i in range(0, max(len(entities), 1), 1000):
            yield read_response(entities[i : i + 1000])

    # --- stream channel ------------------------------------------------------------
    def _dispatch(
        self, notes: list[tuple[Hashable, p4runtime_pb2.MasterArbitrationUpdate]]
    ) -> None:
        for key, update in notes:
            stream = self._streams.get(key)
            if stream is not None:
                stream.send(p4runtime_pb2.StreamMessageResponse(arbitration=update))

    async def StreamChannel(
        self,
        request_iterator: AsyncIterator[p4runtime_pb2.StreamMessageRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        key: Hashable = object()
        stream = _Stream(Peer.of(context))
        self._streams[key] = stream
        reader = asyncio.create_task(self._read_stream(key, stream, request_iterator))
        try:
            while True:
                msg = await stream.queue.get()
                if msg is None:
                    break
                await context.write(msg)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            del self._streams[key]
            self._dispatch(self._arbitration.leave(key))
        if stream.closing is not None:
            await context.abort(_grpc_code(stream.closing.code), stream.closing.message)

    async def _read_stream(
        self,
        key: Hashable,
        stream: _Stream,
        requests: AsyncIterator[p4runtime_pb2.StreamMessageRequest],
    ) -> None:
        joined = False
        try:
            async for req in requests:
                kind = req.WhichOneof("update")
                if kind == "arbitration":
                    try:
                        self._check_device(req.arbitration.device_id)
                        self._dispatch(self._arbitration.join(key, req.arbitration))
                        joined = True
                    except P4RTError as exc:
                        stream.closing = exc
                        break
                elif not joined:
                    stream.closing = P4RTError(
                        FAILED_PRECONDITION, "the first stream message must be an arbitration"
                    )
                    break
                elif kind == "packet":
                    self._on_packet_out(key, stream, req.packet)
                else:
                    err = p4runtime_pb2.StreamError(
                        canonical_code=code_pb2.UNIMPLEMENTED,
                        message=f"stream message {kind} is not supported",
                    )
                    stream.send(p4runtime_pb2.StreamMessageResponse(error=err))
        except asyncio.CancelledError:
            raise
        except Exception:  # a client going away mid-read
            log.debug("stream read ended", exc_info=True)
        stream.queue.put_nowait(None)

    def _on_packet_out(
        self, key: Hashable, stream: _Stream, packet: p4runtime_pb2.PacketOut
    ) -> None:
        try:
            if not self._arbitration.is_primary_key(key):
                raise P4RTError(PERMISSION_DENIED, "packet-out from a non-primary client")
            frame = self.device.packet_out_frame(packet)
        except P4RTError as exc:
            err = p4runtime_pb2.StreamError(canonical_code=exc.code, message=exc.message)
            err.packet_out.packet_out.CopyFrom(packet)
            stream.send(p4runtime_pb2.StreamMessageResponse(error=err))
            return
        try:
            if self._packet_out is not None:
                self._packet_out(frame)
                return
            outputs = self.device.engine.process(self.cpu_port, frame)
            for port, out in outputs:
                if port == self.cpu_port:
                    self.packet_in(out)
                elif self._emit is not None:
                    self._emit(port, out)
        except Exception as exc:  # the stream outlives a failing packet
            log.warning("packet-out failed: %s", exc)
            err = p4runtime_pb2.StreamError(
                canonical_code=code_pb2.INTERNAL, message=f"packet-out failed: {exc}"
            )
            err.packet_out.packet_out.CopyFrom(packet)
            stream.send(p4runtime_pb2.StreamMessageResponse(error=err))

    def packet_in(self, frame: bytes) -> None:
        """A frame the engine emitted on the CPU port: PacketIn to the primaries."""
        primaries = self._arbitration.primaries(self.device_id)
        if not primaries or not self.device.has_pipeline:
            self.packet_in_dropped += 1
            return
        try:
            pin = self.device.packet_in(frame)
        except P4RTError as exc:
            log.warning("packet-in dropped: %s", exc.message)
            self.packet_in_dropped += 1
            return
        msg = p4runtime_pb2.StreamMessageResponse(packet=pin)
        for key in primaries:
            stream = self._streams.get(key)
            if stream is None:
                continue
            if stream.queue.qsize() >= MAX_QUEUED_PACKET_INS:
                self.packet_in_dropped += 1  # a client that does not read loses packets
                continue
            stream.send(msg)


__all__ = ["DEFAULT_ADDRESS", "INVALID_ARGUMENT", "Limits", "P4RuntimeServer", "TlsConfig"]
