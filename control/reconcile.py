"""Diff desired vs installed switch state into ordered batches of updates (pure).

Both sides must be canonical (control.p4rt.P4Info.canonical). Batches are
applied one after the other; inside a batch (in no particular order) the
switch may reorder, so
references only ever point at objects written by an earlier batch:

1. insert/modify action profile members and multicast groups
2. insert/modify selector groups
3. insert/modify table entries (and default entries, always MODIFY)
4. delete table entries
5. delete groups
6. delete members and multicast groups

Routes therefore move to their new next hop before the old one goes
(make-before-break), and nothing referenced is deleted while in use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control.p4rt import (
    DELETE,
    INSERT,
    MODIFY,
    ActionProfileGroup,
    ActionProfileMember,
    Entity,
    TableEntry,
    Update,
)
from control.vrf import STEP, Steps, finish


def _phase(e: Entity) -> int:
    if isinstance(e, TableEntry):
        return 2
    if isinstance(e, ActionProfileGroup):
        return 1
    return 0  # members, multicast groups


def index(entities: Iterable[Entity]) -> dict[tuple[Any, ...], Entity]:
    return {e.key(): e for e in entities}


def plan(desired: Iterable[Entity], installed: Iterable[Entity]) -> list[list[Update]]:
    """Ordered non-empty batches turning ``installed`` into ``desired``."""
    return finish(plan_steps(desired, installed))


def plan_steps(desired: Iterable[Entity], installed: Iterable[Entity]) -> Steps[list[list[Update]]]:
    """:func:`plan` in steps of at most :data:`control.vrf.STEP` entities; both
    sides are read in the first steps (``installed`` must not change meanwhile)."""
    n = 0  # entities handled: a step ends every STEP of them, across the passes
    want: dict[tuple[Any, ...], Entity] = {}
    for e in desired:
        n += 1
        if n % STEP == 0:
            yield
        want[e.key()] = e
    have: dict[tuple[Any, ...], Entity] = {}
    for e in installed:
        n += 1
        if n % STEP == 0:
            yield
        have[e.key()] = e
    batches: list[list[Update]] = [[] for _ in range(6)]
    for k, e in want.items():
        n += 1
        if n % STEP == 0:
            yield
        cur = have.get(k)
        if cur == e:
            continue
        is_default = isinstance(e, TableEntry) and e.is_default
        kind = MODIFY if cur is not None or is_default else INSERT
        batches[_phase(e)].append(Update(kind, e))
    for k, e in have.items():
        n += 1
        if n % STEP == 0:
            yield
        if k in want or (isinstance(e, TableEntry) and e.is_default):
            continue
        batches[5 - _phase(e)].append(Update(DELETE, e))
    return [b for b in batches if b]


def apply(installed: dict[tuple[Any, ...], Entity], update: Update) -> None:
    """Record a successful update in an installed-state index."""
    if update.type is DELETE:
        installed.pop(update.entity.key(), None)
    else:
        installed[update.entity.key()] = update.entity


def count(batches: list[list[Update]]) -> int:
    return sum(len(b) for b in batches)


__all__ = ["ActionProfileMember", "apply", "count", "index", "plan"]
