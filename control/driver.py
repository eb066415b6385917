"""Switch driver: keeps the switch equal to the desired entities (asyncio shell).

On every (re)connect: arbitration (wait until primary), pipeline (committed
only when the device does not already run the same cookie, so an agent
restart leaves forwarding alone), a full read of the switch, then only the
difference is written. Losing primary to another controller and regaining it
on the same connection counts as a reconnect: whatever the other primary did
meanwhile is read back, and the difference repaired (the pipeline too).
Afterwards every :meth:`kick` (a state change) schedules a sync; kicks
within ``coalesce`` seconds share one sync, and a sync sends each phase of
the plan as one WriteRequest.

Restart without state (:meth:`SwitchDriver.keep_inherited`): when the agent
has lost its state file it starts empty, and a plain reconcile would delete
every forwarding entry on the switch. Instead the entities found at the first
connect are *inherited*: DELETEs of them are held back until the deadline
(the agent passes now + ``timers.stale``, the time end-systems and route
servers have to re-announce), or until :meth:`SwitchDriver.end_hold`. An
inherited entity that becomes desired again is adopted (rewritten in place
when it differs) and leaves the inherited set. Everything else (inserts,
modifies, deletes of what this agent wrote) proceeds as usual.

Per-update errors: INSERT of an existing entry is retried as MODIFY, MODIFY
of a missing one as INSERT, DELETE of a missing one counts as done; anything
else is logged, counted, and not retried until the desired entity changes or
the switch reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any

import grpc

from control import reconcile
from control import tables as T
from control.config import ConfigError, SwitchConfig
from control.p4rt import (
    DELETE,
    INSERT,
    MODIFY,
    Entity,
    P4Info,
    P4RuntimeClient,
    P4RuntimeError,
    Pipeline,
    TableEntry,
    TlsOptions,
    Update,
    UpdateError,
    WriteResult,
)
from control.vrf import STEP, R, Steps, finish
from esxmpp.gcfreeze import GcFreeze

log = logging.getLogger("control.driver")

ALREADY_EXISTS = 6
MAX_BATCH = 1000  # updates per WriteRequest
WRITES_IN_FLIGHT = 2  # WriteRequests being encoded or awaiting the switch at once
_SPLITTABLE = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED)
NOT_FOUND = 5


@dataclass
class DriverStats:
    connects: int = 0
    pipeline_commits: int = 0
    syncs: int = 0
    writes: int = 0  # WriteRequests
    updates: int = 0  # updates applied
    update_errors: int = 0
    errors: int = 0  # driver iterations ended by an unexpected exception (then reconnect)
    last_reconcile_diff: int = -1  # updates written by the last (re)connect reconcile
    primary_lost: int = 0  # times another controller took primary on a live connection
    primary_regained: int = 0  # ... and this agent got it back (then: read, diff, repair)
    held_deletes: int = 0  # DELETEs of inherited entities held back by the last sync
    failed: dict[tuple[Any, ...], str] = field(default_factory=dict)


def check_program(info: P4Info) -> list[str]:
    """Names of control.tables that the P4Info does not have."""
    missing = []
    kinds = {"table": (*T.ALL_TABLES, *T.DEFAULT_TABLES), "profile": (T.NEXTHOP_SELECTOR,)}
    kinds["action"] = tuple(v for k, v in vars(T).items() if k.startswith("A_"))
    for kind, names in kinds.items():
        for name in names:
            try:
                info.get(kind, name)
            except KeyError:
                missing.append(f"{kind} {name}")
    return missing


class SwitchDriver:
    def __init__(
        self,
        cfg: SwitchConfig,
        desired: Callable[[], Collection[Entity] | Steps[set[Entity]]],
        coalesce: float = 0.005,
        reconnect: float = 1.0,
        on_synced: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_inherited: Callable[[Collection[Entity]], None] | None = None,
        after_pipeline: Callable[[P4RuntimeClient], Awaitable[None]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_synced = on_synced
        self.clock = clock
        self.on_inherited = on_inherited
        # as a new primary, after the pipeline check: what is not an entity
        # (the punt meter's rates, control.punt)
        self.after_pipeline = after_pipeline
        self._keep_until: float | None = None
        # keys of the entities found on the switch at the first connect and not
        # desired since (None: no hold)
        self._inherited: set[tuple[Any, ...]] | None = None
        try:
            self.p4info = P4Info.load(cfg.p4info)
        except (OSError, ValueError) as e:
            raise ConfigError(f"switch.p4info: {cfg.p4info}: {e}") from None
        try:
            self.pipeline = Pipeline.load(cfg.bmv2_json, self.p4info)
        except (OSError, ValueError) as e:
            raise ConfigError(f"switch.bmv2_json: {cfg.bmv2_json}: {e}") from None
        missing = check_program(self.p4info)
        if missing:
            raise ConfigError(
                f"switch.p4info: {cfg.p4info}: the program lacks what the agent programs: "
                + ", ".join(missing)
            )
        self._desired_fn = desired
        self.coalesce = coalesce
        self.reconnect = reconnect
        self.client: P4RuntimeClient | None = None
        self.installed: dict[tuple[Any, ...], Entity] = {}
        self.stats = DriverStats()
        self._failed: dict[tuple[Any, ...], Entity] = {}
        self._canonical: dict[Entity, Entity] = {}
        self._names: dict[str, str] = {}
        self._kick = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._kicks = 0
        self._synced_kicks = -1
        self.synced_kicks = -1  # the last sync covered every kick up to this one
        self._term = 0  # the client's primary term the switch was last read in
        self.gc = GcFreeze()

    @staticmethod
    def check_files(cfg: SwitchConfig) -> None:
        """Raise ConfigError unless the program files load and have every name."""
        SwitchDriver(cfg, set)

    # ------------------------------------------------------------- public
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="switch-driver")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.close()
            self.client = None

    def keep_inherited(self, until: float) -> None:
        """Before :meth:`start`: hold back DELETEs of what the switch holds at the
        first connect until ``until`` (on ``clock``). See the module docstring."""
        self._keep_until = until

    @property
    def hold_deadline(self) -> float | None:
        """When held-back DELETEs are due (None: no hold)."""
        return self._keep_until

    def end_hold(self) -> None:
        """Stop holding back DELETEs of inherited entities; sync soon."""
        self._keep_until = None
        self._inherited = None
        self.stats.held_deletes = 0
        self.kick()

    @property
    def kicks(self) -> int:
        """Kicks so far: a sync with ``synced_kicks`` >= this one covers them."""
        return self._kicks

    def kick(self) -> None:
        """The desired state may have changed: sync soon."""
        self._kicks += 1
        self._synced.clear()
        self._kick.set()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected and self.client.is_primary

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Until every kick so far has been written to a connected switch."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def full_name(self, name: str) -> str:
        """The P4Info full name of a control.tables name (memoized)."""
        full = self._names.get(name)
        if full is None:
            full = self._names[name] = self.p4info.full_name(name)
        return full

    def refusal(self, ent: Entity) -> str | None:
        """The switch's answer to the last write of ``ent`` if it refused it and
        no retry is due (a sync that deleted entries retries the refused ones)."""
        c = self._canonical.get(ent)
        if c is None:
            c = self.p4info.canonical(ent)
        if self._failed.get(c.key()) != c:
            return None
        return self.stats.failed.get(c.key())

    def holds(self, ent: Entity) -> bool:
        """The switch holds exactly ``ent`` (as far as this connection wrote or read it)."""
        c = self._canonical.get(ent)
        if c is None:
            c = self.p4info.canonical(ent)
        return self.installed.get(c.key()) == c

    def desired(self) -> set[Entity]:
        return finish(self._desired_steps())

    def _desired_steps(self) -> Steps[set[Entity]]:
        """The desired entities, canonical, in steps (see control.vrf.Steps): the
        desired function may itself be a computation in steps."""
        got = self._desired_fn()
        ents = (yield from got) if isinstance(got, GeneratorType) else got
        out: set[Entity] = set()
        cache = self._canonical
        if len(cache) > 500_000:
            cache.clear()
        for k, e in enumerate(ents, 1):
            if k % STEP == 0:
                yield
            c = cache.get(e)
            if c is None:
                c = cache[e] = self.p4info.canonical(e)
            out.add(c)
        return out

    async def read_switch(self) -> set[Entity]:
        """A fresh snapshot of what the switch holds (canonical)."""
        client = self._need()
        ents = await client.read_all(self.p4info.names("table"))
        for t in T.DEFAULT_TABLES:
            ents.add(await client.read_default_entry(t))
        return {self.p4info.canonical(e) for e in ents}

    async def diff(self) -> list[list[Update]]:
        """What a sync would write now, against a fresh read (empty when in sync)."""
        return reconcile.plan(self.desired(), await self.read_switch())

    # ------------------------------------------------------------ internals
    def _need(self) -> P4RuntimeClient:
        if self.client is None or not self.client.connected:
            raise P4RuntimeError("switch not connected")
        return self.client

    async def _connect(self) -> P4RuntimeClient:
        tls = None
        if self.cfg.tls is not None:
            t = self.cfg.tls
            tls = TlsOptions(t.root_cert, t.cert, t.key, t.server_name)
        client = await P4RuntimeClient.connect(
            self.cfg.address,
            self.p4info,
            self.cfg.device_id,
            self.cfg.election_id,
            tls,
            timeout=max(self.reconnect, 2.0),
        )
        try:
            await client.wait_primary(timeout=max(self.reconnect, 2.0))
        except BaseException:
            await client.close()
            raise
        return client

    async def _take_over(self, client: P4RuntimeClient) -> int:
        """As a new primary: pipeline, a full read, then write the difference."""
        self._term = client.primary_terms
        if await client.set_pipeline(self.pipeline):
            self.stats.pipeline_commits += 1
            log.info("switch %s: pipeline committed", self.cfg.address)
        if self.after_pipeline is not None:
            await self.after_pipeline(client)
        self._failed.clear()
        snapshot = await self.read_switch()
        self.installed = reconcile.index(snapshot)
        if self._keep_until is not None and self._inherited is None:
            self._inherited = set(self.installed)
            if self.on_inherited is not None:
                self.on_inherited(snapshot)
        written = await self._sync()
        self.stats.last_reconcile_diff = written
        log.info("switch %s: reconciled, %d updates written", self.cfg.address, written)
        return written

    async def _run(self) -> None:
        while True:
            try:
                self.client = await self._connect()
                self.stats.connects += 1
                await self._take_over(self.client)
                await self._serve(self.client)
            except asyncio.CancelledError:
                raise
            except (P4RuntimeError, OSError) as e:
                log.warning("switch %s: %s", self.cfg.address, e)
            except Exception:
                self.stats.errors += 1
                log.exception("switch %s: driver error", self.cfg.address)
            if self.client is not None:
                await self.client.close()
                self.client = None
            self._synced.clear()
            await asyncio.sleep(self.reconnect)

    async def _serve(self, client: P4RuntimeClient) -> None:
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            while client.connected:
                kicked = asyncio.ensure_future(self._kick.wait())
                demoted = asyncio.ensure_future(client.wait_not_primary())
                await asyncio.wait({kicked, closed, demoted}, return_when=asyncio.FIRST_COMPLETED)
                kicked.cancel()
                demoted.cancel()
                if not client.connected:
                    return
                if not client.is_primary:
                    await self._wait_primary_again(client)
                    continue
                await asyncio.sleep(self.coalesce)  # let a burst of changes coalesce
                if client.primary_terms != self._term:  # lost and regained meanwhile
                    await self._regained(client)
                    continue
                await self._sync()
        finally:
            closed.cancel()

    async def _wait_primary_again(self, client: P4RuntimeClient) -> None:
        """Another controller took primary: stay connected as a backup until
        this agent is primary again, then read, diff and repair."""
        self.stats.primary_lost += 1
        self._synced.clear()
        log.warning(
            "switch %s: another controller is primary (election id %s); waiting as backup",
            self.cfg.address,
            client.primary_election_id,
        )
        with contextlib.suppress(P4RuntimeError):  # the stream ended: _serve returns
            await client.wait_primary(timeout=None)
        if client.connected and client.is_primary:
            await self._regained(client)

    async def _regained(self, client: P4RuntimeClient) -> None:
        self.stats.primary_regained += 1
        log.info("switch %s: primary again; reading the switch back", self.cfg.address)
        await self._take_over(client)

    async def _sync(self) -> int:
        # A sync allocates many short-lived objects in a burst; the cyclic GC
        # would rescan the whole heap several times meanwhile. Paused for the
        # (bounded) duration of one sync, back on right after.
        was_enabled = gc.isenabled()
        gc.disable()
        written = 0
        try:
            written = await self._sync_once()
            return written
        finally:
            # frozen before the GC is back on: the young generation holds all the
            # sync allocated, the first allocation after enable() would scan it
            self.gc.added(written)
            if was_enabled:
                gc.enable()
            self.gc.tick()

    async def _sync_once(self) -> int:
        client = self._need()
        self._kick.clear()
        kicks = self._kicks
        # a big table is computed and diffed in steps, the loop served between them
        desired = await _stepped(self._desired_steps())
        batches = await _stepped(reconcile.plan_steps(desired, list(self.installed.values())))
        if self._inherited is not None and self._keep_until is not None:
            batches = self._hold_inherited(desired, batches)
        written = 0
        deleted = False
        for batch in batches:
            todo = [u for u in batch if self._failed.get(u.entity.key()) != u.entity]
            while todo:
                # updates of one phase do not depend on each other: the chunks
                # are written concurrently (encoding overlaps the switch's work)
                # (at most WRITES_IN_FLIGHT at a time: each encodes its chunk in
                # one go, so the loop never holds more than that many encodings)
                chunks = [todo[i : i + MAX_BATCH] for i in range(0, len(todo), MAX_BATCH)]
                window = asyncio.Semaphore(WRITES_IN_FLIGHT)

                async def write(c: list[Update], window: asyncio.Semaphore = window) -> WriteResult:
                    async with window:
                        return await self._write(client, c)

                results = await asyncio.gather(*(write(c) for c in chunks))
                todo = []
                for chunk, res in zip(chunks, results, strict=True):
                    await asyncio.sleep(0)  # a chunk's results at a time
                    failed = {e.index: e for e in res.errors}
                    for i, u in enumerate(chunk):
                        err = failed.get(i)
                        if err is None:
                            deleted = deleted or u.type is DELETE
                            reconcile.apply(self.installed, u)
                            self._failed.pop(u.entity.key(), None)
                            self.stats.failed.pop(u.entity.key(), None)
                            written += 1
                            continue
                        fix = self._recover(u, err)
                        if fix is None:
                            continue
                        if fix is u:  # nothing to write: already in the wanted state
                            reconcile.apply(self.installed, u)
                            continue
                        todo.append(fix)
        if deleted and self._failed:
            # deletions may have made room: give the failed updates another try
            self._failed.clear()
            self.kick()
        self.stats.syncs += 1
        self.stats.updates += written
        self.synced_kicks = kicks  # every change kicked so far was in this sync
        if self.on_synced is not None:
            self.on_synced()
        if kicks == self._kicks:
            self._synced.set()
        return written

    def _hold_inherited(
        self, desired: set[Entity], batches: list[list[Update]]
    ) -> list[list[Update]]:
        """``batches`` without the DELETEs of inherited entities while the hold lasts."""
        # the hold ends in one place: end_hold(), called by the agent's timer
        assert self._inherited is not None and self._keep_until is not None
        self._inherited -= {e.key() for e in desired}  # re-learned: adopted
        out: list[list[Update]] = []
        held = 0
        for batch in batches:
            keep = [
                u for u in batch if u.type is not DELETE or u.entity.key() not in self._inherited
            ]
            held += len(batch) - len(keep)
            if keep:
                out.append(keep)
        if held != self.stats.held_deletes:
            log.info(
                "switch %s: %d deletes of entries found on the switch held back for %.0fs",
                self.cfg.address,
                held,
                self._keep_until - self.clock(),
            )
        self.stats.held_deletes = held
        return out

    async def _write(self, client: P4RuntimeClient, updates: list[Update]) -> WriteResult:
        """One WriteRequest; when the switch fails it as a whole without per-update
        details (e.g. the error trailer would be too large), split it and retry."""
        try:
            res = await client.write(updates)
            self.stats.writes += 1
            return res
        except P4RuntimeError as e:
            if e.code not in _SPLITTABLE or len(updates) == 1:
                raise
        half = len(updates) // 2
        a = await self._write(client, updates[:half])
        b = await self._write(client, updates[half:])
        shifted = tuple(UpdateError(x.index + half, x.update, x.code, x.message) for x in b.errors)
        return WriteResult(len(updates), a.errors + shifted)

    def _recover(self, u: Update, err: UpdateError) -> Update | None:
        """Next step for a failed update: a retry, ``u`` itself (= done), or None."""
        if u.type is INSERT and err.code == ALREADY_EXISTS:
            return Update(MODIFY, u.entity)
        if (
            u.type is MODIFY
            and err.code == NOT_FOUND
            and not (isinstance(u.entity, TableEntry) and u.entity.is_default)
        ):
            return Update(INSERT, u.entity)
        if u.type is DELETE and err.code == NOT_FOUND:
            return u
        self.stats.update_errors += 1
        self._failed[u.entity.key()] = u.entity
        self.stats.failed[u.entity.key()] = f"{u.type.name}: {err.code_name}: {err.message}"
        log.error(
            "switch %s: %s %s failed: %s %s",
            self.cfg.address,
            u.type.name,
            u.entity,
            err.code_name,
            err.message,
        )
        return None


async def _stepped(steps: Steps[R]) -> R:
    """Run a computation in steps, letting the event loop run between them."""
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)


def now() -> float:
    return time.monotonic()
