"""The contract between the packet engine and the P4Runtime server.

The engine (``softswitch.engine``) executes p4c's bmv2 JSON. The P4Runtime
server (``softswitch.p4runtime``) owns everything P4Runtime means — ids,
validation, duplicate detection, reads, arbitration — and drives the engine
only through this interface, by the names that appear in the bmv2 JSON
(which are the names the P4Info carries: ``"IngressPipe.vif_table"``).

Values are unsigned Python ints of the field's bit width. Key elements come
in the order of the table's ``key`` list in the JSON (the P4Info
``match_fields`` order). Action arguments come in the order of the action's
``runtime_data`` (the P4Info ``params`` order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class EngineError(Exception):
    """An operation the engine refuses; the message says why."""


class UnsupportedConstruct(EngineError):
    """The bmv2 JSON uses something the engine does not implement."""


@dataclass(frozen=True, slots=True)
class Exact:
    value: int


@dataclass(frozen=True, slots=True)
class Lpm:
    value: int
    prefix_len: int


@dataclass(frozen=True, slots=True)
class Ternary:
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Range:
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Optional:
    """An ``optional`` key element that is set; a wildcard is ``None``."""

    value: int


#: One element per key field; ``None`` is a wildcard (don't care) for
#: ternary, range, optional and lpm (prefix length 0) fields.
FieldMatch = Exact | Lpm | Ternary | Range | Optional
Key = tuple[FieldMatch | None, ...]


@dataclass(frozen=True, slots=True)
class ActionCall:
    action: str  # bmv2 JSON action name, e.g. "IngressPipe.set_vif"
    args: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Entry of a table with an action profile: points at a member."""

    member_id: int


@dataclass(frozen=True, slots=True)
class GroupRef:
    """Entry of a table with an action selector: points at a group."""

    group_id: int


EntryTarget = ActionCall | MemberRef | GroupRef


class FastWriter(Protocol):
    """Entries of one table with one direct action, for callers that check
    the values themselves; see Engine.fast_writer."""

    def add(self, ikey: Any, plen: int, args: tuple[int, ...]) -> int:
        """Add an entry; returns its handle. Raises EngineError if the key
        exists or the table is full."""

    def modify(self, handle: int, args: tuple[int, ...]) -> None:
        """Point an entry of the table at this action with these args."""


@dataclass(frozen=True, slots=True)
class Replica:
    egress_port: int
    rid: int  # egress_rid (instance) seen by the egress pipeline


@dataclass(frozen=True, slots=True)
class CounterValue:
    packets: int
    bytes: int


#: Output of processing one packet: (egress port, frame bytes), in emission order.
Output = list[tuple[int, bytes]]


class Engine(Protocol):
    """What the P4Runtime server needs from the packet engine."""

    def load(self, bmv2_json: Mapping[str, Any]) -> None:
        """Replace the running program; all state (entries, counters...) is reset.

        Raises UnsupportedConstruct naming the construct when the JSON uses
        something the engine does not implement.
        """

    # --- match-action tables -------------------------------------------------
    def table_add(self, table: str, key: Key, target: EntryTarget, priority: int = 0) -> int:
        """Add an entry; returns an engine handle. Higher priority wins for
        ternary/range/optional tables (P4Runtime convention)."""

    def fast_writer(
        self, table: str, action: str, key_widths: Sequence[int], arg_widths: Sequence[int]
    ) -> FastWriter | None:
        """Cheaper ``table_add`` and ``table_modify`` for callers that validate
        values themselves (the P4Runtime server's batched-write fast path),
        or None.

        Its entries have ``action`` as target with the given args. It checks
        nothing the caller checks: every key value fits in its ``key_widths``
        entry and every arg in its ``arg_widths`` entry, which the engine has
        compared with its own widths. ``ikey`` is the key as the table
        indexes it: for an all-exact key, the value of a one-field key, else
        the tuple of values; for a key with one lpm field (the others
        exact), the tuple of values, the lpm one masked to its prefix, and
        ``plen`` the prefix length (0 for exact tables). Engines without such
        a path, and tables of other kinds, give None."""

    def table_modify(self, table: str, handle: int, target: EntryTarget) -> None: ...

    def table_delete(self, table: str, handle: int) -> None: ...

    def table_set_default(self, table: str, action: ActionCall) -> None: ...

    def table_reset_default(self, table: str) -> None:
        """Back to the default action the JSON declares."""

    # --- action profiles / selectors -----------------------------------------
    def member_set(self, profile: str, member_id: int, action: ActionCall) -> None:
        """Create or replace a member of an action profile or selector."""

    def member_delete(self, profile: str, member_id: int) -> None: ...

    def group_set(self, profile: str, group_id: int, members: Sequence[int]) -> None:
        """Create or replace a selector group (members may repeat for weight)."""

    def group_delete(self, profile: str, group_id: int) -> None: ...

    # --- stateful objects ----------------------------------------------------
    def counter_read(self, counter: str, index: int) -> CounterValue: ...

    def counter_write(self, counter: str, index: int, value: CounterValue) -> None: ...

    def direct_counter_read(self, table: str, handle: int) -> CounterValue: ...

    def direct_counter_write(self, table: str, handle: int, value: CounterValue) -> None: ...

    def register_read(self, register: str, index: int) -> int: ...

    def register_write(self, register: str, index: int, value: int) -> None: ...

    def meter_set(
        self, meter: str, index: int, cir: int, cburst: int, pir: int, pburst: int
    ) -> None:
        """Rates in units per second (bytes or packets per the meter type)."""

    # --- packet replication engine -------------------------------------------
    def mc_group_set(self, group_id: int, replicas: Sequence[Replica]) -> None: ...

    def mc_group_delete(self, group_id: int) -> None: ...

    def clone_session_set(self, session_id: int, replicas: Sequence[Replica]) -> None: ...

    def clone_session_delete(self, session_id: int) -> None: ...

    # --- packets -------------------------------------------------------------
    def process(self, ingress_port: int, frame: bytes) -> Output:
        """Run one frame through parser, pipelines, PRE and deparser."""


#: Called by port drivers / the server for every frame the engine emits.
EmitHook = Callable[[int, bytes], None]
